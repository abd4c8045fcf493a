"""cesped.geometry."""
