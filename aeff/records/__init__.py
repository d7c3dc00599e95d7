"""Trial records: metadata.json, packages.txt and metrics.csv in every run dir."""

from typing import Any

__all__ = ["concatenate_csvs"]


def __getattr__(name: str) -> Any:
    """`aeff.records.concatenate_csvs`, without importing pandas into every trial."""
    if name == "concatenate_csvs":
        from aeff.records.concat import concatenate_csvs

        return concatenate_csvs
    raise AttributeError(name)
