"""A probe of trial workers, for tests/test_rerun.py: Python imports `sitecustomize` at start-up from the
first folder of its path holding one; a test puts this folder first on the PYTHONPATH of `sweep run`, which
the driver passes to Ray's processes. With SWEEP_WORKER_PROBE=<folder> set, every process that imports
sweep.run.trial writes <folder>/<pid>.json after each run_bundle: the modules of SQLAlchemy, pandas and
sweep.db in its sys.modules, and its private memory (Private_Clean + Private_Dirty of
/proc/self/smaps_rollup, kB). Unset, it does nothing."""
from __future__ import annotations

import os
import sys

FOLDER = os.environ.get("SWEEP_WORKER_PROBE")


def _write() -> None:
    import json

    watched = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "pandas")
                     or m == "sweep.db" or m.startswith("sweep.db."))
    private = 0
    try:
        with open("/proc/self/smaps_rollup") as f:
            private = sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
    except OSError:
        pass
    with open(os.path.join(FOLDER, f"{os.getpid()}.json"), "w") as f:
        json.dump({"pid": os.getpid(), "argv": sys.argv, "modules": watched, "private_kb": private,
                   "ray_tune": "ray.tune" in sys.modules}, f)


def _wrap(module) -> None:
    run_bundle = module.run_bundle

    def probed(*args, **kwargs):
        try:
            return run_bundle(*args, **kwargs)
        finally:
            _write()

    module.run_bundle = probed


if FOLDER:
    import importlib.abc
    import importlib.machinery

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "sweep.run.trial":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                _wrap(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Finder())
