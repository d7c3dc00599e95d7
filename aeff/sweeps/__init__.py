"""aeff's sweeps apart from Hydra: the plan of a sweep's trials (`plan`), the checks before a
resume (`resume`), the jobs handed to the launcher (`launch`), and the report printed when a
sweep ends (`report`). The Hydra plugin
(`hydra_plugins/aeff_sweeper`) parses the command line, composes and launches; these modules
decide what runs and say how it went."""
