"""cesped.io."""
