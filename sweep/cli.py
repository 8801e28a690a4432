"""Command line: sweep run | report | tensorboard.

Domain errors become one line `Error: ...` and a non-zero exit (2 for a bad
spec or bad arguments, 1 for everything else), never a traceback.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from sweep.spec import DEFAULT_OUTPUT, METRICS, SpecError, load_spec

EXAMPLES = """examples:
  sweep run sweeps.yaml                    train every configuration of the study
  sweep run sweeps.yaml --address auto     the same on an existing Ray cluster
  sweep report                             ranked table of the latest sweep in runs/sweep.db
  sweep report fashion-activations --format markdown --metric best_test_acc
  sweep tensorboard                        TensorBoard over runs/ on http://127.0.0.1:6006
"""


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or continue) the sweep described by a spec file.

    Example: sweep run sweeps.yaml
    """
    from sweep.runner import RunError, run_sweep

    spec = load_spec(args.spec)
    try:
        summary = run_sweep(spec, address=args.address, progress_interval=args.progress_interval)
    except RunError as exc:
        raise CliError(str(exc)) from None
    parts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
    print(f"done: {parts or 'nothing to run'}; {summary.skipped} already finished before this run")
    if summary.interrupted:
        print("interrupted: run the same command again to continue", file=sys.stderr)
    print(f"see the results: sweep report {spec.name} --db {spec.database_url}")
    return summary.exit_code


def _database_url(args: argparse.Namespace) -> str:
    if args.spec:
        return load_spec(args.spec).database_url
    if args.db:
        return args.db
    return f"sqlite:///{Path(DEFAULT_OUTPUT) / 'sweep.db'}"


def _open_db(url: str):
    from db import DatabaseError, make_engine, safe_url, sweep_names

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise CliError(f"no database at {url[len('sqlite:///'):]}; run `sweep run SPEC` first or pass --db")
    engine = make_engine(url)
    try:
        names = sweep_names(engine)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    if not names:
        raise CliError(f"database {safe_url(url)} holds no sweep yet")
    return engine, names


def _pick_sweep(requested: str | None, names: list[str]) -> str:
    if requested is None:
        return names[-1]
    if requested not in names:
        import difflib

        close = difflib.get_close_matches(requested, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CliError(f"no sweep named {requested!r} in the database; it has: {', '.join(names)}{hint}")
    return requested


def cmd_report(args: argparse.Namespace) -> int:
    """Print configurations ranked by a metric, seeds aggregated (works while a sweep runs).

    Example: sweep report fashion-activations --format markdown
    """
    from db import trials_frame
    from sweep.report import format_report, rank_configurations

    engine, names = _open_db(_database_url(args))
    name = _pick_sweep(args.sweep, names)
    metric = args.metric
    if metric is None:
        import json
        from db.queries import sweep_spec_json

        metric = json.loads(sweep_spec_json(engine, name)).get("metric", "final_test_acc")
    table = rank_configurations(trials_frame(engine, name), metric)
    if args.format == "table":
        print(f"sweep {name}: {len(table)} configurations ranked by {metric}")
    sys.stdout.write(format_report(table, args.format))
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    """Start TensorBoard over all trial folders of a sweep (or of all sweeps).

    Binds to 127.0.0.1 unless --host says otherwise.
    Example: sweep tensorboard fashion-activations --port 6007
    """
    output = Path(load_spec(args.spec).output) if args.spec else Path(args.output)
    logdir = output / args.sweep if args.sweep else output
    if not logdir.is_dir():
        raise CliError(f"no folder {logdir}; run `sweep run SPEC` first")
    exe = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    argv = [exe, "--logdir", str(logdir), "--host", args.host, "--port", str(args.port)]
    print(f"TensorBoard over {logdir} on http://{args.host}:{args.port}", flush=True)
    os.execv(exe, argv)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep", description="Parallel sweeps of training dynamics with a results database.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run or continue a sweep", description=cmd_run.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("spec", help="sweep spec (YAML)")
    run.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://host:10001)")
    run.add_argument("--progress-interval", type=float, default=15.0, metavar="S",
                     help="seconds between progress lines (default 15)")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="ranked table of configurations", description=cmd_report.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    where = report.add_mutually_exclusive_group()
    where.add_argument("--db", help=f"database URL (default sqlite:///{DEFAULT_OUTPUT}/sweep.db)")
    where.add_argument("--spec", help="take the database from this spec")
    report.add_argument("--metric", choices=list(METRICS), help="ranking metric (default: the spec's)")
    report.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    report.set_defaults(func=cmd_report)

    tb = sub.add_parser("tensorboard", help="TensorBoard over a sweep's trial folders",
                        description=cmd_tensorboard.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tb.add_argument("sweep", nargs="?", help="sweep name (default: all sweeps)")
    where = tb.add_mutually_exclusive_group()
    where.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder (default runs)")
    where.add_argument("--spec", help="take the output folder from this spec")
    tb.add_argument("--host", default="127.0.0.1")
    tb.add_argument("--port", type=int, default=6006)
    tb.set_defaults(func=cmd_tensorboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
