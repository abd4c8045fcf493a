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


def test_merge_replaces_only_the_rerun_scripts_figures(tmp_path):
    mod = _run_all()
    old = {
        "machine": "m", "date": "2026-01-01 00:00 UTC", "commit": "a" * 40, "minutes": 30.0,
        "scripts": [{"command": "python benchmarks/bench_a.py"},
                    {"command": "python benchmarks/bench_b.py --x"}],
        "figures": [{"name": "a1", "value": 1, "script": "bench_a.py"},
                    {"name": "b1", "value": 2, "script": "bench_b.py"}],
        "errors": {"bench_b.py --x": "boom"}, "skipped": {},
    }  # fmt: skip
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(old))
    new = {
        "machine": "m", "date": "2026-02-02 00:00 UTC", "commit": "b" * 40, "minutes": 5.0,
        "scripts": [{"command": "setup (...)"}, {"command": "python benchmarks/bench_b.py --x"}],
        "figures": [{"name": "b1", "value": 3, "script": "bench_b.py"}], "errors": {}, "skipped": {},
    }  # fmt: skip
    got = mod.merge_records(path, new, ["bench_b.py"], ["bench_b"])
    assert {f["name"]: f["value"] for f in got["figures"]} == {"a1": 1, "b1": 3}
    b1 = [f for f in got["figures"] if f["name"] == "b1"][0]
    assert b1["run_date"] == new["date"] and b1["run_commit"] == new["commit"]
    assert got["errors"] == {} and got["date"] == old["date"]
    commands = [s["command"] for s in got["scripts"]]
    assert commands == ["python benchmarks/bench_a.py", "python benchmarks/bench_b.py --x"]
    assert got["updates"][-1]["scripts"] == ["bench_b.py"] and "--merge" in got["updates"][-1]["command"]
    # the README's headline names the update
    rt = load_script(BENCH / "readme_table.py", "readme_table")
    got["figures"].append({"name": "simulate_synth_6msm_seconds", "value": 6.0, "unit": "s"})
    path.write_text(json.dumps(got))
    head = rt._headline(path, "raw.json")
    assert "simulate synth_6msm" in head and "replaced the figures of `bench_b.py`" in head
    # nothing to merge into
    try:
        mod.merge_records(tmp_path / "nope.json", new, ["bench_b.py"], ["bench_b"])
    except ValueError as e:
        assert "nope.json" in str(e)
    else:
        raise AssertionError("merge into a missing record must fail")
