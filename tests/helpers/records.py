"""Checks on a run dir's records, shared by the reliability tests."""

import csv
import hashlib
import json
from pathlib import Path

import yaml

from aeff.results.summary import summary


def assert_records_parseable(run_dir: Path) -> None:
    """Every record parses; metrics.csv holds complete rows only; JSON is one whole version."""
    for path in run_dir.glob("*.json"):
        json.loads(path.read_text())
    for path in run_dir.glob(".*.json.*.tmp"):  # a write the kill stopped before its rename
        json.loads(path.read_text())
    for path in [*run_dir.glob("*.yaml"), *run_dir.glob(".hydra/*.yaml")]:
        yaml.safe_load(path.read_text())
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        text = metrics.read_text()
        assert text.endswith("\n"), "metrics.csv ends in a half-written row"
        header, *rows = list(csv.reader(text.splitlines()))
        assert all(len(row) == len(header) for row in rows), "metrics.csv has a partial row"


def status_in_summary(run_dir: Path) -> str:
    (status,) = summary(run_dir)["status"]
    return status


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Each file's SHA-256, to show that nothing changed."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }
