"""cesped.training."""
