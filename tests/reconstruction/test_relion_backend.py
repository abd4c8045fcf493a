"""The RELION backend, and the native map against relion_reconstruct's map of the same star file."""

from __future__ import annotations

import numpy as np
import pytest

from cesped.evaluation.metrics import fsc
from cesped.reconstruction.fourier import reconstruct
from cesped.reconstruction.relion import find_relion_binary, reconstruct_relion, relion_command
from cesped.simulation.fixtures import blob_map, write_particle_set

N = 32
K08 = int(0.8 * (N // 2))


@pytest.fixture(scope="module")
def noisy_set(tmp_path_factory):
    vol = blob_map(N, n_blobs=24, sigma=1.3, seed=5, symmetry="C2")
    star = write_particle_set(
        tmp_path_factory.mktemp("rel"),
        vol,
        600,
        pixel_size=2.0,
        snr=2.0,
        seed=6,
        extra_columns={"rlnParticleFigureOfMerit": np.linspace(0.1, 1.0, 600)},
    )
    return vol, star


@pytest.mark.relion
@pytest.mark.parametrize("sym, fom", [("C1", False), ("C2", True)])
def test_native_agrees_with_relion_reconstruct(noisy_set, tmp_path, sym, fom):
    _, star = noisy_set
    out = tmp_path / "relion.mrc"
    rel, px_rel = reconstruct_relion(star, sym, out, n_cpus=1, fom_weighting=fom)
    nat, px_nat = reconstruct(star, symmetry=sym, weights="rlnParticleFigureOfMerit" if fom else None)
    assert out.is_file()
    assert px_rel == pytest.approx(px_nat)
    curve = fsc(nat, rel)
    assert np.all(curve[: K08 + 1] > 0.95), curve


def test_missing_relion_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CESPED_RELION_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="relion_reconstruct.*CESPED_RELION_BIN"):
        find_relion_binary("relion_reconstruct")


def test_binary_lookup_order(monkeypatch, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    exe = fake / "relion_reconstruct"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("CESPED_RELION_BIN", str(fake))
    assert find_relion_binary("relion_reconstruct") == str(exe)
    assert find_relion_binary("relion_reconstruct", relion_bin=exe) == str(exe)
    cmd = relion_command("p.star", "o.mrc", "c2", n_cpus=1, fom_weighting=True)
    assert cmd[0] == str(exe)
    assert cmd[1:] == [
        "--i",
        "p.star",
        "--o",
        "o.mrc",
        "--ctf",
        "--sym",
        "c2",
        "--pad",
        "2.0",
        "--fom_weighting",
    ]


def test_singularity_command_and_missing_image(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="image"):
        relion_command("p.star", "o.mrc", "C1", singularity_img=tmp_path / "none.sif")
    img = tmp_path / "cesped.sif"
    img.write_text("")
    fake = tmp_path / "bin"
    fake.mkdir()
    runtime = fake / "singularity"
    runtime.write_text("#!/bin/sh\nexit 0\n")
    runtime.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    cmd = relion_command("p.star", "o.mrc", "D2", n_cpus=2, singularity_img=img, bind_dirs=["/data"])
    assert cmd[:5] == [str(runtime), "exec", "--bind", "/data", str(img)]
    assert cmd[5:9] == ["mpirun", "-np", "2", "relion_reconstruct_mpi"]
    assert "d2" in cmd


@pytest.mark.relion
def test_relion_failure_is_reported(tmp_path):
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\nloop_\n_rlnImageName #1\n000001@missing.mrcs\n")
    with pytest.raises((RuntimeError, ValueError)):
        reconstruct_relion(bad, "C1", None)
