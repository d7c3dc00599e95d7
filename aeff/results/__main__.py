"""`python -m aeff.results concat|plot|summary|report|export PATH`: combine, draw, summarise,
report and export trials.

PATH is a run dir, a sweep dir (or any folder above them) or, for `concat` and `plot`, a
CSV of rows (a `metrics.csv`, an `all_metrics.csv`).

`compare DIR [DIR ...]`: training algorithms scored against each other as AlgoPerf scores
them (docs/comparing-algorithms.md).
"""

import argparse
import logging
from pathlib import Path
from typing import Any

from aeff import errors
from aeff.errors import AeffError, ConfigError
from aeff.records.concat import concatenate_csvs, folder_of
from aeff.records.secrets import redact, redact_log_records, redacting_console
from aeff.records.sweep_dir import PLAN, STUDIES, STUDIES_PLAN, is_sweep_dir, study_dirs
from aeff.results import compare, scoring, trials_table
from aeff.results.plots import plot
from aeff.results.report import write_reports, write_studies_reports
from aeff.results.rows import read_rows
from aeff.results.summary import summary
from aeff.results.sweep_report import write_studies_report, write_sweep_report
from aeff.results.text import CONSOLE_TRIALS, as_text, brief, seconds, studies_text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aeff.results", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    concat = commands.add_parser("concat", help="every metrics.csv below PATH into one CSV")
    concat.add_argument("path", type=Path)
    draw = commands.add_parser("plot", help="a metric against another, one line per trial")
    draw.add_argument("path", type=Path)
    draw.add_argument("--x", default="global_step")
    draw.add_argument("--y", default="validation.loss")
    draw.add_argument("--out", type=Path, default=None, help="default: PATH/<y>.png")
    table = commands.add_parser("summary", help="one row per trial")
    table.add_argument("path", type=Path)
    table.add_argument(
        "--full",
        action="store_true",
        help=f"print every trial's row (default: up to {CONSOLE_TRIALS}, else counts and the "
        "best; a sweep's summary.csv holds every row)",
    )
    page = commands.add_parser("report", help="a sweep's report, report.html included")
    page.add_argument("path", type=Path)
    exporting = commands.add_parser("export", help="every trial into MLflow or TensorBoard")
    exporting.add_argument("tool", choices=["mlflow", "tensorboard"])
    exporting.add_argument("path", type=Path, help="a sweep dir, a run dir, or a folder of them")
    exporting.add_argument(
        "--tracking-uri", metavar="URI", help="mlflow: default sqlite:///PATH/mlflow.db"
    )
    exporting.add_argument(
        "--logdir", type=Path, metavar="DIR", help="tensorboard: default PATH/tensorboard"
    )
    add_compare(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(format="aeff.results: %(message)s")
    for path in args.dirs if args.command == "compare" else [args.path]:
        if not path.exists():
            parser.error(f"{path} does not exist")
    redact_log_records()  # credentials (a --tracking-uri's password) masked on the console
    try:
        redacting_console(lambda: run_command(args))
    except AeffError as error:  # a record it cannot read or write, no rows
        parser.exit(errors.exit_status(error), f"aeff.results: {redact(str(error))}\n")


def add_compare(commands: Any) -> None:
    comparing = commands.add_parser(
        "compare",
        help="time to target, speedups, performance profiles and scores, as AlgoPerf's",
        description="Each DIR is a sweep dir, a run dir or a folder of them; trials are "
        "matched by their records (workload, submission, study).",
    )
    comparing.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    comparing.add_argument(
        "--baseline",
        metavar="NAME",
        help="the submission the speedups are over (default: the first DIR's)",
    )
    comparing.add_argument(
        "--clock",
        choices=list(scoring.CLOCKS),
        default="time",
        help="the clock of the profiles, scores and speedups (the table shows both)",
    )
    comparing.add_argument(
        "--scale", choices=["linear", "log"], default="linear", help="the spacing of tau"
    )
    comparing.add_argument(
        "--max-tau",
        type=compare.as_number,
        default=scoring.MAX_TAU,
        metavar="X",
        help=f"the profiles' largest tau (default {scoring.MAX_TAU:g}, AlgoPerf's)",
    )
    comparing.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="SHORT=NAME",
        help="show submission SHORT as NAME (repeat for several)",
    )
    comparing.add_argument(
        "--out",
        type=Path,
        default=Path("compare"),
        metavar="DIR",
        help="where the report goes (default ./compare; never a trial's run dir)",
    )


def run_compare(args: argparse.Namespace) -> None:
    """`compare DIR ...`: the comparison printed and written to --out."""
    if any(path.is_file() for path in args.dirs):
        raise ConfigError("compare: give sweep dirs or run dirs, not files.")
    pairs = [name.partition("=") for name in args.name]
    if any(not sep or not new for _, sep, new in pairs):
        raise ConfigError(f"compare --name {args.name}: write each as SHORT=NAME.")
    compare.check_out(args.out, args.dirs)  # before any reading
    trials, evals = trials_table.read_trials(args.dirs, {old: new for old, _, new in pairs})
    result = scoring.compare(trials, evals, args.baseline, args.clock, args.scale, args.max_tau)
    log = logging.getLogger(__name__)
    notes = [compare.unfinished(trials), compare.unequal_clocks(trials, args.clock)]
    for note in [*notes, compare.nothing_reached(result, args.clock)]:
        if note:
            log.warning("compare: %s", note)
    for cell in compare.missing_cells(result["table"]):
        log.warning("compare: %s has no trial: it counts as missing the target (inf).", cell)
    tau_range = f"{scoring.MIN_TAU:g}, {args.max_tau:g}"
    print(compare.as_text(result, tau_range))
    for path in compare.write_comparison(result, args.out, args.clock, args.scale):
        print(path)


def run_command(args: argparse.Namespace) -> None:
    if args.command == "compare":
        run_compare(args)
        return
    folder = folder_of(args.path)
    if args.command == "concat":
        print(concatenate_csvs(args.path))
    elif args.command == "plot":
        print(plot(args.path, args.x, args.y, args.out or folder / f"{args.y}.png"))
    elif args.command == "export":
        print(export(args))
    elif args.command == "report" and (args.path / STUDIES_PLAN).is_file():
        reports = {folder: write_reports(folder) for folder in study_dirs(args.path)}
        *_, page = write_studies_reports(args.path, [(f, r[1]) for f, r in reports.items()])
        print("\n".join(str(page) for _, _, page in reports.values()))
        print(args.path / STUDIES)
        print(page)
    elif args.command == "report":
        if not is_sweep_dir(args.path):
            raise ConfigError(f"report {args.path}: no {PLAN} there: give a sweep dir.")
        print(write_reports(args.path)[2])
    elif (folder / STUDIES_PLAN).exists():  # a sweep of studies: each one's, and across them
        reports = [(study, write_sweep_report(study)[1]) for study in study_dirs(folder)]
        table, report = write_studies_report(folder, reports)
        print(studies_text(table, report, folder))
        print(f"{report['num_trials']} trials of {report['num_planned']} planned")
    elif is_sweep_dir(folder):  # a sweep dir: its report is written there
        frame, report = write_sweep_report(folder)
        print(as_text(frame, folder) if args.full else brief(frame, folder))
        print(f"{report['num_trials']} trials of {report['num_planned']} planned")
        print(f"best time to target: {seconds(report['best_time_to_target'])}")
    else:  # a run dir, or a folder of unrelated runs: no sweep, so no report and no score
        frame = summary(folder)
        if frame.empty:
            raise ConfigError(
                f"no trial records at or below {folder}: give a sweep dir or a run dir."
            )
        print(as_text(frame, folder) if args.full else brief(frame, folder, "trials"))
        more = "" if args.full or len(frame) <= CONSOLE_TRIALS else "; --full prints every row"
        print(
            f"{len(frame)} trials at or below {folder} (no {PLAN}: no sweep report written{more})"
        )


def export(args: argparse.Namespace) -> str:
    """`export mlflow|tensorboard PATH`: the records read here, written by the tool's
    exporter (imported now: MLflow and TensorBoard stay out of every other command)."""
    from aeff.results import export as exporters

    option = {"mlflow": "--tracking-uri", "tensorboard": "--logdir"}
    for tool, given in (("tensorboard", args.logdir), ("mlflow", args.tracking_uri)):
        if given is not None and args.tool != tool:
            raise ConfigError(f"export {args.tool}: {option[tool]} is for export {tool}.")
    if not args.path.is_dir():
        raise ConfigError(f"export {args.path}: give a sweep dir or a run dir, not a file.")
    exporters.require(args.tool)  # before any reading
    metrics = read_rows(args.path)
    trials = exporters.trials(args.path, summary(args.path, metrics=metrics), metrics)
    if args.tool == "mlflow":
        from aeff.results import export_mlflow

        uri = args.tracking_uri or export_mlflow.default_tracking_uri(args.path)
        return export_mlflow.to_mlflow(trials, args.path, uri)
    from aeff.results.export_tensorboard import to_tensorboard

    return to_tensorboard(trials, args.logdir or args.path / "tensorboard")


if __name__ == "__main__":
    main()
