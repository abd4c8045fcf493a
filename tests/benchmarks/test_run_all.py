"""benchmarks/run_all.py: the plan covers every benchmark script; figures carry their command."""

from __future__ import annotations

import json
import os

from ._scripts import BENCH, load_script


def _run_all():
    return load_script(BENCH / "run_all.py", "run_all")


def test_plan_runs_every_benchmark_script(tmp_path):
    mod = _run_all()
    assert mod.plan_gaps(mod.PLAN) == []
    for name, _, minutes in mod.PLAN + mod.LARGE_PLAN:
        assert (BENCH / name).is_file(), name
        assert minutes >= 0
    # the documented estimates fit the 40 minutes with the ~3-minute setup
    assert sum(m for _, _, m in mod.PLAN) + 3 <= 40
    # a new script is noticed
    for name in [n for n, _, _ in mod.PLAN] + ["bench_new.py", "_launch.py", "run_all.py"]:
        (tmp_path / name).write_text("")
    assert mod.plan_gaps(mod.PLAN, tmp_path) == ["bench_new.py"]


def test_placeholders_are_those_setup_gives():
    mod = _run_all()
    used = {x for _, a, _ in mod.PLAN + mod.LARGE_PLAN for x in a if "{" in x}
    assert used <= {"{bench}", "{ckpt}", "{pred}", "{gt}"}


def test_figures_carry_the_command_and_no_machine_path(tmp_path):
    mod = _run_all()
    secret = str(tmp_path / "work" / "train_run" / "predictions_1.star")
    script = tmp_path / "bench_fake.py"
    script.write_text(
        "import json, sys\n"
        "print('not json')\n"
        "print(json.dumps({'name': 'x', 'value': 1.5, 'unit': 's', 'pred': sys.argv[1]}))\n"
        "print(json.dumps({'no_name': 1}))\n"
    )
    figs, err = mod.run_script(
        script, [secret, "--n", "3"], dict(os.environ), 60, ["PRED", "--n", "3"], {secret: "PRED"}
    )
    assert err is None and len(figs) == 1
    fig = figs[0]
    assert fig["bench_command"] == "python benchmarks/bench_fake.py PRED --n 3"
    assert fig["pred"] == "PRED" and str(tmp_path) not in json.dumps(fig)
    table = mod.markdown_table(figs, "machine")
    assert "| x | 1.5 | not measured |  | s | `python benchmarks/bench_fake.py PRED --n 3` |" in table
    script.write_text("import sys\nsys.exit(3)\n")
    _, err = mod.run_script(script, [], dict(os.environ), 60)
    assert err is not None and err.startswith("exit 3")


def test_gpu_only_scripts_skip_cleanly_without_cuda(tmp_path, monkeypatch):
    mod = _run_all()
    monkeypatch.setattr(mod, "PLAN", [("gpu_bench.py", ["reconstruct"], 0.0)])
    monkeypatch.setattr(mod, "plan_gaps", lambda plan: [])
    monkeypatch.setattr(mod, "cuda_available", lambda env: False)
    assert mod.main(["--out", str(tmp_path), "--workdir", str(tmp_path / "w")]) == 0
    rec = json.loads((tmp_path / "latest.json").read_text())
    assert rec["figures"] == [] and rec["errors"] == {}
    assert "no CUDA device" in rec["skipped"]["gpu_bench.py reconstruct"]
    assert "Skipped: `gpu_bench.py reconstruct`: GPU only" in (tmp_path / "latest.md").read_text()


def test_a_failed_setup_is_recorded_and_the_rest_still_runs(tmp_path, monkeypatch):
    mod = _run_all()

    def failing_setup(work, env, timeout):
        raise RuntimeError("short training run failed: ...\nout of memory")

    monkeypatch.setattr(mod, "setup", failing_setup)
    monkeypatch.setattr(mod, "PLAN", [("bench_i2s_prediction.py", ["{ckpt}", "3,0,0"], 1.0),
                                      ("gpu_bench.py", ["reconstruct"], 0.0)])  # fmt: skip
    monkeypatch.setattr(mod, "plan_gaps", lambda plan: [])
    monkeypatch.setattr(mod, "cuda_available", lambda env: False)
    assert mod.main(["--out", str(tmp_path), "--workdir", str(tmp_path / "w")]) == 1
    rec = json.loads((tmp_path / "latest.json").read_text())
    assert rec["errors"]["setup"] == "out of memory"
    assert "setup failed" in rec["errors"]["bench_i2s_prediction.py CKPT 3,0,0"]
    assert "gpu_bench.py reconstruct" in rec["skipped"]
    assert "Not measured (errors)" in (tmp_path / "latest.md").read_text()
