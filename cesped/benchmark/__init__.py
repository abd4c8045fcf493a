"""The benchmark protocol, above the evaluation: :class:`Evaluator` (in-memory angular metrics),
seeded runs over entries (:mod:`cesped.benchmark.protocol`), results records
(:mod:`cesped.benchmark.records`) and the leaderboard (:mod:`cesped.benchmark.leaderboard`).

Command line (``python -m cesped.benchmark --help``)::

    python -m cesped.benchmark run experiment=demo entries=[synth_6msm,synth_4e43] seeds=[0,1,2] outdir=OUT
    python -m cesped.benchmark run method=MyNet predictions='preds/{entry}/seed{seed}/half{half}.star' \\
        entries=[10280] seeds=[0,1,2] outdir=OUT
    python -m cesped.benchmark table OUT/records --out OUT

Importing this package does no work; the names below are loaded on first use.
"""

from __future__ import annotations

import importlib

__all__ = [
    "Evaluator",
    "ProtocolConfig",
    "run_protocol",
    "build_leaderboard",
    "read_record",
    "entry_checksum",
]

_LAZY = {
    "Evaluator": "cesped.benchmark.evaluator",
    "ProtocolConfig": "cesped.benchmark.protocol",
    "run_protocol": "cesped.benchmark.protocol",
    "build_leaderboard": "cesped.benchmark.leaderboard",
    "read_record": "cesped.benchmark.records",
    "entry_checksum": "cesped.benchmark.records",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cesped.benchmark' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
