"""The Hydra adapters: the app (`python -m aeff`) and what a job hands its trial. aeff's
sweeper and the vectorized launcher are Hydra plugins, in `hydra_plugins/`."""
