"""rlnImageName with a folder prefix: the stack is looked for by its base name (as the original's loader)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cesped.io.stack import ImageSource, write_stack
from cesped.io.star import StarFile, read_star, write_star


def _write(tmp_path, names, n=3):
    imgs = np.random.default_rng(0).normal(size=(n, 8, 8)).astype(np.float32)
    d = tmp_path / "moved"
    write_stack(d / "a.mrcs", imgs, 1.5)
    p = pd.DataFrame({"rlnImageName": names, "rlnOpticsGroup": 1})
    o = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.5]})
    write_star(d / "particles.star", StarFile(p, o))
    return read_star(d / "particles.star"), imgs


@pytest.mark.parametrize("prefix", ["Extract/job012/", "/cluster/project/Extract/job012/"])
def test_project_prefix_falls_back_to_the_star_folder(tmp_path, prefix):
    star, imgs = _write(tmp_path, [f"{i + 1:06d}@{prefix}a.mrcs" for i in (2, 0, 1)])
    src = ImageSource.from_star(star)
    np.testing.assert_array_equal(src.read([0, 1, 2]), imgs[[2, 0, 1]])
    assert src.files == [str((tmp_path / "moved" / "a.mrcs").resolve())]
    # with another root: the root first, then the star's folder
    src = ImageSource.from_star(star, root=tmp_path / "elsewhere")
    np.testing.assert_array_equal(src.read([0]), imgs[[2]])


def test_missing_stack_names_every_place_tried(tmp_path):
    star, _ = _write(tmp_path, ["1@Extract/job012/b.mrcs"])
    with pytest.raises(FileNotFoundError) as exc:
        ImageSource.from_star(star)
    msg = str(exc.value)
    d = tmp_path / "moved"
    assert str(d / "Extract" / "job012" / "b.mrcs") in msg and str(d / "b.mrcs") in msg
