"""The quarter-turn image rotation lives below data/ and models/ and keeps its old import path."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import cesped


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_models_do_not_import_data():
    models = Path(cesped.__file__).parent / "models"
    bad = {p.name: m for p in models.glob("*.py") for m in _imports(p) if m.startswith("cesped.data")}
    assert not bad


def test_old_import_path_is_the_same_function():
    from cesped.data.augment import rot90_images as old
    from cesped.physics.image_ops import rot90_images

    assert old is rot90_images


def test_quarter_turns_keep_the_centre_pixel_and_compose():
    from cesped.physics.image_ops import rot90_images

    n = 8
    img = torch.zeros(1, 1, n, n)
    img[0, 0, n // 2, n // 2] = 1.0
    img[0, 0, n // 2, n // 2 + 2] = 2.0  # two pixels along +x from the centre
    one = rot90_images(img, 1)
    assert one[0, 0, n // 2, n // 2] == 1.0
    # torch.rot90 turns +x towards -y (row n//2 - 2): the content turns by -90 degrees
    assert one[0, 0, n // 2 - 2, n // 2] == 2.0
    x = torch.randn(3, 1, n, n)
    torch.testing.assert_close(rot90_images(rot90_images(x, 1), 3), x, rtol=0, atol=0)
    k_mod4 = rot90_images(x, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(rot90_images(x, torch.tensor([4, 5, -3])), k_mod4, rtol=0, atol=0)
