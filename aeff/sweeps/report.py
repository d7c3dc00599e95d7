"""What a sweep says when it ends (or stops): its report files written through
`aeff.results.report`, the brief report on the console, and the line naming its failed
trials. Used by aeff's sweeper and, for a sweep by another sweeper (Optuna's), the app."""

import logging
from pathlib import Path

from aeff.records import sweep_dir as sweep_record
from aeff.records.secrets import redact

NAMED_FAILURES = 10  # run dirs named on the console; summary.csv lists every one


def write_and_print_report(sweep_dir: Path, ended: dict[int, str | None] | None = None) -> dict:
    """A sweep's report files, and its brief report on the console; its sweep.json."""
    from aeff.results import text
    from aeff.results.report import write_reports

    summary, sweep, page = write_reports(sweep_dir, ended)
    print(text.brief(summary, sweep_dir))
    unrecorded = sweep["num_unrecorded"]
    print(
        f"{sweep['num_trials']} trials, {text.count_failed(summary)} failed"
        + (f", {unrecorded} trained but not recorded (logging=off)" if unrecorded else "")
        + f", best time to target {text.seconds(sweep['best_time_to_target'])}. Report: "
        f"{sweep_dir / sweep_record.SUMMARY}, {sweep_dir / sweep_record.REPORT}, {page}"
    )
    return sweep


def write_and_print_studies_report(
    sweep_dir: Path, ended: dict[Path, dict[int, str | None]] | None = None
) -> dict:
    """Each study's report files (a line each on the console), and the report across the
    studies (`studies.csv`, the sweep dir's `sweep.json`), its table on the console;
    the sweep dir's sweep.json. `ended`: by study folder, see `results.summary`."""
    from aeff.results import text
    from aeff.results.report import write_reports, write_studies_reports

    folders = sweep_record.study_dirs(sweep_dir) or []
    reports = []
    for folder in folders:
        summary, sweep, page = write_reports(folder, (ended or {}).get(folder))
        reports.append((folder, sweep))
        print(
            f"{folder.name}: {sweep['num_trials']} trials, {text.count_failed(summary)} "
            f"failed, best time to target {text.seconds(sweep['best_time_to_target'])}. "
            f"Report: {page}"
        )
    table, report, page = write_studies_reports(sweep_dir, reports)
    print(text.studies_text(table, report, sweep_dir))
    print(
        f"Report across studies: {sweep_dir / sweep_record.STUDIES}, "
        f"{sweep_dir / sweep_record.REPORT}, {page}"
    )
    return report


def log_failures(log: logging.Logger, sweep_dir: Path, sweep: dict) -> list[str]:
    """The run dirs of the sweep's failed trials (`sweep`: its sweep.json), the first few
    named in an error line on `log` that says how to rerun them."""
    failed = list(sweep["failed"])
    if failed:
        named = ", ".join(failed[:NAMED_FAILURES])
        more = len(failed) - NAMED_FAILURES
        log.error(
            "%d of %d planned trials failed or did not run: %s. "
            "Rerun them with resume=true hydra.sweep.dir=%s",
            len(failed),
            sweep["num_planned"],
            named + (f" and {more} more ({sweep_dir / sweep_record.SUMMARY})" if more > 0 else ""),
            sweep_dir,
        )
    return failed


def finish_hint(sweep_dir: Path) -> str:
    """The command that finishes a sweep that stopped, credentials redacted."""
    from aeff.hydra_job import typed_command

    finish = ("resume=true", f"hydra.sweep.dir={sweep_dir}")
    command = typed_command(*finish, without=("resume=", "hydra.sweep.dir="))
    return f"Finish it with: {redact(command)}"
