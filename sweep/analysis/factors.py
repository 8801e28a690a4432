"""A sweep's factors and --where: the values each trial has of activation, init, gain, optimizer, lr, seed,
model, status and every optimizer hyper-parameter its grid sets, as the report compares and groups them, and
which trials a --where keeps."""
from __future__ import annotations

import difflib
import json
import math

import numpy as np
import pandas as pd

from sweep.status import STORED, Status


# Columns every sweep's trials have that --where may filter on and --by (and sweep plot's --heatmap) may group
# by; the optimizers' own hyper-parameters (momentum, nesterov, beta1, ...) are factors too, those a sweep's
# grid sets (sweep_factors).
FACTORS = ("activation", "init", "gain", "optimizer", "lr", "seed", "model", "status")


# What --where status= takes: the database's statuses, and unfinished: every trial with fewer epochs than the
# sweep's that neither diverged nor was stopped by a stop rule (pending, running, interrupted, failed, or
# completed when `epochs` was smaller), the trials the report leaves out of its figures. Such a completed
# trial shows as unfinished, the others keep the status that says why.
STATUSES = (*STORED, Status.UNFINISHED)


class ReportError(ValueError):
    """A report option that cannot be used; the message is one line for the user."""


def did_you_mean(value: str, allowed) -> str:
    """'; did you mean 'tanh'?' for the closest of `allowed`, or '' when none is close."""
    close = difflib.get_close_matches(value, [str(a) for a in allowed], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def shown_value(value) -> str:
    """A factor value as the report shows it: numbers as %g, booleans as true/false, a hyper-parameter the
    trial's optimizer does not set as '-'."""
    if is_missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


def hyper_parameters(trials: pd.DataFrame) -> list[str]:
    """The optimizer hyper-parameters other than lr that a sweep's trials set (the keys of their
    optimizer_params_json), sorted: grid factors like lr.

    Example: hyper_parameters(trials_frame(engine, "study")) -> ["momentum", "nesterov"]
    """
    if "optimizer_params_json" not in trials:
        return []
    return sorted({k for p in pd.unique(trials["optimizer_params_json"].dropna()) for k in json.loads(p)})


def sweep_factors(trials: pd.DataFrame) -> list[str]:
    """Every factor of a sweep's trials that --where, --by and sweep plot's --heatmap take: FACTORS, then the
    optimizer hyper-parameters its grid sets."""
    return [*FACTORS, *hyper_parameters(trials)]


def factor_key(value):
    """A factor value as --where compares it and --by groups it: numbers as numbers (gain 1 is 1.0),
    booleans as booleans, text as text, None where the trial's optimizer does not set it."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


def factor_column(trials: pd.DataFrame, factor: str) -> pd.Series:
    """Each trial's value of `factor` as --where compares it and --by groups it (see factor_key).

    Example: factor_column(results, "momentum").tolist() -> [0.9, 0.9, None, None]
    """
    return pd.Series([factor_key(v) for v in trials[factor]], index=trials.index, dtype=object)


def _wanted(key: str, text: str, present: list, listed: str):
    """The value --where KEY=TEXT asks for, as factor_key gives the trials' values (ReportError if it cannot be)."""
    if key == "gain" and text == "auto":
        return "auto"
    if key not in FACTORS and None in present and text in ("none", "-"):  # a hyper-parameter not set
        return None
    kinds = {type(v) for v in present if v is not None}
    if bool in kinds:
        if text.lower() not in ("true", "false"):
            raise ReportError(f"--where {key}={text}: {text!r} is not true or false; {listed}")
        return text.lower() == "true"
    if key in ("lr", "seed", "gain") or float in kinds:
        try:
            return float(text)
        except ValueError:
            kind = "a number or auto" if key == "gain" else "a number"
            raise ReportError(f"--where {key}={text}: {text!r} is not {kind}; {listed}") from None
    return text


def filter_trials(trials: pd.DataFrame, where: list[tuple[str, str]]) -> pd.DataFrame:
    """Keep trials whose factor KEY is one of its VALUEs, for every KEY: a KEY given more than once, or a VALUE
    listing several (seed=0,1), means any of them; different KEYs must all hold.

    KEY is one of sweep_factors(trials). Numbers compare as numbers
    (lr=1e-3 keeps lr 0.001, momentum=0.9), gain as the spec writes it
    (gain=auto), booleans as true or false (nesterov=true); momentum=none
    keeps the trials whose optimizer does not set it. A status must be one of
    STATUSES; status=unfinished keeps every trial that is neither `finished`
    nor `stopped` (results_from_figures), whatever its status: the ones the
    report leaves out of its figures. Any other VALUE must be one that some
    trial of the sweep has, else ReportError names the values there are,
    with a "did you mean". The result may be empty where no trial has every KEY's value at once.

    Example: filter_trials(results, [("optimizer", "sgd"), ("seed", "0,1")])
    """
    factors = sweep_factors(trials)
    anyof: dict[str, list[str]] = {}
    for key, value in where:
        anyof.setdefault(key, []).extend(value.split(","))
    keep = pd.Series(True, index=trials.index)
    for key, values in anyof.items():
        if key not in factors:
            raise ReportError(f"--where {key}={values[0]}: {key!r} is not a factor of this sweep; factors: "
                              f"{', '.join(factors)}{did_you_mean(key, factors)}")
        hit = pd.Series(False, index=trials.index)
        for value in values:
            hit |= _trials_with(trials, key, value)
        keep &= hit
    return trials[keep]


def _trials_with(trials: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Which trials have factor `key` at `value` (filter_trials' rules); ReportError if none of the sweep has."""
    if key == "status":
        if value not in STATUSES:
            raise ReportError(f"--where status={value}: {value!r} is not a status; allowed: "
                              f"{', '.join(STATUSES)}{did_you_mean(value, STATUSES)}")
        if value == Status.UNFINISHED:
            return ~(trials["finished"].astype(bool) | trials["stopped_early"].astype(bool))
        return trials["status"].eq(value)
    column = factor_column(trials, key)
    present = list(dict.fromkeys(column))
    shown = ["none" if v is None else shown_value(v) for v in present]
    listed = f"{key} in this sweep: {', '.join(shown)}"
    wanted = _wanted(key, value, present, listed)
    hit = pd.Series([v == wanted and (v is None) == (wanted is None) for v in column], index=trials.index)
    if not hit.any():
        raise ReportError(f"--where {key}={value}: no trial has {key} {value!r}; {listed}"
                          f"{did_you_mean(value, shown) if isinstance(wanted, str) else ''}")
    return hit


def check_factors(option: str, names: list[str], trials: pd.DataFrame) -> None:
    """Every factor an option names is one of the sweep's (sweep_factors: with the optimizer hyper-parameters
    its grid sets), else ReportError naming them, with a "did you mean"."""
    factors = sweep_factors(trials)
    for name in names:
        if name not in factors:
            raise ReportError(f"{option} {','.join(names)!r}: {name!r} is not a factor of this sweep; factors: "
                              f"{', '.join(factors)}{did_you_mean(name, factors)}")
