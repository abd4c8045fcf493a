"""cesped.simulation."""
