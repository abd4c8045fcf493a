"""Interrupted training: SIGTERM gives a checkpoint and exit status 143, a crash loses at most the
time-checkpoint interval, resume=true continues from the checkpoint and metrics.csv keeps the history."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ._tiny import compose_train, train_overrides

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _train_steps(rows: list[dict]) -> list[int]:
    return [int(r["step"]) for r in rows if r.get("train_loss")]


def _val_epochs(rows: list[dict]) -> list[int]:
    return [int(float(r["epoch"])) for r in rows if r.get("val_error_degs")]


def _same_rows(before: list[dict], after: list[dict]) -> bool:
    """Every row of ``before`` is in ``after`` with the same values (``after`` may have more columns)."""
    keys = [{k: v for k, v in r.items() if v} for r in after]
    return all({k: v for k, v in r.items() if v} in keys for r in before)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_exits_143_and_resume_continues(tiny_entry, tmp_path):
    """The command as a scheduler runs it: SIGTERM while training; the in-process test below
    covers the same path in the default run."""
    from cesped.training.train import train

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    common = ["trainer.log_every_n_steps=1", "predict_other_half=false"]
    endless = [
        "trainer.max_epochs=100000",
        "~callbacks.early_stopping",
        # a checkpoint after every batch: its appearance says that the fit loop runs
        "callbacks.time_checkpoint.train_time_interval.minutes=1e-6",
    ]
    cmd = [sys.executable, "-m", "cesped.train", *train_overrides(tiny_entry, out, common + endless)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        deadline = time.monotonic() + 400
        while not last.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no checkpoint appeared (rc {proc.returncode}): {log.read_text()[-3000:]}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 143, err[-3000:]
    msg = [ln for ln in err.splitlines() if ln.startswith("cesped.train:")]
    assert len(msg) == 1 and "SIGTERM" in msg[0] and str(last) in msg[0] and "resume=true" in msg[0]
    assert not list(out.glob("predictions_*.star"))  # an interrupted run predicts nothing
    ck = _ckpt(last)
    step, epoch = int(ck["global_step"]), int(ck["epoch"])
    assert step >= 1
    first = _rows(out / "csv" / "metrics.csv")
    assert first and max(int(r["step"]) for r in first) <= step

    # resume: two more epochs than the interrupted one, each of 2 batches
    more = ["resume=true", f"trainer.max_epochs={epoch + 2}", *common]
    result = train(compose_train(tiny_entry, out, more))
    ck = _ckpt(last)
    assert ck["global_step"] == 2 * (epoch + 2) and ck["epoch"] == epoch + 1
    rows = _rows(out / "csv" / "metrics.csv")
    assert _same_rows(first, rows)  # the interrupted run's history is kept ...
    steps = _train_steps(rows)  # ... and continued, not restarted: every step logged once
    assert steps == list(range(2 * (epoch + 2)))
    assert _val_epochs(rows) == list(range(epoch + 2))
    assert result["last_ckpt"] == str(last)


@pytest.mark.slow
def test_sigkill_mid_epoch_keeps_the_time_checkpoint_and_the_metrics_history(tiny_entry, tmp_path):
    """SIGKILL (no handler runs): last.ckpt is the latest time checkpoint, and metrics.csv holds the
    rows logged before it (written at every checkpoint; Lightning itself flushes every 100 steps).
    The row of the checkpointed step itself is logged just after the checkpoint and may be lost."""
    from cesped.training.train import train

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    common = ["data.batch_size=4", "trainer.limit_train_batches=4", "trainer.log_every_n_steps=1"]
    endless = [
        "trainer.max_epochs=100000",
        "~callbacks.early_stopping",
        "callbacks.time_checkpoint.train_time_interval.minutes=1e-6",
        "predict_other_half=false",
    ]
    cmd = [sys.executable, "-m", "cesped.train", *train_overrides(tiny_entry, out, common + endless)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        deadline = time.monotonic() + 400
        while not (last.is_file() and _ckpt(last)["global_step"] >= 6):  # in epoch 1
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no checkpoint at step 6 (rc {proc.returncode}): {log.read_text()[-3000:]}")
            time.sleep(0.1)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    ck = _ckpt(last)
    step, epoch = int(ck["global_step"]), int(ck["epoch"])
    first = _rows(out / "csv" / "metrics.csv")
    kept = _train_steps(first)
    assert set(range(step - 1)) <= set(kept)

    more = ["resume=true", f"trainer.max_epochs={epoch + 2}", "predict_other_half=false", *common]
    train(compose_train(tiny_entry, out, more))
    assert _ckpt(last)["global_step"] == 4 * (epoch + 2)
    rows = _rows(out / "csv" / "metrics.csv")
    assert _same_rows([r for r in first if int(r["step"]) <= step], rows)
    steps = _train_steps(rows)
    assert steps == sorted(set(steps)) and set(range(4 * (epoch + 2))) - set(steps) <= {step - 1}


def test_crash_and_sigterm_lose_at_most_the_time_interval_and_resume_continues(
    tiny_entry, tmp_path, monkeypatch
):
    """Epochs of 4 steps. Run 1 crashes (an exception, not a signal) before step 6: last.ckpt is the
    time checkpoint after step 6, not the end of epoch 0. Run 2 resumes without time checkpoints and
    gets SIGTERM after step 7: TrainingInterrupted, last.ckpt at step 7. Run 3 does the last step.
    metrics.csv keeps every row of the earlier runs and logs each step once."""
    from cesped.training.cli import TrainingInterrupted
    from cesped.training.train import train

    monkeypatch.syspath_prepend(str(ROOT))  # tests.training._tiny for Hydra's _target_
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    metrics = out / "csv" / "metrics.csv"
    common = [
        "data.batch_size=4",
        "trainer.limit_train_batches=4",
        "trainer.log_every_n_steps=1",
        "predict_other_half=false",
    ]
    crash = [
        "callbacks.time_checkpoint.train_time_interval.minutes=1e-6",  # i.e. after every step
        "+callbacks.crash._target_=tests.training._tiny.CrashAt",
        "+callbacks.crash.step=6",
    ]
    with pytest.raises(RuntimeError, match="simulated crash before step 6"):
        train(compose_train(tiny_entry, out, common + crash))
    ck = _ckpt(last)
    assert (ck["epoch"], ck["global_step"]) == (1, 6)  # 2 of epoch 1's 4 steps done and kept
    first = _rows(metrics)
    assert _train_steps(first) == list(range(6))

    term = [
        "resume=true",
        "~callbacks.time_checkpoint",
        "+callbacks.term._target_=tests.training._tiny.SigtermAt",
        "+callbacks.term.step=7",
    ]
    with pytest.raises(TrainingInterrupted) as exc:
        train(compose_train(tiny_entry, out, common + term))
    assert exc.value.checkpoint == str(last) and exc.value.exit_status == 143
    assert exc.value.global_step == 7 and _ckpt(last)["global_step"] == 7  # the SIGTERM checkpoint
    assert not list(out.glob("predictions_*.star"))
    second = _rows(metrics)
    assert _same_rows(first, second) and _train_steps(second) == list(range(7))

    train(compose_train(tiny_entry, out, ["resume=true", *common]))
    assert _ckpt(last)["global_step"] == 8  # the missing step only, not the whole epoch again
    rows = _rows(metrics)
    assert _same_rows(second, rows)
    assert _train_steps(rows) == list(range(8)) and _val_epochs(rows) == [0, 1]


def test_one_line_errors_exit_statuses(capsys):
    from cesped.training.cli import TrainingInterrupted, one_line_errors

    with pytest.raises(SystemExit) as exc, one_line_errors("prog"):
        raise TrainingInterrupted(15, "/x/last.ckpt", 3, 42)
    assert exc.value.code == 143
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "prog: training interrupted by SIGTERM in epoch 3 at step 42: "
        "checkpoint /x/last.ckpt written; rerun with resume=true to continue"
    ]
    with pytest.raises(SystemExit) as exc, one_line_errors("prog"):
        open("/nonexistent/dir/file")
    assert exc.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "prog: error: /nonexistent/dir/file: No such file or directory"
    ]
    with pytest.raises(KeyError), one_line_errors("prog"):  # a bug keeps its traceback
        raise KeyError("x")


def test_csv_history_drops_rows_logged_after_the_checkpoint(tmp_path):
    """Rows a killed run logged after its last checkpoint are logged again by the resumed run."""
    from cesped.training.faults import ResumableCSVLogger

    d = tmp_path / "csv"
    d.mkdir()
    (d / "metrics.csv").write_text("epoch,step,train_loss\n0,0,1.5\n0,1,1.25\n0,2,1.0\n1,3,0.75\n1,4,0.")
    lg = ResumableCSVLogger(tmp_path, name="csv", version="")
    lg.resume_at(2)
    lg.log_metrics({"train_loss": 0.5, "val_loss": 2.0}, step=3)
    lg.save()
    rows = _rows(d / "metrics.csv")
    assert [(r["step"], r["train_loss"], r["val_loss"]) for r in rows] == [
        ("0", "1.5", ""),
        ("1", "1.25", ""),
        ("2", "1.0", ""),
        ("3", "0.5", "2.0"),
    ]
    fresh = ResumableCSVLogger(tmp_path, name="csv", version="")  # no resume: a new history
    fresh.log_metrics({"train_loss": 9.0}, step=0)
    fresh.save()
    assert [(r["step"], r["train_loss"]) for r in _rows(d / "metrics.csv")] == [("0", "9.0")]


def test_cli_turns_oserror_into_one_line_naming_the_path(tmp_path, capsys):
    """An output_dir below a file (Hydra's run directory fails before the job) and a missing
    checkpoint: exit status 1 and one line on stderr naming the path, no traceback."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "cesped.train", "entry=tiny", f"output_dir={blocker / 'run'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cesped.train: error:") and str(blocker) in lines[0]

    from omegaconf import OmegaConf

    from cesped.infer import main as infer_main

    ckpt = tmp_path / "missing.ckpt"
    cfg = OmegaConf.create({"ckpt": str(ckpt), "entry": "tiny", "halfset": 0, "device": "cpu"})
    with pytest.raises(SystemExit) as exc:
        infer_main(cfg)  # Hydra's decorator hands a given config straight to the job
    assert exc.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cesped.infer: error:") and str(ckpt) in lines[0]


def test_train_checks_the_output_dir_before_any_work(tmp_path):
    from cesped.training.train import train

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = compose_train(tmp_path / "no_bench", blocker / "run")  # the entry is missing too: checked later
    with pytest.raises(NotADirectoryError, match="a_file"):
        train(cfg)
