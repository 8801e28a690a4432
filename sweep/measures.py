"""Every measure a trial is judged by, defined once: the pathology flags (db/flags.py) and the stop rules
(sweep/run/stopping.py) apply the same tests to the same figures, and the ranking metrics name their column
and direction here for the spec, the stop rules, the recorder and the report.

This module is a leaf: it imports the standard library only, so that a trial worker, the database layer
(sweep/db/) and the driver can all import it without pulling in numpy, torch, pandas or SQLAlchemy.

An epoch's measures (a dict, as `epoch_measures` builds it in a trial and the database's epoch row holds
it) are:

- test_acc: the epoch's test accuracy;
- max_sat_frac, max_dead_frac, grad_std_ratio: the summary of the epoch's closing statistics snapshot
  (`summarize_snapshot`);
- loss_ratio: the epoch's train loss over the test loss before training (epoch 0).

Each flag's test on one epoch's measures (`fires`), with threshold x:

- chance:    |test_acc - 1/classes| <= x
- dead:      max_dead_frac > x
- saturated: max_sat_frac > x
- vanishing: grad_std_ratio < x
- exploding: grad_std_ratio > x, or loss_ratio > x (the exploding loss: the flag names the layer "loss").
  The stop rule `exploding` fires on either, as the flag does.

A measure that is missing (None) or NaN never passes a test: a measure that does not apply (dead_frac of
tanh) never fires.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

# Chance accuracy is 1/classes: the data's (sweep.data.datasets.Arrays.num_classes), as a run found it;
# ten, the study's data sets', where a sweep's record does not say.
DEFAULT_CLASSES = 10


@dataclass(frozen=True)
class FlagThresholds:
    """The pathology flags' thresholds, and the stop rules' defaults: one definition of each."""

    saturated: float = 0.5  # share of values near an asymptote
    dead: float = 0.5  # share of dead units
    vanishing: float = 1e-2  # first/last layer gradient std ratio below this
    exploding: float = 1e2  # ... above this; and the train loss over the test loss before training
    chance_margin: float = 0.02  # accuracy within this of 1/classes
    classes: int = DEFAULT_CLASSES


DEFAULTS = FlagThresholds()

# Flag -> (the measures its test reads, its rule's threshold key in a spec's `stop:`, the FlagThresholds
# field holding its threshold). The flags a stop rule can act on, in the order a spec lists them.
FLAGS: Mapping[str, tuple[tuple[str, ...], str, str]] = {
    "chance": (("test_acc",), "margin", "chance_margin"),
    "dead": (("max_dead_frac",), "above", "dead"),
    "saturated": (("max_sat_frac",), "above", "saturated"),
    "vanishing": (("grad_std_ratio",), "below", "vanishing"),
    "exploding": (("grad_std_ratio", "loss_ratio"), "above", "exploding"),
}


def threshold_of(flag: str, thresholds: FlagThresholds = DEFAULTS) -> float:
    """The threshold `thresholds` sets for `flag`. Example: threshold_of("dead") -> 0.5"""
    return getattr(thresholds, FLAGS[flag][2])


def _number(value: Any) -> float | None:
    """A measure as a number, or None where it is missing or NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def passes(flag: str, value, threshold):
    """`flag`'s comparison of one of its measures with its threshold (for chance, of the accuracy's distance
    from 1/classes), on anything that compares: a number here, a pandas Series or an SQL column in
    db/flags.py. below: value < threshold; above: value > threshold; margin: value <= threshold."""
    how = FLAGS[flag][1]
    if how == "below":
        return value < threshold
    return value > threshold if how == "above" else value <= threshold


def fires(flag: str, measures: Mapping[str, Any], threshold: float, classes: int = DEFAULT_CLASSES) -> bool:
    """Whether one epoch's `measures` pass `flag`'s test at `threshold` (see the module doc).
    Example: fires("dead", {"max_dead_frac": 0.7}, 0.5) -> True"""
    for name in FLAGS[flag][0]:
        value = _number(measures.get(name))
        if value is not None and passes(flag, abs(value - 1.0 / classes) if flag == "chance" else value, threshold):
            return True
    return False


def epoch_flags(measures: Mapping[str, Any], thresholds: FlagThresholds = DEFAULTS) -> list[str]:
    """The flags whose test one epoch's `measures` pass, in FLAGS order."""
    return [f for f in FLAGS if fires(f, measures, threshold_of(f, thresholds), thresholds.classes)]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator as numpy divides float64 (x/0 is +-inf, 0/0 and NaN are NaN), None where
    either is missing or the result is NaN."""
    if numerator is None or denominator is None:
        return None
    a, b = float(numerator), float(denominator)
    try:
        out = a / b
    except ZeroDivisionError:
        out = math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
    return None if math.isnan(out) else out


def loss_ratio(train_loss: float | None, start_test_loss: float | None) -> float | None:
    """The exploding loss's measure: the epoch's train loss over the test loss before training. None where
    either is missing or the test loss before training is 0 (the database divides to NULL there)."""
    if start_test_loss is None or float(start_test_loss) == 0.0:
        return None
    return ratio(train_loss, start_test_loss)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def summarize_snapshot(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The flag summary of one statistics snapshot (one trial and step, rows in layer order):
    max_sat_frac and max_dead_frac, the largest over its activation layers, and grad_std_ratio,
    the first weight layer's gradient std over the last one's (of those whose std is a number, as
    pandas' first/last take them). NaN and "does not apply" are None; x/0 is infinite, as in numpy.

    The flags' thresholds compare with these (a layer passes a threshold only if the largest does),
    so a flag reads the epoch's layers only where it fires.
    Example: summarize_snapshot(rows)["grad_std_ratio"] -> 0.001
    """
    acts = [r for r in rows if r["kind"] == "activation"]

    def largest(column: str) -> float | None:
        values = [r[column] for r in acts if not _missing(r.get(column))]
        return max(values) if values else None

    stds = [r["std"] for r in rows if r["kind"] == "gradient" and not _missing(r.get("std"))]
    return {"max_sat_frac": largest("sat_frac"), "max_dead_frac": largest("dead_frac"),
            "grad_std_ratio": ratio(stds[0], stds[-1]) if stds else None}


def judged_accuracy(test_acc: float, val_acc: float | None) -> float:
    """The accuracy the stop rules read at an epoch: the validation split's where there is one (stopping on the
    test set's would be a choice made on it), else the test set's. The trial (as it trains) and a rerun
    (records.read_state, judging its recorded epochs again) both read it here."""
    return test_acc if val_acc is None else val_acc


def epoch_measures(epoch: int, test_acc: float, snapshot_rows: Sequence[Mapping[str, Any]],
                   train_loss: float | None = None, start_test_loss: float | None = None) -> dict[str, Any]:
    """One epoch's measures: its test accuracy, the summary of its closing statistics snapshot (the last
    step of `snapshot_rows`, the epoch's), as the database's epoch row holds it, and its loss ratio."""
    last = max((r["step"] for r in snapshot_rows), default=None)
    summary = summarize_snapshot([r for r in snapshot_rows if r["step"] == last]) if last is not None else {}
    return {"epoch": epoch, "test_acc": test_acc, **summary, "loss_ratio": loss_ratio(train_loss, start_test_loss)}


# --------------------------------------------------------------------------- ranking metrics

@dataclass(frozen=True)
class Metric:
    """A ranking metric: the trial's column (trials.<name>), the column of an epoch's report and epoch row
    holding its value as it stands at that epoch, and its direction."""

    column: str
    higher_is_better: bool


# The one table of ranking metrics (a spec's `metric`): name -> where it stands at an epoch, and direction.
RANKING: Mapping[str, Metric] = {
    "final_test_acc": Metric("test_acc", True),
    "best_test_acc": Metric("best_test_acc", True),
    "final_test_loss": Metric("test_loss", False),
    "final_train_loss": Metric("train_loss", False),
    # With a validation split (dataset.validation): the figures selection reads, never the test set's.
    "final_val_acc": Metric("val_acc", True),
    "best_val_acc": Metric("best_val_acc", True),
    "final_val_loss": Metric("val_loss", False),
}
# The metric a spec ranks by unless it says otherwise: on the validation split where there is one.
DEFAULT_METRIC, DEFAULT_VALIDATION_METRIC = "final_test_acc", "final_val_acc"
