"""Timestamps of a sweep's start-up, in every Python process it starts (bench/bench_startup.py --breakdown).

Python imports `sitecustomize` at start-up from the first folder of its path
that holds one; bench_startup.py puts this folder first on PYTHONPATH, which
the driver passes to Ray's processes, so the driver and every trial worker
load it. With SWEEP_STARTUP_PROBE=<file> set, each appends JSON lines to that
file (small appends: whole lines, whatever the process):

  {"pid", "event": "start", "argv", "t0": the process's start (kernel; to the second), "t1": now}
  {"pid", "event": "import", "name", "t0", "t1"}  a watched package's whole import
  {"pid", "event": "call", "name", "t0", "t1"}    a watched function, each call
  {"pid", "event": "report", "epoch", "epoch_seconds", "t1"}   a trial's report

Unset, it does nothing. Nothing in db/, sweep/ or models/ knows of it: it
wraps functions as their modules finish importing.
"""
from __future__ import annotations

import functools
import importlib.abc
import json
import os
import sys
import time

LOG = os.environ.get("SWEEP_STARTUP_PROBE")

# Packages whose whole import is timed.
IMPORTS = {"torch", "torch._dynamo", "ray", "ray.tune", "sqlalchemy", "pandas", "numpy", "tensorboard",
           "torch.utils.tensorboard", "torchvision", "yaml"}
# Functions timed on every call: module -> (object path within it, ...).
CALLS = {
    "sweep.spec.spec": ("load_spec",),
    "sweep.run.runner": ("load_dataset", "check_settings", "read_state", "_open_database", "record_plan",
                     "write_experiment", "_tune"),
    "sweep.run.bundles": ("member_bytes", "free_gpu_bytes"),
    "sweep.run.cluster": ("_start_local",),
    "ray": ("shutdown",),
    "ray.tune": ("with_parameters", "Tuner.fit"),
    "sweep.run.recorder": ("DatabaseRecorder.on_trial_start", "DatabaseRecorder.on_trial_result",
                       "DatabaseRecorder.on_step_end", "DatabaseRecorder.on_trial_complete",
                       "DatabaseRecorder.on_experiment_end", "DatabaseRecorder.flush"),
    "sweep.run.trial": ("ray_trainable", "run_bundle", "_Member.__init__", "_Member.save"),
    "sweep.models.fused": ("FusedNet.__init__", "FusedNet.evaluate"),
    "sweep.models.graph": ("StepRunner.step",),
}


def _emit(record: dict) -> None:
    line = (json.dumps({"pid": os.getpid(), **record}) + "\n").encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _process_start() -> float:
    """When the kernel started this process (Unix time, to its clock tick)."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rpartition(")")[2].split()[19])
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _timed(name: str, fn, first_only: bool = False):
    seen = [0]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        seen[0] += 1
        if first_only and seen[0] > 1:
            return fn(*args, **kwargs)
        t0 = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            _emit({"event": "call", "name": name, "t0": t0, "t1": time.time()})

    return wrapper


def _report(fn):
    @functools.wraps(fn)
    def wrapper(metrics, *args, **kwargs):
        _emit({"event": "report", "epoch": metrics.get("epoch"), "epoch_seconds": metrics.get("epoch_seconds"),
               "t1": time.time()})
        return fn(metrics, *args, **kwargs)

    return wrapper


def _patch(module_name: str, module) -> None:
    for path in CALLS.get(module_name, ()):
        owner_path, _, attr = path.rpartition(".")
        owner = module
        for part in filter(None, owner_path.split(".")):
            owner = getattr(owner, part)
        # StepRunner.step runs every step: only the first (the first training step) is timed.
        setattr(owner, attr, _timed(f"{module_name}.{path}", getattr(owner, attr), first_only=path == "StepRunner.step"))
    if module_name == "ray.tune":
        module.report = _report(module.report)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, name: str):
        self._inner, self._name = inner, name

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        t0 = time.time()
        self._inner.exec_module(module)
        if self._name in IMPORTS:
            _emit({"event": "import", "name": self._name, "t0": t0, "t1": time.time()})
        _patch(self._name, module)

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in IMPORTS and name not in CALLS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, name)
                return spec
        return None


if LOG:
    _emit({"event": "start", "argv": " ".join(sys.argv)[:200], "t0": _process_start(), "t1": time.time()})
    sys.meta_path.insert(0, _Finder())
