"""Hold points: stop a trial at an exact moment, so a fault test can strike there.

A fault test must interrupt a sweep at the moment its case is about (before a
trial's first checkpoint, between a checkpoint and its report, mid-epoch), not
wherever a timer happens to land. With

    SWEEP_HOLD="tanh-xavier_uniform-adam-lr0.001-s0@epoch1.batch50,relu-...@saved2"
    SWEEP_HOLD_DIR=/some/folder

the named trial, on reaching the named moment, creates
`<SWEEP_HOLD_DIR>/<trial>@<moment>` holding its process id, and then waits
until released: the test waits for that file, then signals or kills, or
changes the world (fills the disk) and lets the trial go on with
`release(folder, trial, moment)`. The wait is on a named pipe
(`<trial>@<moment>.go`), made before the marker: the trial blocks opening it
until the test opens it too, so nothing polls. Each hold fires once (the pipe
is created exclusively), so a trial retried after its worker was killed runs
through. Without SWEEP_HOLD nothing is checked per batch.

Moments, in a trial's order of events:
- `epoch<N>.batch<M>`: batch M of epoch N trained and its TensorBoard points
  flushed to disk; epoch N not yet checkpointed nor reported.
- `saved<N>`: epoch N checkpointed, its report not yet sent to the driver.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

ENV, ENV_DIR = "SWEEP_HOLD", "SWEEP_HOLD_DIR"


def holds_for(trial_name: str) -> frozenset[str]:
    """The moments at which `trial_name` is to be held (empty unless a test asked)."""
    spec = os.environ.get(ENV, "")
    return frozenset(item.split("@", 1)[1] for item in spec.split(",")
                     if "@" in item and item.split("@", 1)[0] == trial_name)


def hold(trial_name: str, moment: str, holds: frozenset[str], before: Callable[[], None] | None = None) -> None:
    """Block forever at `moment` if it is one of `holds` and has not fired yet.

    `before` runs first (e.g. flushing TensorBoard, so what the trial wrote is on disk when the test strikes).
    """
    if moment not in holds:
        return
    if before is not None:
        before()
    marker = Path(os.environ[ENV_DIR]) / f"{trial_name}@{moment}"
    go = _release_pipe(marker)
    try:
        os.mkfifo(go)  # exclusive: the hold fires once
    except FileExistsError:
        return  # fired once already: this is the retry
    draft = marker.with_name(f".{marker.name}.{os.getpid()}")
    draft.write_text(str(os.getpid()))
    try:
        os.link(draft, marker)  # atomic: the file appears whole
    finally:
        draft.unlink()
    with open(go, "rb") as pipe:  # blocks until release() opens the other end (or forever)
        pipe.read()


def _release_pipe(marker: Path) -> Path:
    return marker.with_name(marker.name + ".go")


def release(folder: Path, trial_name: str, moment: str) -> None:
    """Let a trial held at `moment` (its marker file in `folder` exists) go on."""
    with open(_release_pipe(Path(folder) / f"{trial_name}@{moment}"), "wb"):
        pass
