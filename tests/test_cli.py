"""CLI errors for the report and TensorBoard commands: one line, non-zero exit; the program's way out."""
import os
import sqlite3
import subprocess
import sys

import pytest

from sweep.db.engine import init_db, make_engine, session_scope
from sweep.db.queries import ensure_sweep
from sweep.cli import main
from sweep_process import ENV


def test_report_on_a_missing_database(tmp_path, capsys):
    assert main(["report", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    assert capsys.readouterr().err == f"Error: no database at {tmp_path / 'none.db'}; run `sweep run SPEC` first, or pass --spec SPEC or --db URL\n"
    assert not (tmp_path / "none.db").exists()


def test_report_on_an_empty_database(tmp_path, capsys):
    init_db(make_engine(f"sqlite:///{tmp_path / 'r.db'}"))
    assert main(["report", "--db", f"sqlite:///{tmp_path / 'r.db'}"]) == 1
    assert capsys.readouterr().err == f"Error: database sqlite:///{tmp_path / 'r.db'} holds no sweep yet\n"


def test_report_on_an_unknown_sweep(tmp_path, capsys):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    init_db(engine)
    with session_scope(engine) as s:
        ensure_sweep(s, "fashion-activations", "{}")
    assert main(["report", "fashion-activation", "--db", f"sqlite:///{tmp_path / 'r.db'}"]) == 1
    assert capsys.readouterr().err == ("Error: no sweep named 'fashion-activation' in the database; it has: "
                                       "fashion-activations; did you mean 'fashion-activations'?\n")


def test_tensorboard_on_a_missing_folder(tmp_path, capsys):
    assert main(["tensorboard", "nope", "--output", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"Error: no folder {tmp_path / 'nope'}; run `sweep run SPEC` first\n"


def test_tensorboard_offers_the_sweep_it_has(tmp_path, capsys):
    for name in ("fashion-activations", "mnist-depth"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "settings.json").write_text("{}")
    (tmp_path / "plots").mkdir()  # not a sweep's folder
    assert main(["tensorboard", "fashion-activation", "--output", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"Error: no sweep named 'fashion-activation' in {tmp_path}; it has: "
                                       "fashion-activations, mnist-depth; did you mean 'fashion-activations'?\n")


def test_help_lists_the_commands_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "{run,report,plot,page,tensorboard}" in out and "sweep run sweeps.yaml" in out


def _spec(tmp_path, **extra):
    import yaml

    spec = {"name": "t", "dataset": "synthetic", "grid": {"activation": ["relu"], "optimizer": [{"name": "adam", "lr": 0.01}]},
            **extra}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    return str(tmp_path / "s.yaml")


def test_run_refuses_an_unwritable_output_folder_before_training(tmp_path, capsys):
    (tmp_path / "plain-file").write_text("")
    assert main(["run", _spec(tmp_path, output=str(tmp_path / "plain-file" / "runs"))]) == 1
    assert capsys.readouterr().err == (f"Error: output folder {tmp_path / 'plain-file' / 'runs' / 't'} cannot be "
                                       f"made: {tmp_path / 'plain-file'} is not a folder\n")


def test_run_refuses_a_database_of_another_schema_version_before_training(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'runs' / 'sweep.db'}")
    init_db(engine)
    from sweep.db.schema import SCHEMA_VERSION, SchemaInfo

    with session_scope(engine) as s:
        s.get(SchemaInfo, 1).version = 99
    assert main(["run", _spec(tmp_path, output=str(tmp_path / "runs"))]) == 1
    assert capsys.readouterr().err == (f"Error: sqlite:///{tmp_path / 'runs' / 'sweep.db'} has schema version 99; "
                                       f"this sweep reads version {SCHEMA_VERSION}\n")
    assert not (tmp_path / "runs" / "t" / "relu-default-adam-lr0.01-s0").exists()


# The program itself, as a shell runs it: main(), then out without the interpreter's teardown.
PROGRAM = [sys.executable, "-m", "sweep.cli"]


def test_the_program_exits_with_main_s_status_and_runs_every_atexit_handler(recorded_db, tmp_path):
    # An atexit handler registered before the program starts (as logging's is), its output unflushed.
    code = ("import atexit, sys; atexit.register(lambda: print('handler ran')); from sweep.cli import program; "
            "sys.argv = ['sweep', *sys.argv[1:]]; program()")
    db = str(recorded_db / "sweep.db")
    cases = {  # arguments: (status, what stdout starts with, stderr)
        ("report", "--db", db, "--format", "csv"): (0, "rank,config,", ""),
        ("report", "--db", str(tmp_path / "none.db")): (
            1, "", f"Error: no database at {tmp_path / 'none.db'}; run `sweep run SPEC` first, or pass --spec SPEC or --db URL\n"),
        ("--help",): (0, "usage: sweep", ""),
    }
    for args, (status, out, err) in cases.items():
        done = subprocess.run([sys.executable, "-c", code, *args], env=ENV, capture_output=True, text=True,
                              timeout=120)
        assert (done.returncode, done.stderr) == (status, err), args
        assert done.stdout.startswith(out) and done.stdout.endswith("handler ran\n"), args
    # Its database connections closed on the way out: SQLite's WAL folded back into the file and removed.
    copy = tmp_path / "copy"
    copy.mkdir()
    with sqlite3.connect(recorded_db / "sweep.db") as source, sqlite3.connect(copy / "sweep.db") as target:
        source.backup(target)  # the fixture's rows, some still in its WAL
    done = subprocess.run([*PROGRAM, "report", "--db", str(copy / "sweep.db")], env=ENV, capture_output=True,
                          timeout=120)
    assert done.returncode == 0 and sorted(p.name for p in copy.iterdir()) == ["sweep.db"]
    bad = subprocess.run([*PROGRAM, "report", "--bogus"], env=ENV, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr == "Error: sweep: unrecognized arguments: --bogus; see sweep --help\n"
    # A command's own error, under `python -m sweep.cli` (where the module runs as __main__): its one line.
    missing = subprocess.run([*PROGRAM, "report", "--db", str(tmp_path / "none.db")], env=ENV, capture_output=True,
                             text=True, timeout=120)
    assert (missing.returncode, missing.stderr) == (1, f"Error: no database at {tmp_path / 'none.db'}; run `sweep "
                                                       "run SPEC` first, or pass --spec SPEC or --db URL\n")


def test_a_reader_gone_ends_the_program_quietly(recorded_db):
    read, write = os.pipe()
    os.close(read)  # the reader left before the first line (`sweep report | head -0`)
    try:
        done = subprocess.run([*PROGRAM, "report", "--db", str(recorded_db / "sweep.db")], env=ENV,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, "")  # no BrokenPipeError traceback


def test_the_program_collects_no_garbage_but_a_sweep_s_driver_does(recorded_db, tmp_path):
    # What the command sees of the collector: off for a report (its imports' objects live until the end),
    # back on for `sweep run`, whose driver lives as long as the sweep.
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ndataset: synthetic\ngrid: {activation: [relu], optimizer: [{name: sgd, lr: 0.1}]}\n")
    program = "from sweep.cli import program\nsys.argv = ['sweep', *sys.argv[1:]]; program()\n"
    report = ("import gc, sys\n"
              "import sweep.analysis.render as report\n"
              "format_report = report.format_report\n"
              "def formatted(*args, **options):\n"
              "    print('report', gc.isenabled()); return format_report(*args, **options)\n"
              "report.format_report = formatted\n" + program)
    run = ("import gc, sys\n"
           "import sweep.run.runner as runner\n"
           "def run_sweep(spec, **options):\n"
           "    print('run', gc.isenabled()); raise runner.RunError('stopped by the test')\n"
           "runner.run_sweep = run_sweep\n" + program)
    done = subprocess.run([sys.executable, "-c", report, "report", "--db", str(recorded_db / "sweep.db"),
                           "--format", "csv"], env=ENV, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.splitlines()[0]) == (0, "report False")
    done = subprocess.run([sys.executable, "-c", run, "run", str(spec)], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (1, "run True\n", "Error: stopped by the test\n")


def _help(capsys, *command) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width


def test_help_says_what_the_readme_says(capsys, monkeypatch):
    """Every option docs/commands.md's command and report-option tables name is in that command's --help, with
    the defaults and forms the page gives, and every option a command's --help lists is on the page."""
    import re
    from pathlib import Path

    monkeypatch.setenv("COLUMNS", "200")
    page = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `sweep ")]
    named = {}
    for row in rows:
        command = row.split("`")[1].split()[1]
        named.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", row.split(" | ")[0]))
    options_table = page.split("`sweep report` options:")[1].split("\n\n")[1]
    named["report"].update(option for pair in re.findall(r"^\| `(--[a-z][a-z-]*)[` ]|, `(--[a-z][a-z-]*)`", options_table,
                                                          flags=re.M) for option in pair if option)
    assert {"run", "report", "plot", "tensorboard"} <= set(named) and "--threshold" in named["report"]
    for command, options in named.items():
        text = _help(capsys, command)
        assert all(option in text for option in options), (command, sorted(o for o in options if o not in text))
        listed = {a or b for a, b in re.findall(r"\[(--[a-z][a-z-]*)|\| (--[a-z][a-z-]*)", text)}  # the usage line
        assert listed <= options, (command, "not on docs/commands.md:", sorted(listed - options))
    run = _help(capsys, "run")
    assert "--address HOST:PORT|auto" in run and "ray://" not in run
    tensorboard = _help(capsys, "tensorboard")
    assert "--host HOST address to listen on (default 127.0.0.1" in tensorboard
    assert "--port PORT port (default 6006)" in tensorboard
    assert "(default activation,init)" in _help(capsys, "plot")
    report = _help(capsys, "report")
    assert "--by FACTOR[,FACTOR...]" in report and "momentum" in report
