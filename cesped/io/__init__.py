"""cesped.io: RELION star files (``star``), image stacks (``stack``), MRC maps (``mrc``), atomic writes.

Import the submodules directly; this package does no work at import time.
"""
