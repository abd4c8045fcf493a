"""Run every benchmark with its defaults and collect the figures into one JSON file and a table.

Example usage::

    make bench                                        # = python benchmarks/run_all.py
    python benchmarks/run_all.py --only simulation reconstruction
    python benchmarks/run_all.py --out benchmarks/results --workdir /tmp/cesped_bench

First the shared inputs are made in ``--workdir`` (a temporary directory by default): the
simulated entry ``synth_6msm`` (``python -m cesped.simulate --preset synth_6msm``) and a
checkpoint from a short training run on it (``python -m cesped.train experiment=demo`` for
one epoch), for the scripts that need them. Then each script of ``PLAN`` runs as a child
process with ``CESPED_BENCHMARK_DIR`` pointing at that entry. Each prints one JSON line per
figure::

    {"name": ..., "value": ..., "unit": ..., "reference": ..., "ratio": ...}

where ``reference`` is the same figure for the reference implementation measured in the same
run (RELION's binaries or the original cesped package; null when not measured) and ``ratio``
compares the two (> 1 means cesped is better: faster or smaller). Each figure is tagged with
the command that made it and the machine's load when its script ended. The results go to
``<out>/latest.json`` and ``<out>/latest.md`` (written atomically); the README's performance
table is made from ``latest.md`` by ``benchmarks/readme_table.py``. The whole run takes about
35 minutes on 2 idle cores (``--budget`` minutes: a script that would start after it is skipped
and reported as an error).
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


# (script, arguments): every benchmark with its defaults; {ckpt} is the checkpoint made by setup()
# (recorded as CKPT: python -m cesped.train experiment=demo entry=synth_6msm trainer.max_epochs=1)
PLAN: list[tuple[str, list[str]]] = [
    ("bench_simulation.py", []),
    ("bench_reconstruction.py", []),
    ("bench_evaluate.py", []),
    ("bench_dataloading.py", []),
    ("bench_model.py", []),
    ("bench_so3_activation.py", []),
    ("bench_i2s_budget.py", ["probe=1"]),
    ("bench_i2s_prediction.py", ["{ckpt}", "3,0,0"]),
    ("bench_pose_ambiguity.py", []),
    ("bench_refinement.py", []),
    ("bench_demo_refinement.py", []),
]


def setup(work: Path, env: dict, timeout: float) -> dict:
    """The simulated entry and a checkpoint from a short training run; returns their paths."""
    bench_dir = work / "benchmark"
    entry = bench_dir / "synth_6msm"
    if not (entry / "particles_1.star").is_file():
        cmd = [sys.executable, "-m", "cesped.simulate", "--preset", "synth_6msm", "--out", str(entry)]
        subprocess.run(cmd + ["--no-progress"], env=env, check=True, timeout=timeout, cwd=HERE.parent)
    run_dir = work / "train_run"
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt")) if run_dir.is_dir() else []
    if not ckpts:
        cmd = [
            sys.executable, "-m", "cesped.train", "experiment=demo", "entry=synth_6msm", "halfset=0",
            "trainer.max_epochs=1", "trainer.max_time=00:00:05:00", "predict_other_half=false",
            f"output_dir={run_dir}", f"benchmark_dir={bench_dir}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, env=env, timeout=timeout, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"short training run failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    if not ckpts:
        raise RuntimeError(f"the short training run wrote no checkpoint in {run_dir / 'checkpoints'}")
    best = [c for c in ckpts if c.name.startswith("best")]
    return {"bench_dir": bench_dir, "ckpt": (best or ckpts)[-1]}


def run_script(
    path: Path, args: list[str], env: dict, timeout: float, shown: list[str] | None = None
) -> tuple[list[dict], str | None]:
    """Run one benchmark script; return its JSON figures and an error message (or None).

    ``shown``: the arguments as recorded with each figure (CKPT for the checkpoint's path)."""
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
    for line in proc.stdout.splitlines():
        line = line.strip()
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
    """The figures as a Markdown table (the input of ``readme_table.py``); no reference: "not measured"."""
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
        rows.append(
            f"| {f.get('name')} | {_fmt(f.get('value'))} | {ref} | "
            f"{_fmt(f.get('ratio'))} | {f.get('unit', '')} | `{f.get('command', '')}` |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of script names to run")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--workdir", default=None, help="shared inputs (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    parser.add_argument("--budget", type=float, default=40.0, help="minutes; later scripts are skipped")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE.parent))
    from cesped.io.atomic import atomic_open

    plan = [(HERE / name, a) for name, a in PLAN]
    missing = sorted({p.name for p in HERE.glob("bench_*.py")} - {p.name for p, _ in plan})
    if missing:
        raise SystemExit(f"run_all.PLAN lacks {missing}: add them")
    if args.only:
        plan = [(p, a) for p, a in plan if any(o in p.name for o in args.only)]
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
    all_figures, errors = [], {}
    try:
        inputs = None
        if any(p.name in ("bench_i2s_prediction.py", "bench_pose_ambiguity.py", "bench_i2s_budget.py")
               for p, _ in plan):  # fmt: skip
            print("== setup: simulated entry synth_6msm and a short training run", flush=True)
            inputs = setup(work, env, args.timeout)
            env["CESPED_BENCHMARK_DIR"] = str(inputs["bench_dir"])
        for s, a in plan:
            if time.time() - t_start > args.budget * 60:
                errors[s.name] = f"skipped: the {args.budget:.0f}-minute budget was spent"
                continue
            shown = [x.replace("{ckpt}", "CKPT") for x in a]  # no machine paths in the outputs
            a = [x.format(ckpt=inputs["ckpt"]) if inputs else x for x in a]
            print(f"== {s.name} {' '.join(shown)}", flush=True)
            figs, err = run_script(s, a, env, args.timeout, shown)
            all_figures.extend(figs)
            if err:
                errors[s.name] = err
    finally:
        if tmp is not None:
            tmp.cleanup()
    minutes = (time.time() - t_start) / 60
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "latest.json") as fh:
        json.dump(
            {"machine": machine, "minutes": round(minutes, 1), "figures": all_figures, "errors": errors},
            fh,
            indent=1,
        )
    with atomic_open(out / "latest.md") as fh:
        fh.write(markdown_table(all_figures, machine))
        if errors:
            fh.write("\nNot measured (errors): " + "; ".join(f"{k}: {v}" for k, v in errors.items()) + "\n")
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'} after {minutes:.1f} min")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
