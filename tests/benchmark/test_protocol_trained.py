"""The protocol with training (tiny Image2Sphere, tiny entries): kill, resume, and ``make leaderboard``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_TRAIN

REPO = Path(__file__).resolve().parents[2]


class _Counting:
    def __init__(self, fn, die_at=None):
        self.fn, self.die_at, self.calls = fn, die_at, 0

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.die_at is not None and self.calls == self.die_at:
            raise KeyboardInterrupt("simulated kill")
        return self.fn(*a, **kw)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_trained_protocol_resumes_across_processes_and_make_leaderboard(tiny_bench, tmp_path, monkeypatch):
    import cesped.training.infer as infer_mod
    import cesped.training.train as train_mod
    from cesped.benchmark.__main__ import main
    from cesped.benchmark.leaderboard import format_stat

    outdir, table_dir = tmp_path / "runs", tmp_path / "table"
    run_args = [f"benchmark_dir={tiny_bench}", "n_cpus=1", *TINY_TRAIN]
    train_calls = _Counting(train_mod.train)
    infer_calls = _Counting(infer_mod.infer, die_at=3)  # killed predicting tinyA seed 1 half-set 1
    monkeypatch.setattr(train_mod, "train", train_calls)
    monkeypatch.setattr(infer_mod, "infer", infer_calls)
    with pytest.raises(KeyboardInterrupt):
        main(
            ["run", "experiment=demo", "entries=[tinyA,tinyB]", "seeds=[0,1]", f"outdir={outdir}", *run_args]
        )
    assert train_calls.calls == 3  # tinyA seed 0 (two halves), tinyA seed 1 half 0
    rec0 = outdir / "records" / "Image2Sphere-demo" / "tinyA" / "seed0.json"
    trained = outdir / "runs" / "Image2Sphere-demo" / "tinyA" / "seed1" / "half0" / "protocol_trained.json"
    last = trained.with_name("checkpoints") / "last.ckpt"
    kept = {p: p.stat().st_mtime_ns for p in (rec0, trained, last)}
    rec0_text = json.dumps({k: v for k, v in json.loads(rec0.read_text()).items() if k != "command"})
    assert str(outdir.resolve()) not in rec0_text  # the run's files are named relative to outdir
    assert '"half1": "runs/Image2Sphere-demo/tinyA/seed0/half0/predictions_1.star"' in rec0_text
    assert not trained.with_name("protocol_half.json").exists()

    # `make leaderboard` in a tiny form continues the killed run (another process) and writes the table
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    make = [
        "make",
        "-o",
        ".venv/.cesped-installed",
        "leaderboard",
        f"PY={sys.executable}",
        "LEADERBOARD_ENTRIES=[tinyA,tinyB]",
        "LEADERBOARD_SEEDS=[0,1]",
        f"LEADERBOARD_DIR={outdir}",
        f"LEADERBOARD_OUT={table_dir}",
        "LEADERBOARD_ARGS=" + " ".join(run_args),
        f"LEADERBOARD_TABLE_ARGS=--benchmarkDir {tiny_bench}",
    ]
    out = subprocess.run(make, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "tinyA seed 0: record exists" in log
    assert "tinyA seed 1 half-set 0: training finished earlier" in log
    for p, t in kept.items():
        assert p.stat().st_mtime_ns == t, f"{p} was redone"
    recs = {}
    for entry in ("tinyA", "tinyB"):
        for seed in (0, 1):
            r = json.loads(
                (outdir / "records" / "Image2Sphere-demo" / entry / f"seed{seed}.json").read_text()
            )
            assert r["method"]["kind"] == "trained" and r["method"]["config"]["experiment"] == "demo"
            assert r["method"]["config"]["train_config_half0"]["seed"] == seed
            t = r["timings_s"]
            assert t["train"] > 0 and t["predict"] > 0 and t["evaluate"] > 0
            recs[(entry, seed)] = r
    # the seeds train differently
    assert recs[("tinyB", 0)]["metrics"]["MAnE"] != recs[("tinyB", 1)]["metrics"]["MAnE"]
    md = (table_dir / "leaderboard.md").read_text()
    assert (table_dir / "leaderboard.html").is_file()
    for entry in ("tinyA", "tinyB"):
        vals = np.array([recs[(entry, s)]["metrics"]["MAnE"] for s in (0, 1)])
        cell = format_stat((vals.mean(), vals.std(ddof=1)), ".2f")
        section = md.split(f"## {entry}")[1].split("## ")[0]
        assert f"| Image2Sphere[demo] | 2 ⚠ | {cell} |" in section
        assert "| random poses (reference) |" in section

    # a third run has nothing left to do
    monkeypatch.setattr(infer_mod, "infer", _Counting(infer_mod.infer.fn))
    train_calls.calls = 0
    main(["run", "experiment=demo", "entries=[tinyA,tinyB]", "seeds=[0,1]", f"outdir={outdir}", *run_args])
    assert train_calls.calls == 0
    # a changed training configuration is refused instead of mixing two configurations in one row
    (outdir / "records" / "Image2Sphere-demo" / "tinyA" / "seed1.json").unlink()
    from cesped.benchmark.__main__ import parse_run_args
    from cesped.benchmark.protocol import run_protocol

    changed = parse_run_args(
        [
            "experiment=demo",
            "entries=[tinyA]",
            "seeds=[1]",
            f"outdir={outdir}",
            *run_args,
            "trainer.max_epochs=2",
        ]
    )
    with pytest.raises(ValueError, match="another training configuration"):
        run_protocol(changed)
    # ... but another refinement option is not another training: the halves are reused
    other_refinement = parse_run_args(
        [
            "experiment=demo",
            "entries=[tinyA]",
            "seeds=[1]",
            f"outdir={outdir}",
            *run_args,
            "refinement.rounds=1",
        ]
    )
    train_calls.calls = 0
    run_protocol(other_refinement)
    assert train_calls.calls == 0
    assert (outdir / "records" / "Image2Sphere-demo" / "tinyA" / "seed1.json").is_file()


def test_state_files_of_an_earlier_version_still_match():
    """A state file whose config string still holds the refinement section (written before it
    was excluded from the comparison) matches; another training value does not; junk does not."""
    import json

    from cesped.benchmark.protocol import _same_config

    conf = {"trainer": {"max_epochs": 3}, "seed": 1, "refinement": {"top_k": None}, "resume": True}
    old_style = json.dumps({k: v for k, v in conf.items() if k != "resume"}, sort_keys=True)
    assert _same_config(old_style, {**conf, "refinement": {"top_k": None, "rounds": None}})
    assert not _same_config(old_style, {**conf, "trainer": {"max_epochs": 4}})
    assert not _same_config("{not json", conf) and not _same_config(None, conf)
