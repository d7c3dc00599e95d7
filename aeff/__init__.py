"""aeff: algorithmic-efficiency experiments in JAX, configured with Hydra."""

__version__ = "0.1.0"
