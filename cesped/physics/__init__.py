"""cesped.physics."""
