"""The `sweep` command line's arguments: argparse with one-line errors, the option types, a subcommand per
command (sweep/cli.py holds the commands; each one's docstring is its --help)."""
from __future__ import annotations

import argparse
import inspect

from sweep.spec.spec import DEFAULT_OUTPUT, METRICS

# What `sweep plot --stat` takes: db.series.DYNAMICS_STATS, spelled here so that building the parser imports
# neither pandas nor SQLAlchemy (tests/test_analysis_cli.py holds the two equal).
DYNAMICS_STATS = ("mean", "std", "p98", "zero_frac", "dead_frac", "sat_frac")

EXAMPLES = """examples:
  sweep run sweeps.yaml                    train every configuration of the study
  sweep run sweeps.yaml --address auto     the same on an existing Ray cluster
  sweep report                             ranked table of the latest sweep in runs/sweep.db
  sweep report fashion-activations --format markdown --metric best_test_acc
  sweep report --by activation,init        mean accuracy per activation x init
  sweep plot                               PNG curves, depth profiles and a heat map
  sweep page                               the whole study as one HTML file, to share
  sweep tensorboard                        TensorBoard over runs/ on http://127.0.0.1:6006
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the project's errors: one line `Error: ...`, exit 2 (argparse prints its usage first)."""

    def error(self, message: str):
        self.exit(2, f"Error: {self.prog}: {message}; see {self.prog} --help\n")


def _number(kind: str, low: float | None = None, high: float | None = None, integer: bool = False,
            above: bool = False):
    """An argparse type: a number in [low, high] (above: low excluded), said in one line when it is not."""
    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if value != value or (low is not None and (value <= low if above else value < low)) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}")
        return value
    return parse


SHARE = _number("a share in 0..1", 0.0, 1.0)
POSITIVE = _number("a number > 0", 0.0, above=True)
COUNT = _number("a whole number >= 1", 1, integer=True)
PORT = _number("a TCP port (1..65535)", 1, 65535, integer=True)


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """SWEEP and where its database is: --db URL or --spec FILE."""
    parser.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", help=f"database URL, or the path of a SQLite file (default {DEFAULT_OUTPUT}/sweep.db)")
    where.add_argument("--spec", help="take the database from this spec")


def package_version() -> str:
    """The installed package's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sweep")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def build_parser(cli) -> argparse.ArgumentParser:
    """The `sweep` command line: a subcommand per command of `cli` (the module sweep/cli.py as it runs: under
    `python -m sweep.cli` that is __main__, whose CliError main() catches), each described by its docstring."""
    parser = _Parser(
        prog="sweep", description="Parallel sweeps of training dynamics with a results database.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sweep {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_run, _report, _plot, _page, _tensorboard):
        add(sub, cli)
    return parser


def _run(sub, cli) -> None:
    """sweep run's arguments."""
    run = sub.add_parser("run", help="run or continue a sweep", description=inspect.cleandoc(cli.cmd_run.__doc__),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("spec", help="sweep spec (YAML)")
    run.add_argument("--address", metavar="HOST:PORT|auto",
                     help="join an existing Ray cluster: its head's HOST:PORT, or auto to find the one this "
                          "machine belongs to (default: start a Ray of its own on this machine, 127.0.0.1 only)")
    run.add_argument("--progress-interval", type=_number("a number of seconds >= 1", 1.0), default=15.0, metavar="S",
                     help="seconds between progress lines (default 15)")
    run.add_argument("--resume-stopped", action="store_true",
                     help="continue the trials a stop rule ended, to the end, exempt from the rules (default: a "
                          "stopped trial stays stopped while its rule, as the spec now sets it, still holds)")
    run.add_argument("-v", "--verbose", action="store_true", default=None,
                     help="show Ray's own output and tracebacks on the terminal (default: into runs/<sweep>/sweep.log;"
                          " also SWEEP_VERBOSE=1)")
    run.set_defaults(func=cli.cmd_run)


def _report(sub, cli) -> None:
    """sweep report's arguments."""
    from sweep.db.flags import FlagThresholds
    from sweep.analysis.render import FORMATS
    from sweep.analysis.report import RANK_METRICS

    report = sub.add_parser("report", help="ranked table of configurations",
                            description=inspect.cleandoc(cli.cmd_report.__doc__),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_sweep_arguments(report)
    report.add_argument("--metric", choices=list(RANK_METRICS), help="ranking metric (default: the spec's)")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--by", metavar="FACTOR[,FACTOR...]",
                        help="the metric per value of a factor, every other factor and seed pooled; two factors: "
                             "a matrix; three or more: one row per combination (csv and json: always one row per "
                             "combination). Any factor, the optimizer's hyper-parameters included (momentum, ...)")
    report.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="keep only trials with this factor value (repeatable); numbers compare as numbers "
                             "(lr=1e-3), booleans as true/false, KEY=none: the hyper-parameter is not set; "
                             "status=unfinished or stopped")
    report.add_argument("--top", type=COUNT, metavar="N", help="only the first N rows (N >= 1)")
    report.add_argument("--tune", metavar="F[,F...]",
                        help="nuisance hyper-parameters: each row at its best setting of these, chosen on the "
                             "ranking metric (on validation where the sweep has a split), its test figure beside "
                             "it (default: the spec's tune:; none: every configuration)")
    report.add_argument("--epoch", type=COUNT, metavar="E",
                        help="read every trial at epoch E: the trials that reached it, finished or not, never past "
                             "it (like with like at any rung)")
    report.add_argument("--threshold", type=float, metavar="ACC",
                        help="add images seen until test accuracy first reached ACC (0..1) and how many seeds "
                             "reached it; ranked by it, configurations with a miss come after those without")
    report.add_argument("--trials", action="store_true", help="one row per trial instead of per configuration")
    report.add_argument("--findings", action="store_true",
                        help="what the study found: each scientific factor's paired effect with its interval, at "
                             "the fixed and the tuned setting, and the pathologies; one line each (json and csv: "
                             "typed rows)")
    view = report.add_mutually_exclusive_group()
    view.add_argument("--wide", action="store_true", help="the table with every column, however wide")
    view.add_argument("--columns", metavar="A,B,...", help="only these columns, in this order (any format)")
    flags = report.add_argument_group("pathology flag thresholds")
    defaults = FlagThresholds()
    flags.add_argument("--saturated", type=SHARE, default=defaults.saturated, metavar="SHARE",
                       help=f"share of values near an asymptote (default {defaults.saturated:g})")
    flags.add_argument("--dead", type=SHARE, default=defaults.dead, metavar="SHARE",
                       help=f"share of dead units (default {defaults.dead:g})")
    flags.add_argument("--vanishing", type=POSITIVE, default=defaults.vanishing, metavar="RATIO",
                       help=f"first/last layer gradient std below this (default {defaults.vanishing:g})")
    flags.add_argument("--exploding", type=POSITIVE, default=defaults.exploding, metavar="RATIO",
                       help=f"first/last layer gradient std above this, or a train loss this many times the loss "
                            f"before training (default {defaults.exploding:g})")
    flags.add_argument("--chance-margin", type=_number("an accuracy margin in 0..0.5", 0.0, 0.5),
                       default=defaults.chance_margin, metavar="ACC",
                       help=f"accuracy within this of 1/classes is chance (default {defaults.chance_margin:g})")
    report.set_defaults(func=cli.cmd_report)


def _plot(sub, cli) -> None:
    """sweep plot's arguments."""
    plot = sub.add_parser("plot", help="PNG pictures of a sweep", description=inspect.cleandoc(cli.cmd_plot.__doc__),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_sweep_arguments(plot)
    plot.add_argument("--out", help="folder for the PNG files (default: plots/<sweep> beside the database)")
    plot.add_argument("--facet", default="activation",
                      help="one accuracy panel per value of this factor (default activation)")
    plot.add_argument("--epochs", help="epochs of the depth profiles, e.g. 1,3 (default: first and last)")
    plot.add_argument("--tune", metavar="F[,F...]",
                      help="tuned hyper-parameters for tuning.png (default: the spec's tune:; none: no tuning.png)")
    plot.add_argument("--epoch", type=COUNT, metavar="E",
                      help="rank and draw the heat map with every trial at epoch E, as sweep report --epoch E")
    plot.add_argument("--heatmap", default="activation,init", metavar="F1,F2",
                      help="two factors of the heat map, any that sweep report --by takes (default activation,init)")
    plot.add_argument("--metric", choices=list(METRICS), help="metric of the heat map (default: the spec's)")
    plot.add_argument("--stat", choices=DYNAMICS_STATS, default="std",
                      help="the activations' statistic dynamics.png draws for each layer over training (default "
                           "std; p98 and sat_frac are Glorot & Bengio's)")
    plot.set_defaults(func=cli.cmd_plot)


def _page(sub, cli) -> None:
    """sweep page's arguments."""
    page = sub.add_parser("page", help="the whole study as one HTML file", description=inspect.cleandoc(cli.cmd_page.__doc__),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_sweep_arguments(page)
    page.add_argument("--out", metavar="FILE.html", help="where to write the page (default: pages/<sweep>.html "
                                                         "beside the database)")
    page.add_argument("--metric", choices=list(METRICS), help="ranking metric (default: the spec's)")
    page.set_defaults(func=cli.cmd_page)


def _tensorboard(sub, cli) -> None:
    """sweep tensorboard's arguments."""
    tb = sub.add_parser("tensorboard", help="TensorBoard over a sweep's trial folders",
                        description=inspect.cleandoc(cli.cmd_tensorboard.__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    tb.add_argument("sweep", nargs="?", help="sweep name (default: all sweeps)")
    where = tb.add_mutually_exclusive_group()
    where.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder (default runs)")
    where.add_argument("--spec", help="take the output folder from this spec")
    tb.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    tb.add_argument("--port", type=PORT, default=6006, help="port (default 6006)")
    tb.set_defaults(func=cli.cmd_tensorboard)
