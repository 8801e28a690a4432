"""What a study found (sweep.analysis.findings, `sweep report --findings`, the top of `sweep page`): paired effects and
their Bonferroni-corrected Student t intervals on hand-made result tables, each against an independent
computation with numpy and scipy.stats (an interaction, a reversal under tuning, a missing pair, a stopped
configuration); the fixed setting; the `flat` rule; the CLI's exact lines at 80 and 100 columns; the page's
section in Chromium."""
from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweep.cli import main
from sweep.analysis.findings import (ALPHA, TORCH_DEFAULTS, Effect, Interval, Split, _label, fixed_settings, _trials,
                            study_findings)
from test_report_db import build

# ------------------------------------------------------------------ hand-made result tables


def results_table(values: dict, unfinished=(), stopped=(), val: dict | None = None) -> pd.DataFrame:
    """Result rows as sweep.analysis.results.sweep_results makes them, from {(activation, init, optimizer, lr, seed):
    final_test_acc}; `val`: the same keys' final_val_acc; keys in `unfinished` still running, in `stopped`
    stopped early (as sweep_results marks every seed of a configuration some of whose seeds stopped)."""
    rows = []
    for (act, init, opt, lr, seed), acc in values.items():
        key = (act, init, opt, lr, seed)
        done = key not in unfinished and key not in stopped
        rows.append({"name": f"{act}-{init}-{opt}-lr{lr:g}-s{seed}", "label": f"{act}-{init}-{opt}-lr{lr:g}",
                     "activation": act, "init": init, "gain": 1, "gain_value": 1.0, "optimizer": opt, "lr": lr,
                     "seed": seed, "model": "lenet", "optimizer_params_json": "{}",
                     "status": "completed" if done else "stopped" if key in stopped else "running",
                     "finished": done, "stopped_early": key in stopped, "final_test_acc": acc,
                     "final_val_acc": (val or {}).get(key, acc), "epochs": 3 if done else 1})
    return pd.DataFrame(rows)


def t_interval(d, m: int, df: int | None = None, se: float | None = None):
    """The mean of differences `d` with its two-sided interval at the Bonferroni level for m intervals
    (scipy.stats.t), over the pairs unless a pooled `se` and `df` are given."""
    d = np.asarray(d, dtype=float)
    df = len(d) - 1 if df is None else df
    se = d.std(ddof=1) / np.sqrt(len(d)) if se is None else se
    half = stats.t.ppf(1 - ALPHA / (2 * m), df) * se
    return d.mean(), d.mean() - half, d.mean() + half


def assert_interval(interval: Interval, expected, pairs: int, left_out: int = 0):
    mean, low, high = expected
    assert (interval.mean, interval.low, interval.high) == pytest.approx((mean, low, high), rel=1e-9, abs=1e-12)
    assert (interval.pairs, interval.left_out) == (pairs, left_out)


def effects(found) -> list:
    return [f for f in found.findings if isinstance(f, (Effect, Split))]


# Noise per (optimizer, init, seed), fixed: the differences' spreads are not zero.
NOISE = dict(zip([(o, i, s) for o in ("sgd", "adam") for i in ("default", "xavier") for s in range(4)],
                 np.random.default_rng(7).normal(0, 0.01, 16)))
BASE = {("sgd", "default"): 0.50, ("sgd", "xavier"): 0.70, ("adam", "default"): 0.80, ("adam", "xavier"): 0.80}


def test_paired_effects_and_an_interaction_match_scipy():
    """Xavier lifts SGD by 0.2 and Adam by nothing: overall +0.1 (unresolved at 4 seeds), and the split by
    optimizer shows it (+ with SGD, 0 with Adam); Adam over SGD +0.3 and +0.1 under each init, both +, so
    that effect is not split. Bonferroni: 1 view x (2 effects + the split's 2 cells) = 4 intervals."""
    values = {("relu", i, o, 0.01, s): BASE[o, i] + NOISE[o, i, s] for o in ("sgd", "adam")
              for i in ("default", "xavier") for s in range(4)}
    found = study_findings(results_table(values), "final_test_acc")
    v = {(o, i, s): values["relu", i, o, 0.01, s] for o in ("sgd", "adam") for i in ("default", "xavier")
         for s in range(4)}
    m = 4
    opt = [v["adam", i, s] - v["sgd", i, s] for i in ("default", "xavier") for s in range(4)]
    init = {o: [v[o, "xavier", s] - v[o, "default", s] for s in range(4)] for o in ("sgd", "adam")}
    pooled = np.sqrt(sum(((np.array(d) - np.mean(d)) ** 2).sum() for d in init.values()) / (8 - 2))

    first, second, split = effects(found)
    assert (first.factor, first.level, first.versus, first.label) == ("optimizer", "adam", "sgd", "resolved")
    assert_interval(first.fixed, t_interval(opt, m), 8)
    assert (second.factor, second.level, second.versus, second.label) == ("init", "xavier", "default", "unresolved")
    assert_interval(second.fixed, t_interval(init["sgd"] + init["adam"], m), 8)
    assert first.tuned is None and second.tuned is None
    assert (split.factor, split.by, [c.at for c in split.cells]) == ("init", "optimizer", ["sgd", "adam"])
    for cell in split.cells:
        assert_interval(cell.fixed, t_interval(init[cell.at], m, df=6, se=pooled / 2), 4)
    assert [c.fixed.sign for c in split.cells] == [1, 0]
    assert found.intervals == m and found.level == pytest.approx(1 - ALPHA / m)
    # The seeds that would resolve Xavier's +0.1 at this spread: 2 pairs per seed.
    d = np.array(init["sgd"] + init["adam"])
    k = next(k for k in range(5, 1000) if stats.t.ppf(1 - ALPHA / (2 * m), 2 * k - 1) * d.std(ddof=1)
             / np.sqrt(2 * k) < abs(d.mean()))
    assert second.seeds_to_resolve == k
    assert second.text == (f"init: xavier over default {d.mean():+.3f} [{t_interval(d, m)[1]:+.3f}, "
                           f"{t_interval(d, m)[2]:+.3f}] (8 pairs): unresolved; about {k} seeds would resolve it at "
                           "this spread")
    table = found.table()
    assert table["finding"].tolist() == [1, 2, 3, 3]
    assert table["kind"].tolist() == ["effect", "effect", "split", "split"]


def _tuned_values():
    """Adam at lr 0.01 (the first listed, the fixed setting) trains worse than SGD there, at lr 0.1 (its best
    on validation) better: SGD over Adam at the fixed lr, Adam over SGD tuned. Validation favours lr 0.1 for
    Adam and 0.01 for SGD; test figures differ from validation, so that a choice read on the wrong one shows."""
    rng = np.random.default_rng(3)
    test, val = {}, {}
    level = {("sgd", 0.01): (0.80, 0.81), ("sgd", 0.1): (0.70, 0.72), ("adam", 0.01): (0.60, 0.62),
             ("adam", 0.1): (0.90, 0.88)}
    for act in ("relu", "tanh"):
        for (opt, lr), (t, v) in level.items():
            for seed in range(3):
                noise = rng.normal(0, 0.01)
                test[act, "default", opt, lr, seed] = t + noise + (0.2 if act == "tanh" else 0)
                val[act, "default", opt, lr, seed] = v + noise
    return test, val


SPEC = {"grid": {"optimizer": [{"name": "sgd", "params": [["lr", [0.01, 0.1]]], "ranges": []},
                               {"name": "adam", "params": [["lr", [0.01, 0.1]]], "ranges": []}]}}


def test_an_effect_that_reverses_under_tuning():
    test, val = _tuned_values()
    found = study_findings(results_table(test, val=val), "final_val_acc", ["lr"], {}, SPEC)
    frame = pd.DataFrame([(*k, t, val[k]) for k, t in test.items()],
                         columns=["act", "init", "opt", "lr", "seed", "test", "val"])
    chosen = frame.groupby(["act", "opt", "lr"])["val"].mean().groupby(["act", "opt"]).idxmax()
    best = frame[frame.set_index(["act", "opt", "lr"]).index.isin(chosen.tolist())].set_index(["act", "opt", "seed"])
    fixed = frame[frame["lr"] == 0.01].set_index(["act", "opt", "seed"])
    m = 2 * 2  # two views x two effects; no split (each effect has one sign in every cell)
    keys = [(a, s) for a in ("relu", "tanh") for s in range(3)]
    at_fixed = [fixed.loc[(a, "adam", s), "test"] - fixed.loc[(a, "sgd", s), "test"] for a, s in keys]
    at_best = [best.loc[(a, "adam", s), "test"] - best.loc[(a, "sgd", s), "test"] for a, s in keys]

    opt = next(e for e in effects(found) if e.factor == "optimizer")
    assert (opt.level, opt.versus, opt.label) == ("adam", "sgd", "reverses")
    assert_interval(opt.fixed, t_interval(at_fixed, m), 6)
    assert_interval(opt.tuned, t_interval(at_best, m), 6)
    act = next(e for e in effects(found) if e.factor == "activation")
    tanh = [best.loc[("tanh", o, s), "test"] - best.loc[("relu", o, s), "test"] for o in ("sgd", "adam")
            for s in range(3)]
    assert (act.level, act.versus) == ("tanh", "relu")
    assert_interval(act.tuned, t_interval(tanh, m), 6)
    assert found.intervals == m and not any(isinstance(f, Split) for f in found.findings)
    assert "at the fixed lr" in opt.text and opt.text.endswith("each at its best lr (6 pairs): reverses")


def test_a_pair_with_a_missing_side_is_left_out_and_counted():
    """Adam's seed 2 still runs (its 0.99 is no result), SGD's seed 3 never ran: 2 of 4 pairs remain."""
    values = {("relu", "default", o, 0.01, s): a + 0.01 * s * (o == "adam") for o, a in (("sgd", 0.5), ("adam", 0.8))
              for s in range(4) if (o, s) != ("sgd", 3)}
    values["relu", "default", "adam", 0.01, 2] = 0.99
    found = study_findings(results_table(values, unfinished={("relu", "default", "adam", 0.01, 2)}), "final_test_acc")
    effect, = effects(found)
    assert_interval(effect.fixed, t_interval([0.8 - 0.5, 0.81 - 0.5], 1), 2, left_out=2)
    assert effect.text.startswith("optimizer: adam over sgd +0.305 [") and "(2 pairs, 2 left out)" in effect.text


@pytest.mark.parametrize("fixed, tuned, label", [
    ((0.5, 0.4, 0.6), (0.45, 0.35, 0.55), "holds"), ((0.5, 0.4, 0.6), (0.05, 0.01, 0.09), "shrinks"),
    ((0.05, 0.01, 0.09), (0.5, 0.4, 0.6), "grows"), ((0.0, -0.1, 0.1), (0.3, 0.2, 0.4), "grows"),
    ((0.5, 0.4, 0.6), (0.05, -0.01, 0.11), "vanishes"), ((-0.2, -0.3, -0.1), (0.1, 0.05, 0.15), "reverses"),
    ((0.01, -0.1, 0.12), (0.02, -0.01, 0.05), "unresolved")])
def test_the_labels_say_what_tuning_does_to_an_effect(fixed, tuned, label):
    assert _label(Interval(*fixed, 4, 0), Interval(*tuned, 4, 0)) == label


def test_the_fixed_setting_is_the_first_listed_or_the_value_tried_nearest_torch_s_default_on_the_log_scale():
    """sweeps-tuned.yaml's rates: SGD's nearest 1e-3 is 0.00144, Adam's 0.000795; RMSprop's default 0.01 is
    nearer 0.03 than 0.002 on the log scale (a factor of 3 against 5), not on a linear one; a listed lr: its
    first value, though 0.001 is tried too."""
    sgd, adam = [0.00144, 0.00963, 0.0795, 0.174, 1.34, 8.94], [1.44e-05, 9.63e-05, 0.000795, 0.00174, 0.0134, 0.0894]

    def log_range(low, high):
        return [{"key": "lr", "kind": "log_uniform", "low": low, "high": high}]

    spec = {"grid": {"optimizer": [{"name": "sgd", "params": [], "ranges": log_range(1e-3, 10.0)},
                                   {"name": "adam", "params": [], "ranges": log_range(1e-5, 0.1)},
                                   {"name": "rmsprop", "params": [], "ranges": log_range(1e-3, 0.1)},
                                   {"name": "adamw", "params": [["lr", [0.1, 0.01, 0.001]]], "ranges": []}]}}
    tried = {"sgd": sgd, "adam": adam, "rmsprop": [0.002, 0.03], "adamw": [0.001, 0.01, 0.1]}
    values = {("relu", "default", o, lr, 0): 0.5 for o, lrs in tried.items() for lr in lrs}
    trials = _trials(results_table(values), ["optimizer"], ["lr"], "final_test_acc")
    chosen, sources = fixed_settings(trials, ["optimizer"], ["lr"], spec)
    assert chosen == {("sgd",): (0.00144,), ("adam",): (0.000795,), ("rmsprop",): (0.03,), ("adamw",): (0.1,)}
    assert sources == {"default", "listed"}


def test_torch_defaults_are_torch_s():
    import torch

    names = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
             "rmsprop": torch.optim.RMSprop}
    for name, cls in names.items():
        signature = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        betas = dict(zip(("beta1", "beta2"), signature.pop("betas", (None, None))))
        assert TORCH_DEFAULTS[name] == {k: ({**signature, **betas})[k] for k in TORCH_DEFAULTS[name]}, name


# ------------------------------------------------------------------ the flat rule


def test_settings_that_tie_are_flat_not_at_an_edge():
    """Sigmoid + SGD at 0.1000 at lr 0.001, 0.03, 0.1 and 0.3, as a new user would try it: chosen 0.001 by the
    tie, at the edge of what was tried, and flagged `flat`, not `edge lr`; ReLU's best at the edge stays
    `edge lr`. With seeds, a spread within the widest interval of a setting's mean ties too."""
    from sweep.analysis.tuning import settings_tie, tuned_view

    lrs = [0.001, 0.03, 0.1, 0.3]
    values = {**{("sigmoid", "default", "sgd", lr, 0): 0.1 for lr in lrs},
              **{("relu", "default", "sgd", lr, 0): a for lr, a in zip(lrs, (0.6, 0.7, 0.8, 0.85))}}
    table = tuned_view(results_table(values), "final_test_acc", ["lr"], True)
    assert table[["activation", "lr", "edge"]].values.tolist() == [["relu", 0.3, "edge lr"],
                                                                   ["sigmoid", 0.001, "flat"]]
    assert settings_tie([[0.80, 0.82], [0.84, 0.86]])  # 0.04 apart, each mean's interval +-0.127
    assert not settings_tie([[0.80, 0.801], [0.84, 0.841]])  # +-0.0064: 0.04 is beyond it
    assert not settings_tie([[0.1], [0.1001]]) and settings_tie([[0.1], [0.10004]])


# ------------------------------------------------------------------ through the database and the CLI

# Test and validation accuracy after epochs 0, 1, 2 (both seeds alike but for a seed's offset): sigmoid + SGD at
# chance at both of its rates; the others learn, Adam better than SGD, tuned or not.
FOUND_SPEC = {"name": "found", "dataset": {"name": "synthetic", "validation": 64}, "epochs": 2, "tune": ["lr"],
              "grid": {"activation": ["relu", "sigmoid"],
                       "optimizer": [{"name": "sgd", "lr": [0.01, 0.1]}, {"name": "adam", "lr": [0.001, 0.01]}],
                       "seed": [0, 1]}}
FINAL = {("relu", "sgd", 0.01): 0.60, ("relu", "sgd", 0.1): 0.75, ("relu", "adam", 0.001): 0.80,
         ("relu", "adam", 0.01): 0.85, ("sigmoid", "sgd", 0.01): 0.10, ("sigmoid", "sgd", 0.1): 0.10,
         ("sigmoid", "adam", 0.001): 0.70, ("sigmoid", "adam", 0.01): 0.78}
FOUND_TRIALS = {
    f"{a}-default-{o}-lr{lr:g}-s{s}": {"accs": [0.1, 0.1 + (x - 0.1) / 2, x + 0.01 * s * (x > 0.1)],
                                       "vals": [0.1, 0.1 + (x - 0.1) / 2, x + 0.005 * s * (x > 0.1)]}
    for (a, o, lr), x in FINAL.items() for s in (0, 1)}


@pytest.fixture(scope="module")
def found_db(tmp_path_factory):
    return build(tmp_path_factory.mktemp("found"), FOUND_SPEC, FOUND_TRIALS)


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return out


@pytest.mark.parametrize("columns", [80, 100])
def test_every_line_of_the_cli_fits_the_terminal_the_titles_included(capsys, found_db, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    out = run_cli(capsys, "report", "--db", str(found_db), "--findings")
    assert all(len(line) <= columns for line in out.splitlines())
    assert out.splitlines() == EXPECTED[columns]
    # The numbers, independently: Adam (lr 0.001, its first listed) over SGD (lr 0.01) per activation and seed.
    fixed = [FINAL["relu", "adam", 0.001] - FINAL["relu", "sgd", 0.01]] * 2 + [
        FINAL["sigmoid", "adam", 0.001] + 0.01 * s - FINAL["sigmoid", "sgd", 0.01] for s in (0, 1)]
    fixed[1] += 0.01 * (FINAL["relu", "adam", 0.001] > 0.1) - 0.01 * (FINAL["relu", "sgd", 0.01] > 0.1)
    mean, low, high = t_interval(fixed, 4)
    assert f"adam over sgd {mean:+.3f} [{low:+.3f}, {high:+.3f}] at the fixed lr" in " ".join(out.split())
    ranking = run_cli(capsys, "report", "--db", str(found_db), "--tune", "none").splitlines()
    assert all(len(line) <= columns for line in ranking)
    assert ranking[:2] == RANKING_TITLE[columns]


RANKING_TITLE = {
    80: ["sweep found: 8 configurations ranked by mean final_val_acc over seeds, at 2",
         "  epochs"],
    100: ["sweep found: 8 configurations ranked by mean final_val_acc over seeds, at 2 epochs",
          "rank  activation  init     optimizer     lr  n  val mean  val std  val ci95  flags"],
}
EXPECTED = {
    80: [
        'sweep found: findings on final_test_acc (the test figure; choices on',
        '  final_val_acc): 2 activation x 2 optimizer, 2 seeds; every effect at a fixed',
        "  lr (the spec's first listed value: sgd 0.01, adam 0.001) and with each",
        '  configuration at its best lr chosen on final_val_acc; differences paired on',
        '  every other factor and seed: mean [interval], Student t, each at 98.75%',
        '  (Bonferroni: 95% over all 4 intervals), at 2 epochs',
        '1. optimizer: adam over sgd +0.402 [-0.228, +1.033] at the fixed lr, +0.393',
        '   [-0.518, +1.303] each at its best lr (4 pairs): unresolved; about 5 seeds',
        '   would resolve it at this spread',
        '2. activation: relu over sigmoid +0.303 [-0.328, +0.933] at the fixed lr, +0.362',
        '   [-0.548, +1.273] each at its best lr (4 pairs): unresolved; about 5 seeds',
        '   would resolve it at this spread',
        '3. sigmoid + sgd: at chance at both lr tried, 0.01 and 0.1 (flat: no lr tried',
        '   does better)',
    ],
    100: [
        'sweep found: findings on final_test_acc (the test figure; choices on final_val_acc): 2 activation x',
        "  2 optimizer, 2 seeds; every effect at a fixed lr (the spec's first listed value: sgd 0.01, adam",
        '  0.001) and with each configuration at its best lr chosen on final_val_acc; differences paired on',
        '  every other factor and seed: mean [interval], Student t, each at 98.75% (Bonferroni: 95% over all',
        '  4 intervals), at 2 epochs',
        '1. optimizer: adam over sgd +0.402 [-0.228, +1.033] at the fixed lr, +0.393 [-0.518, +1.303] each at',
        '   its best lr (4 pairs): unresolved; about 5 seeds would resolve it at this spread',
        '2. activation: relu over sigmoid +0.303 [-0.328, +0.933] at the fixed lr, +0.362 [-0.548, +1.273]',
        '   each at its best lr (4 pairs): unresolved; about 5 seeds would resolve it at this spread',
        '3. sigmoid + sgd: at chance at both lr tried, 0.01 and 0.1 (flat: no lr tried does better)',
    ],
}


def test_a_stopped_configuration_is_left_out_of_the_effects_and_its_flags_count(tmp_path, capsys):
    """tanh's seed 0 stopped after epoch 1 at chance, its seed 1 finished at chance: the configuration is
    stopped (sweep_results reads both seeds at epoch 1), so its pairs with relu are left out, counted; its
    flags count as the ranking's do: at chance, both seeds."""
    spec = {"name": "halt", "dataset": "synthetic", "epochs": 2,
            "grid": {"activation": ["relu", "tanh", "sigmoid"], "optimizer": [{"name": "adam", "lr": 0.01}],
                     "seed": [0, 1]}}
    trials = {"relu-default-adam-lr0.01-s0": {"accs": [0.1, 0.5, 0.6]},
              "relu-default-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.64]},
              "sigmoid-default-adam-lr0.01-s0": {"accs": [0.1, 0.3, 0.4]},
              "sigmoid-default-adam-lr0.01-s1": {"accs": [0.1, 0.3, 0.42]},
              "tanh-default-adam-lr0.01-s0": {"accs": [0.1, 0.1], "status": "stopped",
                                               "error": "stopped@1 chance"},
              "tanh-default-adam-lr0.01-s1": {"accs": [0.1, 0.1, 0.1]}}
    db = build(tmp_path, spec, trials)
    rows = json.loads(run_cli(capsys, "report", "--db", str(db), "--findings", "--format", "json"))
    effects_ = [r for r in rows if r["kind"] == "effect"]
    assert [(r["level"], r["versus"], r["fixed_pairs"], r["fixed_left_out"]) for r in effects_] == [
        ("relu", "sigmoid", 2, 0), ("relu", "tanh", 0, 2), ("tanh", "sigmoid", 0, 2)]
    mean, low, high = t_interval([0.6 - 0.4, 0.64 - 0.42], 3)
    assert (effects_[0]["fixed_mean"], effects_[0]["fixed_low"], effects_[0]["fixed_high"]) == pytest.approx(
        (mean, low, high), rel=1e-9)
    pathology, = [r for r in rows if r["kind"] == "pathology"]
    assert (pathology["config"], pathology["flags"], pathology["seeds_flagged"], pathology["seeds_read"]) == (
        "tanh", "chance", 2, 2)
    assert pathology["text"] == "tanh: at chance"
    title = run_cli(capsys, "report", "--db", str(db), "--findings")
    assert "1 trial stopped early, 2 trials of their configurations not pooled" in " ".join(title.split())


def test_the_page_states_the_report_s_findings_at_its_top(found_db, capsys):
    """The page's first section, read in Chromium: each finding's words and numbers as `sweep report
    --findings --format json` gives them."""
    from chromium import Chromium

    rows = json.loads(run_cli(capsys, "report", "--db", str(found_db), "--findings", "--format", "json"))
    assert main(["page", "--db", str(found_db)]) == 0
    page = capsys.readouterr().out.strip()  # its progress went to stderr
    with Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        shown = browser.evaluate("(() => { const s = document.querySelector('section'); return [s.id, "
                                 "s.querySelector('h2').textContent, Array.from(s.querySelectorAll('li'))"
                                 ".map(li => [li.value, li.textContent])]; })()")
    assert shown[:2] == ["findings", "What this study found"]
    texts = list(dict.fromkeys((r["finding"], r["text"]) for r in rows))
    assert [tuple(x) for x in shown[2]] == texts
    effect = next(r for r in rows if r["kind"] == "effect" and r["factor"] == "optimizer")
    numbers = [float(x) for x in re.findall(r"[+-]\d+\.\d+", dict(texts)[effect["finding"]])]
    assert numbers[:6] == [round(effect[k], 3) for k in ("fixed_mean", "fixed_low", "fixed_high", "tuned_mean",
                                                            "tuned_low", "tuned_high")]


@pytest.mark.parametrize("args, clash", [(["--by", "activation"], "--by"), (["--trials"], "--trials"),
                                         (["--wide"], "--wide"),
                                         (["--columns", "text"], "--columns (csv and json take --columns)")])
def test_findings_refuse_a_table_s_options_in_one_line(capsys, found_db, args, clash):
    assert main(["report", "--db", str(found_db), "--findings", *args]) == 2
    assert capsys.readouterr() == ("", f"Error: --findings compares every factor in sentences: not with {clash}\n")


def test_top_keeps_the_first_findings_whole(capsys, tmp_path):
    """Test 1's sweep through the database: --top 3 keeps the two effects and both cells of the split."""
    spec = {"name": "top", "dataset": "synthetic", "epochs": 1,
            "grid": {"activation": ["relu"], "init": ["default", "xavier_uniform"],
                     "optimizer": [{"name": "sgd", "lr": 0.01}, {"name": "adam", "lr": 0.01}], "seed": [0, 1, 2, 3]}}
    trials = {f"relu-{i}-{o}-lr0.01-s{s}": {"accs": [0.1, BASE[o, i.split("_")[0]] + NOISE[o, i.split("_")[0], s]]}
              for o in ("sgd", "adam") for i in ("default", "xavier_uniform") for s in range(4)}
    db = build(tmp_path, spec, trials)
    rows = json.loads(run_cli(capsys, "report", "--db", str(db), "--findings", "--top", "3", "--format", "json"))
    assert [(r["finding"], r["kind"], r["factor"], r["by"], r["at"]) for r in rows] == [
        (1, "effect", "optimizer", None, None), (2, "effect", "init", None, None),
        (3, "split", "init", "optimizer", "sgd"), (3, "split", "init", "optimizer", "adam")]
