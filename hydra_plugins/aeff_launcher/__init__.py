"""aeff's Hydra launcher: trials as groups in one program each (`hydra/launcher=vectorized`)."""
