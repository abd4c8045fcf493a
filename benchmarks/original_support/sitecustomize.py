"""Loaded by the original cesped's interpreter (PYTHONPATH=benchmarks/original_support).

The original image2sphere module uses ``e3nn.nn`` without importing it; importing it here
makes the attribute exist in every (sub)process of the original package.
"""

try:
    import e3nn.nn  # noqa: F401
except Exception:  # the support file must never break an interpreter
    pass
