"""Hydra configuration files of cesped (installed from the top-level configs/ directory)."""
