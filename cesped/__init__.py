"""cesped: a benchmark for supervised particle pose estimation in cryo-EM.

The public entry points are the modules ``cesped.particlesDataset`` (the PyTorch
``ParticlesDataset``), ``cesped.evaluateEntry`` (the paper's metrics), ``cesped.train``,
``cesped.infer``, ``cesped.simulate`` and ``cesped.benchmark`` (seeded runs, results records,
leaderboard), and ``cesped.Evaluator`` (in-memory angular metrics of one half-set). Importing
this package does no work: ``cesped.Evaluator`` is loaded on first use.
"""

__version__ = "26.11.0"
__all__ = ["__version__", "Evaluator"]


def __getattr__(name: str):
    if name == "Evaluator":
        from cesped.benchmark.evaluator import Evaluator

        return Evaluator
    raise AttributeError(f"module 'cesped' has no attribute {name!r}")
