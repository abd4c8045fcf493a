"""cesped test suite."""
