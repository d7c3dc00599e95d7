"""Writes tests/data/algoperf_scoring.json again: AlgoPerf's own answers on the trials of
`compare_trials.scoring_cases`, from the scoring files of an AlgoPerf checkout.

    .venv/bin/python tests/helpers/make_algoperf_scoring.py [--algoperf DIR]

DIR defaults to the folder `shared/algoperf` beside the repository. It holds
performance_profile.py and scoring_utils.py but not compute_speedups.py: from it, the
speedups are kept as stored. A full checkout at the commit of `SOURCE` gives them too
(`git clone https://github.com/mlcommons/algorithmic-efficiency` then
`git checkout 2c90454fc05d5bdf3598b0c7651e611f132a7060`)."""

import argparse
import datetime
import json
import re
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `helpers`, run as a script

import numpy as np
import pandas as pd
import scipy
from absl import logging

from aeff.results import trials_table
from helpers import algoperf_oracle as oracle
from helpers.compare_trials import algoperf_frames, scoring_cases, write_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algoperf", type=Path, default=oracle.ALGOPERF.resolve())
    folder = parser.parse_args().algoperf.resolve()
    if not (folder / "scoring" / "performance_profile.py").is_file():
        sys.exit(f"make_algoperf_scoring: {folder} has no scoring/performance_profile.py")
    logging.set_verbosity(logging.ERROR)  # its warnings of fewer than 8 workloads, 5 trials
    warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
    scoring = oracle.load(folder)
    stored = oracle.stored_answers() if oracle.ANSWERS.is_file() else {}
    cases = {}
    for name, (trials, clock, scale, max_tau) in scoring_cases().items():
        with tempfile.TemporaryDirectory() as root:
            written = write_trials(Path(root), trials)
            frames = algoperf_frames(trials_table.read_trials([Path(root)])[0], written)
            cases[name] = oracle.answers(scoring, frames, clock, scale, max_tau)
        if clock == "time" and scoring.speedups is None:
            cases[name]["speedups"] = stored["cases"][name]["speedups"]
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    source = {
        **oracle.SOURCE,
        "computed": today,
        # the speedups' date: stored ones are kept where the checkout lacks their file
        "speedups_computed": stored["source"]["speedups_computed"]
        if scoring.speedups is None
        else today,
        "versions": {"numpy": np.__version__, "pandas": pd.__version__, "scipy": scipy.__version__},
        "how": "python tests/helpers/make_algoperf_scoring.py --algoperf CHECKOUT",
    }
    text = dump({"source": source, "cases": cases})
    oracle.ANSWERS.parent.mkdir(exist_ok=True)
    oracle.ANSWERS.write_text(text + "\n")
    print(f"make_algoperf_scoring: {len(cases)} cases from {folder} -> {oracle.ANSWERS}")


def dump(data: dict) -> str:
    """Indented JSON with each list of numbers or names on one line."""
    text = json.dumps(data, indent=1)
    one_line = lambda found: "[" + re.sub(r",\s+", ", ", found.group(1)) + "]"  # noqa: E731
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", one_line, text)


if __name__ == "__main__":
    main()
