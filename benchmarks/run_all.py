"""Run every benchmark with its defaults and collect the figures into one JSON file and a table.

Example usage::

    make bench                                        # = python benchmarks/run_all.py
    make bench-large                                  # = python benchmarks/run_all.py --large
    python benchmarks/run_all.py --only simulation reconstruction
    python benchmarks/run_all.py --only bench_refinement --merge   # re-measure one script in latest.json
    python benchmarks/run_all.py --out benchmarks/results --workdir /tmp/cesped_bench

First the shared inputs are made in ``--workdir`` (a temporary directory by default): the
simulated entry ``synth_6msm`` (``python -m cesped.simulate --preset synth_6msm``), a
checkpoint from a 1-epoch training run on half-set 0 (``python -m cesped.train
experiment=demo``) and its predictions of half-set 1, for the scripts that need them. Then each
script of ``PLAN`` (every script of ``benchmarks/`` but the helpers; the run refuses to start
if one is missing) runs as a child process with ``CESPED_BENCHMARK_DIR`` pointing at that
entry. GPU-only scripts (``GPU_ONLY``) are reported as skipped where torch sees no CUDA device.
Each script prints one JSON line per figure::

    {"name": ..., "value": ..., "unit": ..., "reference": ..., "ratio": ...}

where ``reference`` is the same figure for the reference implementation measured in the same
run (RELION's binaries or the original cesped package; null when not measured) and ``ratio``
compares the two (> 1 means cesped is better: faster or smaller). Each figure is tagged with
``bench_command``, the benchmark command that reproduces it (machine paths replaced by BENCH,
CKPT, PRED, GT), and the machine's load when its script ended. The results go to
``<out>/latest.json`` and ``<out>/latest.md`` (``large.*`` with ``--large``; written
atomically), with each script's expected and measured minutes; the README's performance table
is made from them by ``benchmarks/readme_table.py``. The whole run takes about 16 minutes on 2
idle cores (15.8 measured from a clean clone, 2026-12-04; the per-script estimates, which are
generous, are in ``PLAN``; ``--budget`` minutes: a script that would start after it is skipped
and reported as an error); ``--large`` about 10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_description() -> str:
    """One line naming the CPU, core count and memory of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


# (script, arguments, expected minutes on 2 idle cores): every benchmark script of benchmarks/.
# Placeholders, filled from setup(): {bench} the benchmark directory (holds synth_6msm), {ckpt} the
# checkpoint of the 1-epoch training run, {pred} its predictions of half-set 1, {gt} the ground truth
# of half-set 1 (recorded as BENCH, CKPT, PRED, GT: no machine paths in the outputs).
# The minutes are estimates from the CPU time of smoke runs (scaled to these sizes) and earlier
# full runs, divided by 2 cores; setup() adds about 3. Sum: about 34 minutes (GPU rows: 0 on CPU).
PLAN: list[tuple[str, list[str], float]] = [
    ("bench_simulation.py", [], 1.5),
    ("bench_reconstruction.py", [], 6.0),  # 8000 x 64 and 128 px, cold run, both RELIONs, 1x/2x/8x
    ("bench_evaluate.py", ["--repeats", "1"], 6.0),  # 2000 + 2000 x 128 px, --backend relion, original
    ("bench_dataloading.py", [], 3.0),  # ours vs the original package, 0 and 2 workers, 2 rounds
    ("bench_model.py", [], 4.0),  # includes the original's model build when installed
    ("bench_so3_activation.py", [], 0.5),
    ("bench_i2s_budget.py", ["probe=1"], 0.5),
    ("bench_i2s_prediction.py", ["{ckpt}", "3,0,0"], 1.0),
    ("bench_pose_ambiguity.py", [], 0.5),  # 4,000 particles; smoke: 500 in 5.4 CPU-s
    # floor x2, refinement without and with the 4 global starts (demo-like stand-ins), and refine_star
    # with its defaults (2 rounds, FSC weighting, 4 survivors) vs 1 survivor / 1 round / unweighted:
    # 4.9 min (session 9, load 1-2)
    ("bench_refinement.py", ["--benchmark-dir", "{bench}", "--stand-ins", "demo", "--pipeline"], 5.5),
    ("bench_evaluator.py", [], 2.0),  # 300,000 predictions, C1 and D2, 5 repeats (~6.5 s each)
    ("bench_hetero_sim.py", [], 1.0),  # 3 simulations of 8,000 x 64 px: 73 CPU-s (issue-17 run)
    ("bench_frames.py", [], 0.1),  # smoke at the defaults: 1 CPU-s
    ("confidence_quantiles.py", ["{pred}", "{gt}", "--symmetry", "C1"], 0.1),
    ("probe_recovery_ambiguity.py", [], 0.5),  # smoke: 300 steps in 4.6 CPU-s (2.5 s imports)
    ("gpu_bench.py", ["throughput", "--seconds", "120"], 0.0),  # GPU only: skipped without CUDA
    ("gpu_bench.py", ["reconstruct", "--n", "100000", "--box", "256"], 0.0),  # GPU only
    ("gpu_bench.py", ["refine", "--n", "100000", "--box", "128", "--px", "1.5"], 0.0),  # GPU only
    # the demo steps after training, 2 x 4,000 particles: 4.2 min with 4 survivors and the
    # maximum-likelihood floor (session 9, load 1.1)
    ("bench_demo_refinement.py", [], 4.5),
]

# ``--large``: speed at the sizes users run (issue 14, section 6); about 10 minutes on 2 idle cores
# (8.9 measured on 2026-12-04).
LARGE_PLAN: list[tuple[str, list[str], float]] = [
    ("bench_reconstruction.py", ["--boxes", "128", "--n-particles", "20000", "--flat-base", "2500"], 5.0),
    ("bench_evaluate.py", ["--n-per-half", "10000", "--repeats", "1", "--skip-original"], 5.0),
]

# scripts that need CUDA: without it they are reported as skipped (benchmarks/gpu_check.sh runs them)
GPU_ONLY = {"gpu_bench.py"}
# helpers of the benchmark scripts, not benchmarks
# (eval_recovery.py scores a star written by `python -m cesped.recover`: a scorer of a finished run, see
# docs/orientation_recovery.md, not a benchmark with defaults; profile_dataloading.py is a profiling aid of
# bench_dataloading.py that prints no comparison; bench_hetero_i2s.py trains two demo Image2Sphere models on
# synth_adk_states, 4-9 min per half-set on 2 cores (the demo's timings): too long for the plan's 40
# minutes; run it on its own, see its docstring; bench_distinct_topk.py needs a fully trained demo
# checkpoint of a protocol run (12-20 min of training per half-set) and refines 4,000 particles twice:
# run it on its own after `make leaderboard`; tail_vs_floor.py, like eval_recovery.py, reads a finished
# protocol run (refine=true) and compares its refined tail with the floor: no defaults to run here)
NOT_BENCHMARKS = {
    "bench_distinct_topk.py",
    "tail_vs_floor.py",
    "_launch.py",
    "run_all.py",
    "readme_table.py",
    "eval_recovery.py",
    "profile_dataloading.py",
    "bench_hetero_i2s.py",
}
# scripts that read the simulated entry of setup() through CESPED_BENCHMARK_DIR
NEEDS_ENTRY = {"bench_i2s_budget.py", "bench_pose_ambiguity.py"}


def plan_gaps(plan: list[tuple[str, list[str], float]], folder: Path = HERE) -> list[str]:
    """Benchmark scripts of ``folder`` that ``plan`` does not run."""
    scripts = {p.name for p in folder.glob("*.py")} - NOT_BENCHMARKS
    return sorted(scripts - {name for name, _, _ in plan})


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when files differ from it), or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE.parent,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cuda_available(env: dict) -> bool:
    """Whether torch sees a CUDA device (asked in a child process: no torch import here)."""
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def setup(work: Path, env: dict, timeout: float) -> dict:
    """The simulated entry, a 1-epoch checkpoint and its predictions of half-set 1; their paths.

    Returns ``{"bench": benchmark dir, "ckpt": checkpoint, "pred": predictions_1.star,
    "gt": the entry's particles_1.star}`` (the placeholders of ``PLAN``)."""
    bench_dir = work / "benchmark"
    entry = bench_dir / "synth_6msm"
    if not (entry / "particles_1.star").is_file():
        cmd = [sys.executable, "-m", "cesped.simulate", "--preset", "synth_6msm", "--out", str(entry)]
        subprocess.run(cmd + ["--no-progress"], env=env, check=True, timeout=timeout, cwd=HERE.parent)
    run_dir = work / "train_run"
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt")) if run_dir.is_dir() else []
    pred = run_dir / "predictions_1.star"
    if not ckpts or not pred.is_file():
        cmd = [
            sys.executable, "-m", "cesped.train", "experiment=demo", "entry=synth_6msm", "halfset=0",
            "trainer.max_epochs=1", "trainer.max_time=00:00:05:00", "predict_other_half=true",
            "prediction.rot90_average=false",  # 4x cheaper; the 1-epoch model is only an input
            f"output_dir={run_dir}", f"benchmark_dir={bench_dir}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, env=env, timeout=timeout, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"short training run failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    if not ckpts:
        raise RuntimeError(f"the short training run wrote no checkpoint in {run_dir / 'checkpoints'}")
    if not pred.is_file():
        raise RuntimeError(f"the short training run wrote no predictions ({pred})")
    best = [c for c in ckpts if c.name.startswith("best")]
    return {"bench": bench_dir, "ckpt": (best or ckpts)[-1], "pred": pred, "gt": entry / "particles_1.star"}


def run_script(
    path: Path,
    args: list[str],
    env: dict,
    timeout: float,
    shown: list[str] | None = None,
    redact: dict[str, str] | None = None,
) -> tuple[list[dict], str | None]:
    """Run one benchmark script; return its JSON figures and an error message (or None).

    ``shown``: the arguments as recorded with each figure (CKPT for the checkpoint's path);
    each figure gets ``bench_command``, the command that reproduces it. ``redact``: machine paths
    replaced in the printed lines (longest first), so that no absolute path reaches the outputs."""
    figures: list[dict] = []
    t0 = time.time()
    command = " ".join(["python", f"benchmarks/{path.name}", *(args if shown is None else shown)])
    try:
        proc = subprocess.run(
            [sys.executable, str(path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE.parent,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return figures, f"timed out after {timeout:.0f} s"
    load = [round(x, 2) for x in os.getloadavg()]
    subs = sorted((redact or {}).items(), key=lambda kv: -len(kv[0]))
    for line in proc.stdout.splitlines():
        line = line.strip()
        for old, new in subs:
            line = line.replace(old, new)
        if line.startswith("{"):
            try:
                fig = json.loads(line)
            except json.JSONDecodeError:
                print(line)
                continue
            if "name" not in fig:
                continue
            fig.setdefault("script", path.name)
            fig.setdefault("command", command)
            fig["bench_command"] = command
            fig.setdefault("load_avg", load)
            figures.append(fig)
            print(json.dumps(fig), flush=True)
        elif line:
            print(f"  [{path.name}] {line}", flush=True)
    err = None
    if proc.returncode != 0:
        err = f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
    print(f"  [{path.name}] done in {time.time() - t0:.0f} s" + (f" ({err})" if err else ""), flush=True)
    return figures, err


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def markdown_table(figures: list[dict], machine: str) -> str:
    """The figures as a Markdown table (the input of ``readme_table.py``); no reference: "not measured".

    The ``command`` column is the benchmark command that printed the figure (``bench_command``)."""
    rows = [
        f"Measured on: {machine}. Ratio > 1: cesped better (faster or smaller); both sides in the same run.",
        "",
        "| figure | cesped | reference | ratio | unit | command |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        ref = _fmt(f.get("reference")) if f.get("reference") is not None else "not measured"
        if f.get("reference_name") and f.get("reference") is not None:
            ref = f"{ref} ({f['reference_name']})"
        cmd = f.get("bench_command") or f.get("command", "")
        rows.append(
            f"| {f.get('name')} | {_fmt(f.get('value'))} | {ref.replace('|', '/')} | "
            f"{_fmt(f.get('ratio'))} | {f.get('unit', '')} | `{cmd}` |"
        )
    return "\n".join(rows) + "\n"


def merge_records(path: Path, new: dict, rerun: list[str], only: list[str]) -> dict:
    """The record at ``path`` with the figures, errors and script timings of the ``rerun`` scripts
    replaced by those of ``new``; the update (date, commit, scripts, minutes) is appended to its
    ``updates`` and each new figure carries ``run_date`` and ``run_commit``.

    Raises
    ------
    ValueError
        ``path`` is missing or is not a run_all.py record.
    """
    try:
        old = json.loads(Path(path).read_text())
        old_figures = old["figures"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--merge: {path} is not a run_all.py record to merge into ({e})") from e
    labels = {f"python benchmarks/{name}" for name in rerun}
    fresh = [{**f, "run_date": new["date"], "run_commit": new["commit"]} for f in new["figures"]]
    merged = dict(old)
    merged["figures"] = [f for f in old_figures if f.get("script") not in rerun] + fresh
    merged["scripts"] = [
        s for s in old.get("scripts", []) if not any(s.get("command", "").startswith(x) for x in labels)
    ] + [s for s in new["scripts"] if not s.get("command", "").startswith("setup")]
    def kept(d: dict) -> dict:  # keys are "<script> <args>" labels
        return {k: v for k, v in d.items() if k.split(" ")[0] not in rerun}

    merged["errors"] = kept(old.get("errors", {})) | new["errors"]
    merged["skipped"] = kept(old.get("skipped", {})) | new["skipped"]
    update = {"date": new["date"], "commit": new["commit"], "scripts": rerun, "minutes": new["minutes"],
              "command": "python benchmarks/run_all.py --only " + " ".join(only) + " --merge"}  # fmt: skip
    merged["updates"] = list(old.get("updates", [])) + [update]
    return merged


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of script names to run")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace those scripts' figures in the existing <out>/latest.json (the others "
        "are kept, and the record lists the update) instead of writing a record of them alone",
    )
    parser.add_argument(
        "--large", action="store_true", help="run LARGE_PLAN (speed at users' sizes); writes large.{json,md}"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--workdir", default=None, help="shared inputs (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="minutes; later scripts are skipped (default 40, --large 45)",
    )
    args = parser.parse_args(argv)
    budget = args.budget if args.budget is not None else (45.0 if args.large else 40.0)
    if args.merge and not args.only:
        parser.error("--merge needs --only (the scripts whose figures are replaced)")
    stem = "large" if args.large else "latest"

    sys.path.insert(0, str(HERE.parent))
    from cesped.io.atomic import atomic_open

    missing = plan_gaps(PLAN)
    if missing:
        raise SystemExit(f"run_all.PLAN lacks {missing}: add them")
    plan = [(HERE / name, a, m) for name, a, m in (LARGE_PLAN if args.large else PLAN)]
    if args.only:
        plan = [(p, a, m) for p, a, m in plan if any(o in p.name for o in args.only)]
    if not plan:
        raise SystemExit("no benchmark script matched")
    t_start = time.time()
    machine = machine_description()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cesped_bench_all_")
        work = Path(tmp.name)
    else:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    all_figures, errors, skipped, scripts = [], {}, {}, []
    try:
        inputs: dict = {}
        if any(p.name in NEEDS_ENTRY or any("{" in x for x in a) for p, a, _ in plan):
            print(
                "== setup: simulated entry synth_6msm and a 1-epoch training run (+ predictions)", flush=True
            )
            t0 = time.time()
            try:
                inputs = setup(work, env, args.timeout)
                env["CESPED_BENCHMARK_DIR"] = str(inputs["bench"])
            except (RuntimeError, subprocess.SubprocessError) as e:  # the other scripts still run
                errors["setup"] = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                print(f"== setup failed: {errors['setup']}", flush=True)
            scripts.append({"command": "setup (cesped.simulate + 1-epoch cesped.train)", "expected_min": 3.0,
                            "minutes": round((time.time() - t0) / 60, 2)})  # fmt: skip
        has_cuda = None
        for s, a, expected in plan:
            shown = [x.format(bench="BENCH", ckpt="CKPT", pred="PRED", gt="GT") for x in a]
            label = " ".join([s.name, *shown])
            if time.time() - t_start > budget * 60:
                errors[label] = f"skipped: the {budget:.0f}-minute budget was spent"
                continue
            if "setup" in errors and (s.name in NEEDS_ENTRY or any("{" in x for x in a)):
                errors[label] = "skipped: needs the setup's entry or checkpoint (setup failed)"
                continue
            if s.name in GPU_ONLY:
                has_cuda = cuda_available(env) if has_cuda is None else has_cuda
                if not has_cuda:
                    skipped[label] = (
                        "GPU only: no CUDA device here (benchmarks/gpu_check.sh runs it on a GPU)"
                    )
                    print(f"== {label}: skipped ({skipped[label]})", flush=True)
                    continue
            a = [x.format(**{k: str(v) for k, v in inputs.items()}) for x in a]
            print(f"== {label}  (expected ~{expected:g} min on 2 idle cores)", flush=True)
            t0 = time.time()
            redact = {str(v): k.upper() for k, v in inputs.items()}
            redact.update({str(work.resolve()): "WORKDIR", str(work): "WORKDIR", str(HERE.parent) + "/": ""})
            figs, err = run_script(s, a, env, args.timeout, shown, redact)
            scripts.append({"command": f"python benchmarks/{label}", "expected_min": expected,
                            "minutes": round((time.time() - t0) / 60, 2),
                            "load_avg": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
            all_figures.extend(figs)
            if err:
                errors[label] = err
    finally:
        if tmp is not None:
            tmp.cleanup()
    minutes = (time.time() - t_start) / 60
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start)),
        "commit": git_commit(),
        "command": "python benchmarks/run_all.py" + (" --large" if args.large else ""),
        "minutes": round(minutes, 1),
        "scripts": scripts,
        "figures": all_figures,
        "errors": errors,
        "skipped": skipped,
    }
    if args.merge:
        record = merge_records(out / f"{stem}.json", record, [p.name for p, _, _ in plan], args.only)
        all_figures, errors, skipped = record["figures"], record["errors"], record["skipped"]
    with atomic_open(out / f"{stem}.json") as fh:
        json.dump(record, fh, indent=1)
    with atomic_open(out / f"{stem}.md") as fh:
        fh.write(markdown_table(all_figures, machine))
        if skipped:
            fh.write("\nSkipped: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()) + "\n")
        if errors:
            fh.write("\nNot measured (errors): " + "; ".join(f"`{k}`: {v}" for k, v in errors.items()) + "\n")
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')} after {minutes:.1f} min")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
