"""cesped.reconstruction."""
