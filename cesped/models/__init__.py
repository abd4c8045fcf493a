"""cesped.models."""
