"""cesped.data."""
