"""Run every benchmark script and collect their figures into one JSON file and a Markdown table.

Example usage::

    python benchmarks/run_all.py                      # all bench_*.py scripts
    python benchmarks/run_all.py --only simulation reconstruction
    python benchmarks/run_all.py --out benchmarks/results

Each ``benchmarks/bench_*.py`` prints one JSON line per figure::

    {"name": ..., "value": ..., "unit": ..., "reference": ..., "ratio": ...}

where ``reference`` is the same figure for the reference implementation measured in the same
run (RELION's binaries or the original cesped package) and ``ratio`` compares the two (> 1 means
cesped is better: faster or smaller). Lines that are not JSON are passed through to the terminal.
The results go to ``<out>/latest.json`` and ``<out>/latest.md`` (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
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


def run_script(path: Path, timeout: float) -> tuple[list[dict], str | None]:
    """Run one benchmark script; return its JSON figures and an error message (or None)."""
    figures: list[dict] = []
    t0 = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=timeout, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired:
        return figures, f"timed out after {timeout:.0f} s"
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                fig = json.loads(line)
            except json.JSONDecodeError:
                print(line)
                continue
            fig.setdefault("script", path.name)
            figures.append(fig)
            print(json.dumps(fig))
        elif line:
            print(f"  [{path.name}] {line}")
    err = None
    if proc.returncode != 0:
        err = f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
    print(f"  [{path.name}] done in {time.time() - t0:.0f} s" + (f" ({err})" if err else ""))
    return figures, err


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def markdown_table(figures: list[dict], machine: str) -> str:
    rows = [
        f"Measured on: {machine}", "",
        "| figure | cesped | reference | ratio | unit |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        rows.append(
            f"| {f.get('name')} | {_fmt(f.get('value'))} | {_fmt(f.get('reference'))} | "
            f"{_fmt(f.get('ratio'))} | {f.get('unit', '')} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of script names to run")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per script")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE.parent))
    from cesped.io.atomic import atomic_open

    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if any(o in s.name for o in args.only)]
    if not scripts:
        raise SystemExit("no benchmark script matched")
    machine = machine_description()
    all_figures, errors = [], {}
    for s in scripts:
        print(f"== {s.name}", flush=True)
        figs, err = run_script(s, args.timeout)
        all_figures.extend(figs)
        if err:
            errors[s.name] = err
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "latest.json") as fh:
        json.dump({"machine": machine, "figures": all_figures, "errors": errors}, fh, indent=1)
    with atomic_open(out / "latest.md") as fh:
        fh.write(markdown_table(all_figures, machine))
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
