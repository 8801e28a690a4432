"""sweep report's factor views and sweep plot, on a real recorded database."""
import csv
import io
import json

import matplotlib.image
import pytest

from sweep.db import epoch_metrics_frame, make_engine, trials_frame
from sweep.db.flags import flags_frame
from sweep.cli import main


def report(capsys, recorded_db, *args):
    code = main(["report", "--db", f"sqlite:///{recorded_db / 'sweep.db'}", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def frames(recorded_db):
    engine = make_engine(f"sqlite:///{recorded_db / 'sweep.db'}")
    return trials_frame(engine, "rec"), epoch_metrics_frame(engine, "rec"), flags_frame(engine, "rec")


def test_configurations_aggregate_two_seeds_with_an_interval(capsys, recorded_db):
    trials, _, _ = frames(recorded_db)
    code, out, _ = report(capsys, recorded_db, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 4 and all(r["n"] == 2 for r in rows)
    best = rows[0]
    accs = trials[trials["label"] == best["config"]]["final_test_acc"]
    assert best["final_test_acc_mean"] == pytest.approx(accs.mean())
    assert best["final_test_acc_ci95"] == pytest.approx(12.7062047 * accs.std(ddof=1) / 2 ** 0.5)
    assert [r["final_test_acc_mean"] for r in rows] == sorted((r["final_test_acc_mean"] for r in rows), reverse=True)


def test_trial_figures_recomputed_from_epochs_match_what_the_recorder_stored(capsys, recorded_db):
    trials, _, _ = frames(recorded_db)
    code, out, _ = report(capsys, recorded_db, "--trials", "--format", "json")
    shown = {r["trial"]: r for r in json.loads(out)}
    assert code == 0 and len(shown) == 8
    for t in trials.itertuples():
        assert (shown[t.name]["final_test_acc"], shown[t.name]["best_test_acc"], shown[t.name]["best_epoch"],
                shown[t.name]["final_test_loss"], shown[t.name]["epochs"], shown[t.name]["status"]) == (
            t.final_test_acc, t.best_test_acc, t.best_epoch, t.final_test_loss, 3, "completed")


def test_by_one_factor_and_by_two(capsys, recorded_db):
    trials, _, _ = frames(recorded_db)
    code, out, _ = report(capsys, recorded_db, "--by", "optimizer", "--format", "csv")
    assert code == 0
    rows = {r["optimizer"]: r for r in csv.DictReader(io.StringIO(out))}
    for name in ("sgd", "adam"):
        expected = trials[trials["optimizer"] == name]["final_test_acc"].mean()
        assert float(rows[name]["final_test_acc_mean"]) == pytest.approx(expected)
        assert rows[name]["n"] == "4"
    code, out, _ = report(capsys, recorded_db, "--by", "activation,optimizer", "--format", "csv")
    pairs = {(r["activation"], r["optimizer"]): r for r in csv.DictReader(io.StringIO(out))}
    assert len(pairs) == 4
    cell = trials[(trials["activation"] == "relu") & (trials["optimizer"] == "adam")]["final_test_acc"]
    assert float(pairs["relu", "adam"]["final_test_acc_mean"]) == pytest.approx(cell.mean())
    assert pairs["relu", "adam"]["n"] == "2"
    assert float(pairs["relu", "adam"]["final_test_acc_ci95"]) == pytest.approx(
        12.7062047 * cell.std(ddof=1) / 2 ** 0.5)
    code, out, _ = report(capsys, recorded_db, "--by", "activation,optimizer", "--format", "markdown")
    assert out.splitlines()[0] == "| activation | sgd | adam |"  # a matrix for people
    relu = next(line for line in out.splitlines() if line.startswith("| relu |"))
    assert relu.strip("| ").split(" | ")[2] == f"{cell.mean():.4f}"


def test_where_top_threshold_and_trials(capsys, recorded_db):
    _, epochs, _ = frames(recorded_db)
    code, out, _ = report(capsys, recorded_db, "--where", "optimizer=adam", "--where", "activation=relu",
                          "--threshold", "0.5", "--trials", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["trial"] for r in sorted(rows, key=lambda r: r["seed"])] == [
        "relu-xavier_uniform-adam-lr0.01-s0", "relu-xavier_uniform-adam-lr0.01-s1"]
    for r in rows:
        mine = epochs[(epochs["trial"] == r["trial"]) & (epochs["test_acc"] >= 0.5)]
        expected = mine["images_seen"].min() if len(mine) else None
        assert r["images_to_threshold"] == expected
    code, out, _ = report(capsys, recorded_db, "--top", "1", "--format", "csv")
    assert len(out.splitlines()) == 2


def test_flags_column_matches_flags_frame(capsys, recorded_db):
    _, _, flags = frames(recorded_db)
    code, out, _ = report(capsys, recorded_db, "--trials", "--format", "json")
    shown = {r["trial"]: r["flags"] for r in json.loads(out)}
    for trial, group in flags.groupby("trial"):
        for flag in group["flag"]:
            assert flag in shown[trial]
    flagged = set(flags["trial"])
    assert all(shown[t] == "" for t in shown if t not in flagged)


@pytest.mark.parametrize("args, message", [
    (["--where", "colour=red"], "--where colour=red: 'colour' is not a factor of this sweep; factors: activation, "
                                "init, gain, optimizer, lr, seed, model, status"),
    (["--where", "colour"], "--where 'colour': expected KEY=VALUE, a factor and its value (e.g. optimizer=adam, "
                            "momentum=0.9)"),
    (["--by", "activation,int"], "--by 'activation,int': 'int' is not a factor of this sweep; factors: activation, "
                                 "init, gain, optimizer, lr, seed, model, status; did you mean 'init'?"),
    (["--by", "activation,"], "--by 'activation,': one or more factors, comma-separated (e.g. activation,init)"),
    (["--metric", "images_to_threshold"], "--metric images_to_threshold needs --threshold ACC (e.g. 0.7)"),
])
def test_bad_report_options(capsys, recorded_db, args, message):
    code, _, err = report(capsys, recorded_db, *args)
    assert code == 2 and err == f"Error: {message}\n"


DYNAMICS_SIZE = (677, 829, 4)


def test_plot_writes_real_images_of_the_expected_size(capsys, recorded_db, tmp_path):
    code = main(["plot", "--db", f"sqlite:///{recorded_db / 'sweep.db'}", "--out", str(tmp_path),
                 "--epochs", "1,3", "--heatmap", "activation,optimizer"])
    assert code == 0
    names = ("accuracy.png", "depth.png", "dynamics.png", "heatmap.png")
    assert capsys.readouterr().out.split() == [str(tmp_path / f) for f in names]
    sizes = {name: matplotlib.image.imread(tmp_path / name).shape for name in names}
    # Heights fixed by the panels; widths: the panels' plus the legend beside them, measured by plot.py.
    # dynamics.png: 2 activations x 2 optimizers, a cell of two panels each, and the legend.
    assert sizes == {"accuracy.png": (450, 1718, 4), "depth.png": (900, 1232, 4), "dynamics.png": DYNAMICS_SIZE,
                     "heatmap.png": (600, 800, 4)}
    # Not blank: many distinct colours in each picture.
    for name in sizes:
        pixels = matplotlib.image.imread(tmp_path / name).reshape(-1, 4)
        assert len({tuple(p) for p in pixels[:: max(1, len(pixels) // 20000)]}) > 50


def test_plot_of_a_sweep_with_nothing_finished_says_so_instead_of_a_heat_map(capsys, tmp_path):
    """Every trial has statistics but none has finished the sweep's epochs: the curves, depth profiles and
    dynamics are drawn, the heat map is not, and one line on stderr says why (no matplotlib warning)."""
    from test_plot import STUDY, build_study

    engine, _ = build_study(tmp_path, {**STUDY, "epochs": 5})
    engine.dispose()
    assert main(["plot", "--db", str(tmp_path / "sweep.db"), "--out", str(tmp_path / "p")]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "p" / f) for f in ("accuracy.png", "depth.png", "dynamics.png")]
    assert err == ("sweep study: no heat map: no trial has finished its 5 epochs with a final_test_acc yet "
                   "(it pools finished trials, as sweep report --by does)\n")


def test_plot_stat_takes_the_layer_statistics_dynamics_frame_reads(capsys, recorded_db, tmp_path):
    from sweep.db.series import DYNAMICS_STATS
    from sweep.cli_parser import DYNAMICS_STATS as OFFERED

    assert OFFERED == DYNAMICS_STATS
    with pytest.raises(SystemExit) as exit_:
        main(["plot", "--db", str(recorded_db / "sweep.db"), "--out", str(tmp_path), "--stat", "median"])
    assert exit_.value.code == 2 and not (tmp_path / "dynamics.png").exists()
    assert capsys.readouterr().err == ("Error: sweep plot: argument --stat: invalid choice: 'median' (choose from "
                                       "'mean', 'std', 'p98', 'zero_frac', 'dead_frac', 'sat_frac'); see sweep "
                                       "plot --help\n")
    assert main(["plot", "--db", str(recorded_db / "sweep.db"), "--out", str(tmp_path), "--stat", "sat_frac"]) == 0
    assert (tmp_path / "dynamics.png").exists()


def test_plot_rejects_epochs_without_statistics(capsys, recorded_db, tmp_path):
    assert main(["plot", "--db", f"sqlite:///{recorded_db / 'sweep.db'}", "--out", str(tmp_path), "--epochs", "7"]) == 2
    assert capsys.readouterr().err == "Error: --epochs: no statistics for epoch 7; available: 1, 2, 3\n"
