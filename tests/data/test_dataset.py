"""ParticlesDataset on tiny local entries: the paper's listings, preprocessing wiring, bad input."""

from __future__ import annotations

import pickle
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import DataLoader

from cesped.particlesDataset import ParticlesDataset
from cesped.physics.ctf import compute_ctf

from ._helpers import tiny_tables, write_entry

RAW = dict(apply_perImg_normalization=False, ctf_correction="none", image_size_factor_for_crop=0.0)


def test_listing1_dataloader_two_workers(tiny_entry):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, image_size=16)
    star = starfile.read(tiny_entry / "tiny" / "particles_0.star")["particles"]
    seen = []
    for iid, img, (rotMat, xyShiftAngs, confidence), metadata in DataLoader(ds, batch_size=5, num_workers=2):
        b = len(iid)
        assert img.shape == (b, 1, 16, 16) and img.dtype == torch.float32
        assert rotMat.shape == (b, 3, 3) and xyShiftAngs.shape == (b, 2) and confidence.shape == (b, 1)
        rows = [int(i.split("@")[0]) - 1 for i in iid]
        ref = star.iloc[rows]
        exp_rot = Rotation.from_euler(
            "ZYZ", ref[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
        ).as_matrix()
        np.testing.assert_allclose(rotMat.numpy(), exp_rot, atol=1e-6)
        np.testing.assert_allclose(
            xyShiftAngs.numpy(), ref[["rlnOriginXAngst", "rlnOriginYAngst"]], atol=1e-5
        )
        np.testing.assert_allclose(confidence[:, 0].numpy(), ref["rlnMaxValueProbDistribution"], atol=1e-6)
        np.testing.assert_allclose(metadata["rlnDefocusU"].numpy(), ref["rlnDefocusU"])
        # batched reading == one particle at a time
        for j, r in enumerate(rows):
            single = ds[r]
            assert single[0] == iid[j]
            torch.testing.assert_close(single[1], img[j], atol=1e-5, rtol=1e-5)
        seen += iid
    assert sorted(seen) == sorted(star["rlnImageName"]) and len(seen) == len(ds) == 24
    assert ds.symmetry == "C1" and ds.image_size == 16
    assert ds.sampling_rate == pytest.approx(1.5 * 24 / 16)  # crop 0.25 of 32 -> 24 px, resized to 16
    assert "tiny" in repr(ds) and "image_size=16" in repr(ds)


def test_listing2_update_and_save(tiny_entry, tmp_path):
    ds = ParticlesDataset("tiny", 1, benchmarkDir=tiny_entry)
    rng = np.random.default_rng(0)
    all_ids, all_rot, all_conf = [], [], []
    for iid, img, (rotMat, xyShiftAngs, confidence), metadata in DataLoader(ds, batch_size=8, num_workers=0):  # noqa: B007
        pred = Rotation.random(len(iid), random_state=rng).as_matrix()
        conf = rng.uniform(0, 1, len(iid))
        ds.updateMd(
            ids=iid,
            angles=torch.from_numpy(pred),
            shifts=torch.zeros(len(iid), 2),
            confidence=torch.from_numpy(conf),
            angles_format="rotmat",
        )
        all_ids += list(iid)
        all_rot.append(pred)
        all_conf.append(conf)
    out = tmp_path / "preds.star"
    ds.saveMd(str(out))
    got = starfile.read(out)  # independent parser
    parts = got["particles"].set_index("rlnImageName").loc[all_ids]
    R = Rotation.from_euler(
        "ZYZ", parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
    ).as_matrix()
    np.testing.assert_allclose(R, np.concatenate(all_rot), atol=1e-9)
    np.testing.assert_allclose(parts["rlnParticleFigureOfMerit"], np.concatenate(all_conf), atol=1e-12)
    np.testing.assert_allclose(parts[["rlnOriginXAngst", "rlnOriginYAngst"]], 0.0)
    orig = starfile.read(tiny_entry / "tiny" / "particles_1.star")
    pd.testing.assert_frame_equal(got["optics"], orig["optics"])
    np.testing.assert_allclose(
        parts["rlnDefocusU"], orig["particles"].set_index("rlnImageName").loc[all_ids, "rlnDefocusU"]
    )


@pytest.mark.parametrize("fmt", ["euler", "quaternion"])
def test_update_formats_agree(tiny_entry, tmp_path, fmt):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    ids = [ds[i][0] for i in range(5)]
    rot = Rotation.random(5, random_state=3)
    ds.updateMd(ids, angles=rot.as_matrix(), angles_format="rotmat")
    ds.saveMd(tmp_path / "a.star", allow_partial=True)
    ds2 = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    angles = rot.as_euler("ZYZ", degrees=True) if fmt == "euler" else rot.as_quat()[:, [3, 0, 1, 2]]
    ds2.updateMd(ids, angles=angles, angles_format=fmt)
    ds2.saveMd(tmp_path / "b.star", allow_partial=True)
    a, b = (starfile.read(tmp_path / f)["particles"] for f in ("a.star", "b.star"))
    assert list(a["rlnImageName"]) == list(b["rlnImageName"]) == ids
    Ra = Rotation.from_euler(
        "ZYZ", a[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
    )
    Rb = Rotation.from_euler(
        "ZYZ", b[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
    )
    np.testing.assert_allclose(Ra.as_matrix(), Rb.as_matrix(), atol=1e-9)


def test_dataset_is_picklable_and_small(tiny_entry):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry)
    ds[0]  # opens the memory map in this process
    blob = pickle.dumps(ds)
    assert len(blob) < (tiny_entry / "tiny" / "particles_0.mrcs").stat().st_size  # no image data inside
    ds2 = pickle.loads(blob)
    torch.testing.assert_close(ds2[3][1], ds[3][1])


def test_phase_flip_uses_each_particles_ctf(tmp_path):
    """Images made as ifft(CTF_i·F_i) become ifft(|CTF_i|·F_i): per-particle defocus, angle, phase
    shift and optics group (voltage, Cs, amplitude contrast) are all used."""
    n, box = 12, 48
    parts, optics = tiny_tables(n, box, seed=5)
    opt = optics.set_index("rlnOpticsGroup").loc[parts["rlnOpticsGroup"]]
    ctf = torch.stack(
        [
            compute_ctf(
                defocus_u=r.rlnDefocusU,
                defocus_v=r.rlnDefocusV,
                defocus_angle=r.rlnDefocusAngle,
                voltage=o.rlnVoltage,
                spherical_aberration=o.rlnSphericalAberration,
                amplitude_contrast=o.rlnAmplitudeContrast,
                pixel_size=1.5,
                image_size=box,
                phase_shift=r.rlnCtfPhaseShift,
                dtype=torch.float64,
            )
            for r, o in zip(parts.itertuples(), opt.itertuples())
        ]
    )
    rng = np.random.default_rng(0)
    sig = torch.from_numpy(rng.normal(size=(n, box, box)))
    F = torch.fft.rfft2(torch.fft.ifftshift(sig, dim=(-2, -1)))
    ky, kx = torch.fft.fftfreq(box)[:, None], torch.fft.rfftfreq(box)[None]
    F = F * (
        ky**2 + kx**2 < 0.4**2
    )  # band-limited: no Nyquist terms, where CTF(k) != CTF(-k) breaks symmetry
    imgs = torch.fft.fftshift(torch.fft.irfft2(F * ctf, s=(box, box)), dim=(-2, -1))
    expected = torch.fft.fftshift(torch.fft.irfft2(F * ctf.abs(), s=(box, box)), dim=(-2, -1))
    write_entry(tmp_path, "ctf", 0, imgs.numpy(), parts, optics)
    ds = ParticlesDataset(
        "ctf",
        0,
        benchmarkDir=tmp_path,
        apply_perImg_normalization=False,
        ctf_correction="phase_flip",
        image_size_factor_for_crop=0.0,
    )
    _, got, *_ = ds.get_batch(range(n))
    err = (got[:, 0].double() - expected).abs().max() / expected.abs().max()
    assert err < 1e-5
    # ignoring the phase shift (as the original did) would not reproduce it
    parts0 = parts.assign(rlnCtfPhaseShift=0.0)
    write_entry(tmp_path, "ctf0", 0, imgs.numpy(), parts0, optics)
    ds0 = ParticlesDataset(
        "ctf0",
        0,
        benchmarkDir=tmp_path,
        apply_perImg_normalization=False,
        ctf_correction="phase_flip",
        image_size_factor_for_crop=0.0,
    )
    _, got0, *_ = ds0.get_batch(range(n))
    assert (got0[:, 0].double() - expected).abs().max() / expected.abs().max() > 0.05


def test_preprocessing_matches_functions(tiny_entry):
    raw = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    _, imgs, *_ = raw.get_batch(range(len(raw)))
    ds = ParticlesDataset(
        "tiny",
        0,
        benchmarkDir=tiny_entry,
        image_size=20,
        ctf_correction="none",
        image_size_factor_for_crop=0.25,
    )
    _, out, *_ = ds.get_batch(range(len(ds)))
    from cesped.data.preprocess import crop_center, fourier_resize, normalize_background

    ref = fourier_resize(crop_center(normalize_background(imgs[:, 0]), 0.25), 20)
    torch.testing.assert_close(out[:, 0], ref)
    # background of the normalised (uncropped) images: mean 0, std 1
    norm = ParticlesDataset(
        "tiny", 0, benchmarkDir=tiny_entry, ctf_correction="none", image_size_factor_for_crop=0
    )
    _, nimg, *_ = norm.get_batch(range(len(norm)))
    i, j = np.mgrid[:32, :32]
    bg = torch.from_numpy(np.hypot(i - 16, j - 16) > 16)
    vals = nimg[:, 0][:, bg].double()
    np.testing.assert_allclose(vals.mean(1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(vals.std(1).numpy(), 1.0, atol=1e-4)


def test_add_new_entry_locally(tmp_path):
    parts, optics = tiny_tables(10, 32, seed=2)
    imgs = np.random.default_rng(1).normal(size=(10, 32, 32)).astype(np.float32)
    user = tmp_path / "project"
    (user / "Extract").mkdir(parents=True)
    from cesped.io.stack import write_stack
    from cesped.io.star import StarFile, write_star

    write_stack(user / "Extract" / "a.mrcs", imgs[:6], 1.5)
    write_stack(user / "Extract" / "b.mrcs", imgs[6:], 1.5)
    names = [f"{i + 1}@Extract/a.mrcs" for i in range(6)] + [f"{i + 1}@Extract/b.mrcs" for i in range(4)]
    write_star(user / "Refine" / "run_data.star", StarFile(parts.assign(rlnImageName=names), optics))
    bench = tmp_path / "bench"
    for copy in (True, False):
        name = f"mine_{copy}"
        d = ParticlesDataset.addNewEntryLocally(
            user / "Refine" / "run_data.star", user, name, 1, "d2", benchmarkDir=bench, copy_images=copy
        )
        assert (d / "particles_1.star").exists() and (d / "particles_1.mrcs").exists() == copy
        ds = ParticlesDataset(name, 1, benchmarkDir=bench, **RAW)
        assert ds.symmetry == "D2" and len(ds) == 10
        _, got, (rot, *_), md = ds.get_batch(range(10))
        np.testing.assert_allclose(got[:, 0].numpy(), imgs)
        assert md[7]["rlnImageOriginalName"] == names[7]
        assert (name, 1) in ParticlesDataset.getLocallyAvailableEntries(bench)


def test_entries_listing():
    entries = ParticlesDataset.getCESPEDEntries()
    for name in [
        "TEST",
        "10166",
        "10786",
        "10280",
        "11120",
        "10409",
        "10374",
        "10399",
        "10648",
        "consensus_10648",
        "simulated_10648",
    ]:
        assert (name, 0) in entries and (name, 1) in entries


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_unknown_entry_and_halfset(tmp_path):
    with pytest.raises(ValueError, match="known CESPED entry.*TEST"):
        ParticlesDataset("no_such_entry", 0, benchmarkDir=tmp_path)
    with pytest.raises(ValueError, match="halfset must be 0 or 1"):
        ParticlesDataset("TEST", 2, benchmarkDir=tmp_path)
    with pytest.raises(ValueError, match="ctf_correction"):
        ParticlesDataset("TEST", 0, benchmarkDir=tmp_path, ctf_correction="flip")
    with pytest.raises(ValueError, match="image_size"):
        ParticlesDataset("TEST", 0, benchmarkDir=tmp_path, image_size="128")
    with pytest.raises(ValueError, match="image_size_factor_for_crop"):
        ParticlesDataset("TEST", 0, benchmarkDir=tmp_path, image_size_factor_for_crop=1.2)


def test_missing_entry_without_download_says_what_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="records/10998049"):
        ParticlesDataset("TEST", 0, benchmarkDir=tmp_path, download=False)


def test_truncated_stack(tiny_entry):
    mrcs = tiny_entry / "tiny" / "particles_0.mrcs"
    data = mrcs.read_bytes()
    mrcs.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match="truncated"):
        ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry)


def test_corrupt_stack(tiny_entry):
    (tiny_entry / "tiny" / "particles_0.mrcs").write_bytes(b"not an mrc file" * 10)
    with pytest.raises(ValueError, match="particles_0.mrcs"):
        ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry)


def test_rows_past_the_stack(tmp_path):
    parts, optics = tiny_tables(6, 16)
    write_entry(tmp_path, "short", 0, np.zeros((5, 16, 16), np.float32), parts, optics)
    with pytest.raises(ValueError, match="asks for image 6 .* has 5 images"):
        ParticlesDataset("short", 0, benchmarkDir=tmp_path)


def test_non_finite_pixels_named(tmp_path):
    parts, optics = tiny_tables(4, 16)
    imgs = np.zeros((4, 16, 16), np.float32)
    imgs[2, 3, 3] = np.nan
    write_entry(tmp_path, "nan", 0, imgs, parts, optics)
    ds = ParticlesDataset("nan", 0, benchmarkDir=tmp_path)
    ds[1]
    with pytest.raises(ValueError, match="particle 2 .*non-finite"):
        ds[2]
    with pytest.raises(IndexError):
        ds[4]


def test_update_md_bad_input_changes_nothing(tiny_entry, tmp_path):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    before = ds.particles.particles.copy()
    ids = [ds[i][0] for i in range(3)]
    good = Rotation.random(3, random_state=0).as_matrix()
    with pytest.raises(ValueError, match="not in"):
        ds.updateMd(ids[:2] + ["999@nowhere.mrcs"], angles=good)
    bad = good.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ds.updateMd(ids, angles=bad)
    with pytest.raises(ValueError, match="non-finite"):
        ds.updateMd(ids, angles=good, confidence=[0.5, np.inf, 0.1])
    with pytest.raises(ValueError, match="shape"):
        ds.updateMd(ids, angles=good[:2])
    with pytest.raises(ValueError, match="not rotation matrices"):
        ds.updateMd(ids, angles=2 * good)
    with pytest.raises(ValueError, match="angles_format"):
        ds.updateMd(ids, angles=good, angles_format="axisangle")
    with pytest.raises(ValueError, match="duplicates"):
        ds.updateMd([ids[0]] * 3, angles=good)
    pd.testing.assert_frame_equal(ds.particles.particles, before)
    with pytest.raises(ValueError, match=".star"):
        ds.saveMd(tmp_path / "preds.txt")
    assert not (tmp_path / "preds.txt").exists()
    ds.updateMd(ids, angles=good)
    ds.saveMd(tmp_path / "p.star", allow_partial=True)
    with pytest.raises(FileExistsError):
        ds.saveMd(tmp_path / "p.star", overwrite=False)


# ------------------------------------------------------------------------------------------------
# independent reference: relion_reconstruct reads saveMd's output
# ------------------------------------------------------------------------------------------------
@pytest.mark.relion
@pytest.mark.skipif(shutil.which("relion_reconstruct") is None, reason="RELION not on PATH")
def test_saved_predictions_reconstruct_with_relion(tmp_path):
    import mrcfile

    from cesped.physics.projection import project

    box, n = 32, 400
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((box,) * 3)
    for (px, py, pz), w, s in [
        ((5, 0, 0), 1.0, 2.0),
        ((0, 7, 1), 0.7, 1.5),
        ((-2, -3, 6), 0.5, 2.5),
        ((-6, 4, -3), 1.2, 1.8),
    ]:
        vol += w * np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / (2 * s**2))
    parts, optics = tiny_tables(n, box, seed=7, pixel_size=3.0)
    parts[["rlnOriginXAngst", "rlnOriginYAngst"]] = 0.0
    rot = Rotation.from_euler(
        "ZYZ", parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
    )
    imgs = project(torch.from_numpy(vol), torch.from_numpy(rot.as_matrix())).numpy()
    write_entry(
        tmp_path,
        "proj",
        0,
        imgs,
        parts.drop(columns=["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnCtfPhaseShift"]),
        optics,
    )
    ds = ParticlesDataset("proj", 0, benchmarkDir=tmp_path, ctf_correction="none")

    def reconstruct(star):
        out = tmp_path / (star.stem + ".mrc")
        subprocess.run(
            ["relion_reconstruct", "--i", str(star), "--o", str(out), "--sym", "c1"],
            cwd=ds.datadir,
            check=True,
            capture_output=True,
        )
        with mrcfile.open(out) as m:
            v = m.data.astype(np.float64)
        return np.corrcoef(v.ravel(), vol.ravel())[0, 1]

    for iid, img, (rotMat, *_), md in DataLoader(ds, batch_size=64, num_workers=0):  # noqa: B007
        ds.updateMd(iid, angles=rotMat, confidence=torch.ones(len(iid)))
    ds.saveMd(tmp_path / "good.star")
    rng = np.random.default_rng(0)
    ids = list(ds.particles.particles["rlnImageName"])
    ds.updateMd(ids, angles=Rotation.random(n, random_state=rng).as_matrix())
    ds.saveMd(tmp_path / "random.star")
    good, rand = reconstruct(tmp_path / "good.star"), reconstruct(tmp_path / "random.star")
    assert good > 0.9 and rand < 0.6, (good, rand)


def test_augmenter_in_dataloader_workers(tiny_entry):
    from cesped.data.augment import PoseAugmenter

    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry)
    plain = ds.get_batch(range(len(ds)))
    ds.augmenter = PoseAugmenter(seed=0, p_rot90=1.0, p_rotation=1.0)
    batches = list(DataLoader(ds, batch_size=6, num_workers=2))
    ids = [i for b in batches for i in b[0]]
    rot = torch.cat([b[2][0] for b in batches])
    rows = [ids.index(i) for i in plain[0]]
    R0, R1 = plain[2][0].double(), rot[rows].double()
    # labels moved by in-plane rotations only: R1 = R0 · Rz(θ) keeps the viewing direction R·e_z
    torch.testing.assert_close(R1[:, :, 2], R0[:, :, 2], atol=1e-5, rtol=0)
    assert (R1 - R0).abs().amax(dim=(1, 2)).gt(1e-3).float().mean() > 0.5
    # the two workers (batches 0 and 1) did not draw the same random in-plane rotations
    delta = R0.transpose(1, 2) @ R1  # Rz(θ) per particle, in the order of ds rows
    assert not torch.allclose(delta[0:6], delta[6:12], atol=1e-4)


def test_worker_batches_equal_in_process_batches(tiny_entry):
    """2 DataLoader workers give exactly the batches of the main process (paper defaults), whose
    metadata are the star's rows; the main process's pickler is left alone (the workers send
    the small tensors by value, cesped.data.ipc)."""
    from multiprocessing.reduction import ForkingPickler

    from torch.multiprocessing.reductions import reduce_tensor

    from cesped.data.ipc import BY_VALUE_MAX_BYTES

    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, image_size=64)
    star = starfile.read(tiny_entry / "tiny" / "particles_0.star")["particles"]

    def batches(workers):
        g = torch.Generator().manual_seed(0)
        return list(DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers, generator=g))

    # DataLoader workers run torch with 1 thread; the FFTs' last bits depend on the thread count,
    # so the in-process pass uses 1 thread too (the comparison is exact)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_process = batches(0)
    finally:
        torch.set_num_threads(threads)
    from_workers = batches(2)
    assert ForkingPickler._extra_reducers[torch.Tensor] is reduce_tensor
    # the workers sent the tensors of at most 64 KiB by value (labels, metadata, the last batch's
    # 4 images of 64² float32), the larger ones (5 images) through shared memory
    for b in from_workers:
        tensors = [b[1], *b[2], *(v for v in b[3].values() if isinstance(v, torch.Tensor))]
        assert [t.is_shared() for t in tensors] == [t.nbytes > BY_VALUE_MAX_BYTES for t in tensors]
    assert from_workers[0][1].is_shared() and not from_workers[-1][1].is_shared()
    assert len(in_process) == len(from_workers) == 5
    for a, b in zip(in_process, from_workers):
        assert list(a[0]) == list(b[0])
        for x, y in zip([a[1], *a[2]], [b[1], *b[2]]):
            assert x.dtype == y.dtype and torch.equal(x, y)
        assert list(a[3]) == list(b[3]) == list(star.columns)
        ref = star.set_index("rlnImageName", drop=False).loc[list(a[0])]
        for col in star.columns:
            x, y = a[3][col], b[3][col]
            if isinstance(x, torch.Tensor):
                assert x.dtype == y.dtype and torch.equal(x, y)
                np.testing.assert_array_equal(x.numpy(), ref[col].to_numpy())
            else:
                assert list(x) == list(y) == ref[col].astype(str).tolist()
    assert sorted(i for b in from_workers for i in b[0]) == sorted(star["rlnImageName"])
