"""Reading trials back, for researchers: every module reads the records (`rows.py`) and
computes what it shows; the sweep dir's own files are written by `aeff.records.sweep_dir`.

- `rows.py`: the run dirs, records and rows every tool reads, and a target's direction;
- `summary.py`: one row per trial; `text.py`: the console's tables and values;
- `sweep_report.py`: what `summary.csv`, `sweep.json` and `studies.csv` say;
  `report.py`: `report.html`; `plots.py`: a metric against a step or clock;
- `trials_table.py`, `scoring.py`, `compare.py`: algorithms compared as AlgoPerf scores them
  (the records as a table; the scoring as pure functions; the comparison's files and text);
- `export.py`, `export_mlflow.py`, `export_tensorboard.py`: trials into MLflow, TensorBoard;
- `__main__.py`: `python -m aeff.results concat|plot|summary|report|export|compare`.
"""
