"""The package's layering: no module imports a module of a higher layer (any import, also inside
functions), read from the source with :mod:`ast` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cesped"

#: io -> geometry/physics -> reconstruction/simulation -> refinement, data -> models, training, recovery,
#: evaluation -> benchmark protocol -> entry points (the modules at the package's top level).
LAYERS = {
    "io": 0,
    "geometry": 1,
    "physics": 1,
    "reconstruction": 2,
    "simulation": 2,
    "refinement": 3,
    "data": 3,
    "models": 4,
    "training": 4,
    "recovery": 4,
    "evaluation": 4,
    "benchmark": 5,
}
BASE = {"settings", "_numpy", "_cli", "configs", "__version__"}  # helpers every layer may use
ENTRY = 6


def _layer(parts: tuple[str, ...]) -> int | None:
    """Layer of the module ``cesped.<parts>`` (None: a base helper, usable everywhere)."""
    if not parts or parts[0] in BASE:
        return None
    return LAYERS.get(parts[0], ENTRY)


def _imports(path: Path, pkg_dir: Path):
    rel = path.relative_to(pkg_dir).with_suffix("").parts
    pkg = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "cesped":
                    yield tuple(a.name.split(".")[1:]), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = pkg[: len(pkg) - node.level + 1] if node.level > 1 else pkg
                mod = base + tuple((node.module or "").split(".")) if node.module else base
                yield tuple(p for p in mod if p), node.lineno
            elif node.module and node.module.split(".")[0] == "cesped":
                mod = tuple(node.module.split(".")[1:])
                if mod:
                    yield mod, node.lineno
                else:  # from cesped import x
                    for a in node.names:
                        yield (a.name,), node.lineno


def test_layer_table_covers_every_subpackage():
    subs = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert subs - set(LAYERS) - BASE == set()


def _violations(pkg_dir: Path = PKG) -> list[str]:
    out = []
    for path in sorted(pkg_dir.rglob("*.py")):
        rel = path.relative_to(pkg_dir).with_suffix("").parts
        own = _layer(rel if len(rel) > 1 else (rel[0],))
        if own is None:
            continue
        for mod, line in _imports(path, pkg_dir):
            target = _layer(mod)
            if target is not None and target > own:
                out.append(f"{path.relative_to(pkg_dir.parent)}:{line} imports cesped.{'.'.join(mod)}")
    return out


def test_nothing_imports_upward():
    assert _violations() == []


def test_the_checker_sees_an_upward_import(tmp_path):
    # the check itself can fail: a refinement module importing a model is reported
    pkg = tmp_path / "cesped"
    (pkg / "refinement").mkdir(parents=True)
    (pkg / "models").mkdir()
    for d in (pkg, pkg / "refinement", pkg / "models"):
        (d / "__init__.py").write_text("")
    (pkg / "refinement" / "bad.py").write_text("def f():\n    from cesped.models.so3_grid import grid_size\n")
    (pkg / "models" / "ok.py").write_text("from cesped.refinement import bad\n")
    assert _violations(pkg) == ["cesped/refinement/bad.py:2 imports cesped.models.so3_grid"]


@pytest.mark.parametrize("name", ["so3_grid_matrices", "nearest_rotation_index", "grid_size"])
def test_models_so3_grid_re_exports_the_geometry_grid(name):
    import cesped.geometry.so3_grid as g
    import cesped.models.so3_grid as m

    assert getattr(m, name) is getattr(g, name)
