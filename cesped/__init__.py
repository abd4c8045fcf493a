"""cesped: a benchmark for supervised particle pose estimation in cryo-EM.

The public entry points are the modules ``cesped.particlesDataset`` (the PyTorch
``ParticlesDataset``), ``cesped.evaluateEntry`` (the paper's metrics), ``cesped.train``,
``cesped.infer`` and ``cesped.simulate``. Importing this package does no work.
"""

__version__ = "26.11.0"
__all__ = ["__version__"]
