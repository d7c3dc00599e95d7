"""The Hydra adapters: the app (`python -m aeff`), a job's trial, aeff's sweeper and the
vectorized launcher. Hydra finds the last two through `hydra_plugins/`."""
