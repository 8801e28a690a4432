"""Command line: sweep run | report | plot | page | tensorboard.

Domain errors become one line `Error: ...` and a non-zero exit (2 for a bad
spec or bad arguments, 1 for everything else), never a traceback.
"""
from __future__ import annotations

import argparse
import atexit
import gc
import os
import shutil
import sys
import threading
from pathlib import Path

# pandas, SQLAlchemy, matplotlib, torch and Ray are imported by the commands that need them, after
# program() has switched the garbage collector off (see there).
from sweep.cli_parser import build_parser
from sweep.spec.spec import DEFAULT_OUTPUT, SpecError, load_spec

def _factor_list(option: str, text: str, exactly: int | None = None) -> list[str]:
    """Comma-separated factors of an option: none empty, none repeated, `exactly` many where that is given
    (CliError, exit 2). Which factors a sweep has is known once it is read: _known_factors."""
    names = text.split(",")
    if "" in names or (exactly is not None and len(names) != exactly):
        count = "one or more" if exactly is None else "two" if exactly == 2 else str(exactly)
        raise CliError(f"{option} {text!r}: {count} factors, comma-separated (e.g. activation,init)", 2)
    repeated = sorted({f for f in names if names.count(f) > 1})
    if repeated:
        raise CliError(f"{option} {text!r}: {repeated[0]} appears twice; give different factors", 2)
    return names


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or continue) the sweep described by a spec file.

    Examples:
      sweep run sweeps.yaml                      train what is not finished yet
      sweep run sweeps.yaml --resume-stopped     also continue the trials a stop rule ended
      sweep run sweeps.yaml -v                   with Ray's own output, for debugging
    """
    from sweep.run.runner import RunError, run_sweep

    spec = load_spec(args.spec)  # torch comes in with the models' registries
    # The driver lives as long as the sweep: the garbage collector is back on from here (see program()), and
    # the objects of the imports so far, which live to the end anyway, are frozen out of its passes.
    gc.freeze()
    gc.enable()
    try:
        summary = run_sweep(spec, address=args.address, progress_interval=args.progress_interval,
                            resume_stopped=args.resume_stopped, verbose=args.verbose)
    except RunError as exc:
        raise CliError(str(exc), exc.code) from None
    parts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
    print(f"done: {parts or 'nothing to run'}; {summary.skipped} already finished before this run")
    if summary.interrupted:
        print("interrupted: run the same command again to continue", file=sys.stderr)
    print(f"see the results: sweep report {spec.name} --spec {args.spec}")
    return summary.exit_code


def _database_url(args: argparse.Namespace) -> str:
    """--spec's database, --db (a URL, or a path to a SQLite file), or runs/sweep.db."""
    if args.spec:
        return load_spec(args.spec).database_url
    if args.db:
        return args.db if "://" in args.db else f"sqlite:///{args.db}"
    return f"sqlite:///{Path(DEFAULT_OUTPUT) / 'sweep.db'}"


def _shown_url(url: str) -> str:
    """The URL for messages, its password masked; a URL that cannot be parsed is never echoed."""
    from sweep.db import safe_url

    try:
        return safe_url(url)
    except Exception:
        return "(not a readable database URL)"


def _open_db(url: str):
    """(engine, sweep names) of an existing database; every failure is a CliError of one line."""
    from sweep.db import DatabaseError, make_engine, sqlite_path, sweep_names

    try:
        path = sqlite_path(url)
        if path is not None and not path.exists():  # opening it would create an empty file
            raise CliError(f"no database at {path}; run `sweep run SPEC` first, or pass --spec SPEC or --db URL")
        engine = make_engine(url)
        names = sweep_names(engine)
    except (CliError, DatabaseError) as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # an unparsable URL, a driver not installed, a server not reachable
        shown = _shown_url(url)
        detail = str(exc).splitlines()[0].replace(url, shown) if str(exc) else "cannot open it"
        raise CliError(f"database {shown}: {exc.__class__.__name__}: {detail}") from None
    if not names:
        raise CliError(f"database {_shown_url(url)} holds no sweep yet")
    return engine, names


def _pick_sweep(requested: str | None, names: list[str]) -> str:
    from sweep.analysis.factors import did_you_mean

    if requested is None:
        return names[-1]
    if requested not in names:
        raise CliError(f"no sweep named {requested!r} in the database; it has: {', '.join(names)}"
                       f"{did_you_mean(requested, names)}")
    return requested


def _parse_where(items: list[str]) -> list[tuple[str, str]]:
    """--where KEY=VALUE items as (KEY, VALUE) pairs; whether KEY is a factor of the sweep and VALUE one of
    its values, sweep.analysis.report.filter_trials says."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--where {item!r}: expected KEY=VALUE, a factor and its value (e.g. optimizer=adam, "
                           "momentum=0.9)", 2)
        pairs.append((key, value))
    return pairs


def _open_sweep(args: argparse.Namespace):
    """(engine, sweep name, metric, epochs, stored spec) from --db/--spec, the SWEEP argument and the sweep's
    spec, read once.

    The metric is --metric or the spec's; epochs the spec's current `epochs`.
    """
    from sweep.db import trials_frame
    from sweep.db.queries import sweep_spec

    engine, names = _open_db(_database_url(args))
    name = _pick_sweep(args.sweep, names)
    spec = sweep_spec(engine, name)
    epochs = spec.get("epochs")
    if epochs is None:  # a database written without a spec: compare at the most epochs any trial trained
        epochs = int(max(trials_frame(engine, name)["epochs_done"], default=0))
    return engine, name, args.metric or spec.get("metric", "final_test_acc"), epochs, spec


def _tuning(args: argparse.Namespace, spec: dict) -> tuple[tuple[str, ...], dict]:
    """(the nuisance hyper-parameters to tune: --tune, else the stored spec's `tune:`; their ranges in it)."""
    from sweep.analysis.tuning import spec_ranges

    if args.tune is None:
        tune = tuple(spec.get("tune") or ())
    elif args.tune == "none":
        tune = ()
    else:
        tune = tuple(_factor_list("--tune", args.tune))
    return tune, spec_ranges(spec)


def _terminal_width() -> int:
    """COLUMNS, else the terminal's width, else 100 (output to a file or a pipe)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        try:
            return os.get_terminal_size(sys.stdout.fileno()).columns
        except OSError:
            pass
    return 100


def cmd_report(args: argparse.Namespace) -> int:
    """Print configurations ranked by a metric, seeds aggregated (works while a sweep runs).

    Trials are compared at the sweep's current epochs: one with fewer is
    unfinished (shown, not aggregated); a diverged one counts with the
    figures of its epochs before the loss became NaN or infinite; a trial a
    stop rule stopped is read at the epoch it stopped, and configurations
    only such trials show come after the others.
    With --threshold, `reached` says how many seeds reached it: ranked by
    images_to_threshold, configurations whose seeds all reached it come
    first (fewest images first), then the others by their share reached;
    a miss is never averaged away. The same holds for --by.
    Factors (--by, --where): activation, init, gain, optimizer, lr, seed,
    model, status, and the optimizer hyper-parameters the grid sets
    (momentum, nesterov, weight_decay, beta1, ...).
    --findings says what the study found, one numbered line each: every
    scientific factor's effect (each pair of its levels, matched on every
    other factor and seed: mean difference, Bonferroni-corrected 95%
    interval, pairs), split by another factor where its sign differs
    there; with tune:, at a fixed setting and at each configuration's
    best (holds, shrinks, grows, vanishes, reverses, unresolved); and the
    pathologies at every setting tried or at which.
    csv and json are typed: numbers as numbers, a range as two columns
    (epochs_min, epochs_max), `reached` a count out of n, each
    hyper-parameter a column; --by writes one row per combination there.

    Examples:
      sweep report fashion-activations --format markdown
      sweep report --by activation                  mean accuracy per activation, all else pooled
      sweep report --by activation,init             the same as a matrix
      sweep report --by optimizer,momentum,seed     one row per combination
      sweep report --where optimizer=adam --top 3
      sweep report --where momentum=0.9 --where nesterov=true
      sweep report --where seed=0,1                 seeds 0 and 1 (a repeated key means any of its values too)
      sweep report --threshold 0.7                  images seen until 70% test accuracy
      sweep report --epoch 2                        every trial at epoch 2 (those that reached it)
      sweep report --by activation,optimizer --tune lr   each cell at its own best lr, chosen on validation
      sweep report --trials --dead 0.3              one row per trial with its pathology flags
      sweep report --findings                       what the study found: each factor's effect, its interval
      sweep report --findings --format json         the same as typed rows (one per effect, split cell, flag)
      sweep report --wide                           every column, however wide
      sweep report --columns rank,config,mean,best_test_acc
    """
    from sweep.db.flags import FlagThresholds
    from sweep.analysis.render import default_columns, essential_columns, format_findings, format_report, HUMAN_FORMATS, \
        human_view, resolve_columns, wrapped
    from sweep.analysis.report import build_report, NothingSelected, ReportOptions

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise CliError(f"--threshold {args.threshold:g}: a test accuracy, must be in 0..1 (e.g. 0.7)", 2)
    factors = _factor_list("--by", args.by) if args.by else []
    where = _parse_where(args.where)
    if args.findings:
        clash = [o for o, given in (("--by", args.by), ("--trials", args.trials), ("--wide", args.wide),
                                    ("--columns", args.columns and args.format in ("table", "markdown"))) if given]
        if clash:
            raise CliError(f"--findings compares every factor in sentences: not with {clash[0]}"
                           + (" (csv and json take --columns)" if clash[0] == "--columns" else ""), 2)
    engine, name, metric, epochs, spec = _open_sweep(args)
    human = args.format in HUMAN_FORMATS
    matrix = human and len(factors) == 2  # two factors: a matrix for people, one row per pair in csv and json
    tune, ranges = _tuning(args, spec)
    options = ReportOptions(metric, epochs, tuple(factors), tuple(where), args.threshold, args.trials, args.top,
                            FlagThresholds(args.saturated, args.dead, args.vanishing, args.exploding,
                                           args.chance_margin), matrix, args.epoch, tune, ranges, args.findings)
    try:
        report = build_report(engine, name, options)
    except NothingSelected as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.findings and human:
        width = _terminal_width() if args.format == "table" else None
        if args.format == "table":
            print("\n".join(wrapped(f"sweep {name}: {report.title}", width)))
        sys.stdout.write(format_findings(report.table, args.format, width))
        return 0
    view = human_view(report.table) if human else report.table
    columns = resolve_columns(view, args.columns) if args.columns else None
    width, keep = None, ()
    if args.format == "table":
        if columns is None and not factors:
            columns = default_columns(view, metric, wide=args.wide)
        if not (args.wide or args.columns):
            width = _terminal_width()
            keep = list(view.columns) if matrix else essential_columns(view, metric)
    text = format_report(view, args.format, columns, width, keep)
    if args.format == "table":
        # The title wraps at the width the table uses: the terminal's, or the table's own under --wide or
        # --columns where that is wider.
        used = width or max(_terminal_width(), *(len(line) for line in text.splitlines()))
        print("\n".join(wrapped(f"sweep {name}: {report.title}", used)))
        if code := code_line(spec):
            print("\n".join(wrapped(code, used)))
    sys.stdout.write(text)
    return 0


def code_line(spec: dict) -> str | None:
    """Which code a sweep's trials ran, from its stored spec: its network's and data's factory (with the
    digest of their source, part of each trial's identity) or torchvision network; None for the study's own."""
    parts = []
    for section in ("model", "dataset"):
        part = spec.get(section) or {}
        if part.get("factory"):
            parts.append(f"{section}.factory {part['factory']} (code {part.get('code')})")
        elif part.get("torchvision"):
            parts.append(f"model.torchvision {part['torchvision']} (torchvision's, activations swapped)")
        if part.get("args") not in (None, "{}"):
            parts[-1] += f" args {part['args']}"
    return "ran: " + "; ".join(parts) if parts else None


def cmd_plot(args: argparse.Namespace) -> int:
    """Write PNG pictures of a sweep: accuracy curves, depth profiles, each layer over training, a heat map.

    dynamics.png draws each layer's activation statistic (--stat) and
    weight-gradient std against training images seen, a panel per
    configuration (of a big sweep: its 5 best and 5 worst). The heat map
    shows the same numbers as `sweep report --by F1,F2`: finished trials
    at the sweep's current epochs; before any has finished, a line says so
    instead. A configuration has one colour in every picture.

    Examples:
      sweep plot                                    the latest sweep, into runs/plots/<sweep>/
      sweep plot fashion-activations --epochs 1,3 --heatmap activation,optimizer
      sweep plot --metric best_test_acc --heatmap activation,gain
      sweep plot --stat sat_frac                    each layer's saturation over training
    """
    from sweep.db import sqlite_path
    from sweep.analysis.factors import FACTORS, check_factors
    from sweep.view.forked import Forked, spare_core
    from sweep.view.pictures import PictureOptions, pictures_to_draw, read_pictures

    if args.out:  # checked, nothing made, before the database is opened
        from sweep.run.cluster import FolderError, writable_folder

        try:
            writable_folder(Path(args.out))
        except FolderError as exc:
            raise CliError(f"--out: {exc}", 2) from None
    engine, name, metric, sweep_epochs, spec = _open_sweep(args)
    if args.epoch is not None and args.epoch > sweep_epochs:
        raise CliError(f"--epoch {args.epoch}: the sweep's epochs are 1..{sweep_epochs}", 2)
    if args.facet not in FACTORS:
        raise CliError(f"--facet {args.facet!r} is not a factor; use one of {', '.join(FACTORS)}", 2)
    options = PictureOptions(metric, sweep_epochs, args.facet, args.stat,
                             tuple(_factor_list("--heatmap", args.heatmap, exactly=2)), args.epoch,
                             tuple(int(e) for e in args.epochs.split(",")) if args.epochs else None,
                             _tuning(args, spec)[0])
    # Where a core is spare, a second process reads while this one imports matplotlib, the two taking about
    # as long, so they overlap (a thread could not: the import holds the GIL, and the reads want it for every
    # row). Then the accuracy curves and the heat map are drawn in one process while this one draws the depth
    # profiles and the dynamics (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
    fork = spare_core()
    reading = Forked(lambda: read_pictures(engine, name, options), fork=fork, what="reading the sweep")
    try:
        from sweep.view.plot import draw_all
    except BaseException:
        reading.reap()
        raise
    data = reading.result()
    if not data.chosen:
        raise CliError(f"sweep {name} has no statistics yet; wait for its first epoch")
    check_factors("--heatmap", list(options.heatmap), data.results)
    if args.out:
        out = Path(args.out)
    elif sqlite_path(engine.url) is not None:
        out = sqlite_path(engine.url).parent / "plots" / name
    else:
        out = Path(DEFAULT_OUTPUT) / "plots" / name
    todo = pictures_to_draw(data, options, out)
    written = draw_all(todo.pictures, fork=fork, forked=todo.forked)
    for path in sorted(written, key=lambda p: p.name):  # accuracy, depth, dynamics, heatmap
        print(path)
    for line in todo.missing:
        print(f"sweep {name}: {line}", file=sys.stderr)
    return 0


def cmd_page(args: argparse.Namespace) -> int:
    """Write the whole study as one self-contained HTML file, and print its path.

    The page holds the spec, when and where the sweep ran (devices, nodes,
    bundles), its wall time, the images trained and what early stopping
    saved; what the study found (sweep report --findings); the ranking as
    `sweep report --wide` gives it (sorted by a click on a column's name,
    filtered by a factor's value, each flag explained in a tooltip); the
    --by matrix of each pair of factors; every picture
    `sweep plot` draws; and per configuration its seeds, its accuracy curve
    with the seeds' band, its layers over training and its errors. It needs
    no network to be read: everything is inline.

    Examples:
      sweep page                                    the latest sweep, into runs/pages/<sweep>.html
      sweep page fashion-activations --out study.html
      sweep page --spec sweeps.yaml --metric best_test_acc
    """
    import shlex
    import time

    from sweep.db import sqlite_path
    from sweep.view.page import EmptySweep, PageOptions, build_page, write_page

    if args.out:  # checked, nothing made, before the database is opened
        from sweep.run.cluster import FolderError, writable_folder

        try:
            writable_folder(Path(args.out).absolute().parent)
        except FolderError as exc:
            raise CliError(f"--out: {exc}", 2) from None
    engine, name, metric, epochs, _ = _open_sweep(args)
    if args.out:
        out = Path(args.out)
    elif sqlite_path(engine.url) is not None:
        out = sqlite_path(engine.url).parent / "pages" / f"{name}.html"
    else:
        out = Path(DEFAULT_OUTPUT) / "pages" / f"{name}.html"
    source = (["--spec", args.spec] if args.spec else ["--db", _shown_url(_database_url(args))] if args.db else [])
    command = shlex.join(["sweep", "page", name, *source, *(["--metric", args.metric] if args.metric else []),
                          *(["--out", args.out] if args.out else [])])
    began = time.perf_counter()

    def progress(stage: str) -> None:
        print(f"page: {stage} ({time.perf_counter() - began:.1f} s)", file=sys.stderr, flush=True)

    try:
        page = build_page(engine, name, PageOptions(metric, epochs, command=command), progress)
    except EmptySweep as exc:
        raise CliError(str(exc)) from None
    print(write_page(page, out))
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    """Start TensorBoard over all trial folders of a sweep (or of all sweeps).

    Binds to 127.0.0.1 unless --host says otherwise.
    Example: sweep tensorboard fashion-activations --port 6007
    """
    output = Path(load_spec(args.spec).output) if args.spec else Path(args.output)
    logdir = output / args.sweep if args.sweep else output
    if not logdir.is_dir():
        from sweep.analysis.factors import did_you_mean
        from sweep.run.records import SETTINGS_FILE

        sweeps = sorted(p.parent.name for p in output.glob(f"*/{SETTINGS_FILE}"))  # the folders sweep run made
        if args.sweep and sweeps:
            raise CliError(f"no sweep named {args.sweep!r} in {output}; it has: {', '.join(sweeps)}"
                           f"{did_you_mean(args.sweep, sweeps)}")
        raise CliError(f"no folder {logdir}; run `sweep run SPEC` first")
    exe = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    argv = [exe, "--logdir", str(logdir), "--host", args.host, "--port", str(args.port)]
    print(f"TensorBoard over {logdir} on http://{args.host}:{args.port}", flush=True)
    os.execv(exe, argv)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    from sweep.analysis.factors import ReportError

    args = build_parser(sys.modules[__name__]).parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.code
    except ReportError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


def program() -> None:
    """The `sweep` program (and `python -m sweep.cli`): main(), then out without the interpreter's
    teardown of its modules: freeing torch, Ray, pandas and the rest took seconds at the end of every
    `sweep run`, after the work was done (docs/benchmarks.md, "The test suite"). Every atexit handler still
    runs (Ray's, logging's), the database connections are closed (SQLite folds its WAL back into the file),
    then the output is flushed. Where a thread of the command still runs, or an exception is left uncaught, it is Python's
    usual way out.

    The garbage collector is off for the command (cmd_run turns it back on): the imports of pandas,
    SQLAlchemy and matplotlib leave about a million objects that live until the end, and each of its
    passes went through all of them again, a noticeable share of a `sweep plot` or `sweep report`. Their
    garbage is small, so memory stays low without it (docs/benchmarks.md, "Big sweeps (2-core CPU,
    24 GiB)")."""
    gc.disable()
    try:
        code = main()
    except SystemExit as exc:  # argparse's errors and --help
        code = 0 if exc.code is None else exc.code
    except BrokenPipeError:  # the reader left (`sweep report | head -3`): no traceback, as other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the last flush must not fail
        code = 1
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not isinstance(code, int) or others:
        sys.exit(code)
    atexit._run_exitfuncs()  # what Python runs at exit before its teardown
    if "sweep.db.engine" in sys.modules:  # and the database connections that teardown would close
        sys.modules["sweep.db.engine"].dispose_all()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone, a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":
    program()
