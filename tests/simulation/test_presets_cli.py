"""Presets, built-in structures, the command line and the soft mask."""

import inspect
import json

import numpy as np
import pytest

from cesped.simulate import main
from cesped.simulation import PRESETS, simulate_entry
from cesped.simulation.masks import soft_mask_from_map
from cesped.simulation.presets import BUILTIN_STRUCTURES, resolve_structure


def test_builtin_structures_are_packaged():
    for name in BUILTIN_STRUCTURES:
        path = resolve_structure(name)
        assert path.is_file() and path.stat().st_size > 10_000
    assert resolve_structure("6MSM") == resolve_structure("6msm")


def test_presets_match_the_issue_and_the_signature():
    params = set(inspect.signature(simulate_entry).parameters)
    for name, kwargs in PRESETS.items():
        assert set(kwargs) <= params, name
        structures = kwargs["structure"] if isinstance(kwargs["structure"], tuple) else (kwargs["structure"],)
        assert set(structures) <= set(BUILTIN_STRUCTURES)
    for name, sym in (("synth_6msm", "C1"), ("synth_4e43", "C2")):
        p = PRESETS[name]
        assert (p["pixel_size"], p["box"], p["n_particles"], p["snr"], p["symmetry"]) == (
            3.0,
            64,
            8000,
            0.05,
            sym,
        )
        assert tuple(p["defocus_range"]) == (10000.0, 25000.0)
    assert any(p["pixel_size"] == 1.5 for p in PRESETS.values())


def test_cli_writes_an_entry(tmp_path):
    out = tmp_path / "cli"
    rc = main(
        [
            "--structure",
            "4e43",
            "--n",
            "30",
            "--pixel-size",
            "3.0",
            "--box",
            "32",
            "--snr",
            "0.1",
            "--symmetry",
            "C2",
            "--out",
            str(out),
            "--seed",
            "4",
            "--no-progress",
        ]
    )
    assert rc == 0
    gen = json.loads((out / "generation.json").read_text())
    assert (gen["n_particles"], gen["seed"], gen["symmetry"], gen["snr"]) == (30, 4, "C2", 0.1)
    assert json.loads((out / "info_1.json").read_text())["symmetry"] == "C2"


def test_cli_preset_override_and_errors(tmp_path, capsys):
    rc = main(
        ["--preset", "synth_4e43", "--n", "20", "--box", "32", "--out", str(tmp_path / "p"), "--no-progress"]
    )
    assert rc == 0
    gen = json.loads((tmp_path / "p" / "generation.json").read_text())
    assert (gen["n_particles"], gen["box"], gen["snr"], gen["symmetry"]) == (20, 32, 0.05, "C2")
    rc = main(
        [
            "--structure",
            "4e43",
            "--n",
            "20",
            "--pixel-size",
            "3",
            "--box",
            "32",
            "--snr",
            "-1",
            "--out",
            str(tmp_path / "bad"),
            "--no-progress",
        ]
    )
    assert rc == 2 and "snr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--structure", "4e43", "--out", str(tmp_path / "x")])  # missing --n etc.


def test_soft_mask_covers_the_density():
    n, px = 48, 1.0
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    vol = np.exp(-(x**2 + y**2 + z**2) / (2 * 4.0**2))
    mask = soft_mask_from_map(vol, px, threshold=0.1, lowpass_a=0.0, extend_a=4.0, soft_edge_a=8.0)
    r = np.sqrt(x**2 + y**2 + z**2) * px  # Å
    r_thr = 4.0 * np.sqrt(2 * np.log(10))  # radius where the blob falls to 10 % of its peak, Å
    slack = 1.5 * px  # the binary mask is made of whole voxels
    assert (mask[r <= r_thr + 4.0 - slack] == 1).all()
    assert (mask[r >= r_thr + 12.0 + slack] == 0).all()
    edge = mask[(r > r_thr + 4.0 + slack) & (r < r_thr + 12.0 - slack)]
    assert edge.size > 0 and ((edge > 0) & (edge < 1)).all()
    with pytest.raises(ValueError, match="no positive density"):
        soft_mask_from_map(np.zeros((8, 8, 8)), 1.0)


@pytest.mark.parametrize("preset", ["synth_6msm", "synth_4e43"])
def test_builtin_presets_build_without_warnings(tmp_path, preset):
    """Every element of the built-in models has scattering factors, and the default box fits."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        d = simulate_entry(tmp_path / preset, **{**PRESETS[preset], "n_particles": 8}, progress=False)
    gen = json.loads((d / "generation.json").read_text())
    assert gen["model"]["n_atoms"] > 1000
