"""CUDA checks (marked ``gpu``: skipped without CUDA; ``benchmarks/gpu_check.sh`` runs them).

* the torch reconstruction on CUDA against the compiled CPU kernel on the same star file;
* the model's deterministic prediction on CUDA (repeatable, and the CPU's poses);
* a few training steps with ``trainer=gpu`` (Lightning on one GPU);
* the refinement (``refine_star`` with its defaults, and the floor's global search) on CUDA
  against the CPU's poses on a tiny simulated entry.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

N = 48


@pytest.fixture(scope="module")
def particle_set(tmp_path_factory):
    from cesped.reconstruction.synthetic import blob_map, write_particle_set

    vol = blob_map(N, n_blobs=30, sigma=1.3, seed=0)
    return write_particle_set(tmp_path_factory.mktemp("gpu_set"), vol, 600, pixel_size=2.0, snr=2.0, seed=1)


@pytest.mark.parametrize("symmetry", ["C1", "D2"])
def test_cuda_reconstruction_matches_cpu_kernel(particle_set, symmetry):
    from cesped.evaluation.metrics import fsc
    from cesped.reconstruction.fourier import reconstruct

    cpu, px_cpu = reconstruct(particle_set, symmetry=symmetry, device="cpu")
    gpu, px_gpu = reconstruct(particle_set, symmetry=symmetry, device="cuda")
    assert px_cpu == px_gpu and gpu.shape == cpu.shape == (N, N, N) and gpu.dtype == np.float32
    curve = fsc(gpu, cpu)
    assert np.all(curve[: N // 2] > 0.999), curve
    # the same scale, not only the same shape
    assert float(np.sum(gpu * cpu) / np.sum(cpu * cpu)) == pytest.approx(1.0, abs=1e-3)


def _tiny_model():
    from cesped.models.image2sphere import Image2Sphere

    torch.manual_seed(0)
    return Image2Sphere(
        "resnet18",
        pretrained=False,
        lmax=3,
        s2_fdim=8,
        so3_fdim=4,
        hp_order_projector=1,
        hp_order_s2=1,
        hp_order_so3=2,
        so3_act_resolution=4,
    ).eval()


def test_cuda_prediction_is_deterministic_and_matches_cpu():
    torch.backends.cudnn.allow_tf32 = False  # compare float32 with float32
    torch.backends.cuda.matmul.allow_tf32 = False
    model = _tiny_model()
    img = torch.randn(16, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    rot_cpu, p_cpu = model.predict(img)
    model = model.cuda()
    rot_a, p_a = model.predict(img.cuda())
    rot_b, p_b = model.predict(img.cuda())
    assert torch.equal(rot_a, rot_b) and torch.equal(p_a, p_b)  # repeatable on the GPU
    same = (rot_a.cpu() - rot_cpu).abs().amax(dim=(-1, -2)).squeeze(1) < 1e-4
    assert same.float().mean() >= 0.9, same  # near-ties may swap grid cells
    torch.testing.assert_close(p_a.cpu()[same], p_cpu[same], rtol=1e-3, atol=1e-5)


def test_training_steps_with_trainer_gpu(tmp_path):
    from hydra import compose, initialize_config_module

    from cesped.simulation.entry import simulate_entry
    from cesped.training.train import train

    bench = tmp_path / "bench"
    simulate_entry(bench / "tiny", "4e43", n_particles=64, pixel_size=4.0, box=32, snr=1.0, symmetry="C1",
                   seed=0, progress=False)  # fmt: skip
    out = tmp_path / "run"
    overrides = [
        "entry=tiny", "halfset=0", f"benchmark_dir={bench}", f"output_dir={out}", "trainer=gpu",
        "data.batch_size=8", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "predict_other_half=false",
        "model.net.lmax=3", "model.net.s2_fdim=8", "model.net.so3_fdim=4", "model.net.hp_order_projector=1",
        "model.net.hp_order_s2=1", "model.net.hp_order_so3=1", "model.net.so3_act_resolution=4",
    ]  # fmt: skip
    with initialize_config_module(config_module="cesped.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train(cfg)
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 2  # 1 epoch x 2 batches
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


def test_cuda_refinement_gives_the_cpu_poses(tiny_entry, tmp_path):
    """The same refinement (FSC-weighted reference, two rounds, global starts) on CUDA and on the
    CPU: the same poses up to float rounding (a few particles may settle one grid step apart)."""
    from cesped.geometry.errors import angular_distance
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.io.star import read_star, write_star
    from cesped.refinement.api import image_limited_floor, refine_star

    root, name = tiny_entry
    st = read_star(root / name / "particles_1.star")
    rng = np.random.default_rng(0)
    st.particles["rlnAngleRot"] = st.particles["rlnAngleRot"] + rng.normal(0, 6, len(st.particles))
    pred = tmp_path / "pred.star"
    write_star(pred, st)
    rot = {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / f"refined_{dev}.star"
        refine_star(name, 1, pred, out, benchmark_dir=root, device=dev, use_cache=False)
        p = read_star(out).particles
        rot[dev] = euler_to_matrix(p[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(np.float64))
    d = angular_distance(torch.from_numpy(rot["cpu"]), torch.from_numpy(rot["cuda"])).numpy()
    assert np.median(d) < 0.05 and (d < 1.0).mean() >= 0.97, np.sort(d)[-10:]
    f = {
        dev: image_limited_floor(name, 1, device=dev, benchmark_dir=root, use_cache=False)
        for dev in ("cpu", "cuda")
    }
    d = angular_distance(
        torch.from_numpy(f["cpu"]["rotmats"]), torch.from_numpy(f["cuda"]["rotmats"])
    ).numpy()
    assert np.median(d) < 0.05 and (d < 1.0).mean() >= 0.97
