"""cesped.evaluation."""
