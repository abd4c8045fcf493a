"""evaluateEntry killed while writing, and runs into an existing outdir: never a mix of two runs.

The outputs are built in a hidden directory beside --outdir and swapped in at the end
(:mod:`cesped.evaluation.staging`). Before issue 13 a killed run left new maps beside an earlier
run's report.html, no metrics and hidden .tmp files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cesped.evaluateEntry import evaluate
from cesped.io.star import read_star, write_star

from ._entries import make_entry

# runs the CLI with a pause (announced through a flag file) after the maps are written and
# before the plots, report and metrics
_SCRIPT = r"""
import sys, time
from pathlib import Path
import cesped.evaluation.outputs as o

flag = Path(sys.argv[1])

def paused(*a, **k):
    flag.write_text("maps written")
    time.sleep(300)

o.write_plots = paused
from cesped.evaluateEntry import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    entry = make_entry(root / "bench", "tinyF", "C1", n_per_half=60, seed=5)
    preds = []
    for h in (0, 1):
        st = read_star(entry / f"particles_{h}.star")
        st.particles["rlnAnglePsi"] += 5.0
        p = root / f"p_{h}.star"
        write_star(p, st)
        preds.append(p)
    return entry, preds


def _listing(d):
    return sorted(p.name for p in d.iterdir())


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _start_and_kill(entry, preds, out, tmp_path, sig):
    flag = tmp_path / "flag"
    argv = [
        "--targetName", str(entry), "--half0PredsFname", str(preds[0]),
        "--half1PredsFname", str(preds[1]), "--outdir", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(flag), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not flag.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the run did not reach its pause: {proc.communicate()[1][-2000:]}")
            time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigterm_while_writing_keeps_the_previous_result(setup, tmp_path):
    entry, preds = setup
    out = tmp_path / "out"
    evaluate(str(entry), *preds, outdir=out, usePredConfidence=False, plots=False)
    before = {n: (out / n).read_bytes() for n in _listing(out)}
    assert "report.html" not in before
    rc, err = _start_and_kill(entry, preds, out, tmp_path, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err
    # the earlier run, complete and alone; the killed run left nothing beside it
    assert {n: (out / n).read_bytes() for n in _listing(out)} == before
    assert _siblings(out) == []


def test_sigkill_while_writing_then_a_new_run(setup, tmp_path):
    entry, preds = setup
    out = tmp_path / "out"
    evaluate(str(entry), *preds, outdir=out, usePredConfidence=False)
    first = _listing(out)
    assert "report.html" in first
    before = {n: (out / n).read_bytes() for n in first}
    rc, _ = _start_and_kill(entry, preds, out, tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert {n: (out / n).read_bytes() for n in _listing(out)} == before  # untouched
    assert len(_siblings(out)) == 1  # the killed run's staging directory, hidden beside outdir
    # a later run removes it and replaces the whole directory (no report.html of the first run)
    m = evaluate(str(entry), *preds, outdir=out, plots=False)
    assert _siblings(out) == []
    assert "report.html" not in _listing(out) and not list(out.glob(".*"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["usePredConfidence"] is True and saved["MAnE_deg"] == pytest.approx(m["MAnE_deg"])
    assert saved["MAnE_deg"] == pytest.approx(5.0, abs=1e-6)


def test_a_second_run_replaces_the_first_entirely(setup, tmp_path):
    entry, preds = setup
    out = tmp_path / "out"
    evaluate(str(entry), *preds, outdir=out, plots=True)
    assert "report.html" in _listing(out)
    # an interrupted atomic write of an older version left a hidden temporary file: accepted
    (out / ".metrics.json.abc123.tmp.json").write_text("{")
    mode = os.stat(out).st_mode & 0o777
    evaluate(str(entry), *preds, outdir=out, plots=False, usePredConfidence=False)
    names = _listing(out)
    assert "report.html" not in names and not any(n.startswith(".") for n in names)
    assert json.loads((out / "metrics.json").read_text())["usePredConfidence"] is False
    assert os.stat(out).st_mode & 0o777 == mode and _siblings(out) == []
