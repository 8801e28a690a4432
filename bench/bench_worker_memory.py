"""Benchmark: the private memory of a CPU trial worker after its epochs, as one JSON line.

It does what a Ray Tune trial worker does: imports ray.tune (which imports pandas itself), then runs
sweep.run.trial.run_bundle with stop rules and ASHA (the rung store in the process) for 3 epochs of a small
synthetic sweep, and reads /proc/self/smaps_rollup: uss_kb (Private_Clean + Private_Dirty; the clean part
varies with what other processes map), dirty_kb (Private_Dirty, here all anonymous memory: the steady
figure), rss_kb, and whether SQLAlchemy, pandas and sweep.db were imported. Compare two trees by their path:

  PYTHONPATH=/path/to/old/tree python bench/bench_worker_memory.py
  PYTHONPATH=. python bench/bench_worker_memory.py
"""
import json, sys, tempfile
import ray.tune  # noqa: F401  (every Ray Tune worker has it: it imports pandas itself)
import torch
torch.set_num_threads(1)
from sweep.data.datasets import synthetic
from sweep.spec.grid import expand_grid
from sweep.spec.spec import parse_spec, parse_stop
from sweep.run.stopping import Stopper
from sweep.run.trial import run_bundle
spec = parse_spec({"name": "w", "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 128},
                   "epochs": 3, "batch_size": 32, "stats_every": 4, "output": tempfile.mkdtemp(),
                   "grid": {"activation": ["relu"], "init": ["xavier_uniform"],
                            "optimizer": [{"name": "sgd", "lr": 0.01}]},
                   "stop": {"chance": 2, "dead": 2, "asha": {"grace": 1, "reduction": 2}}})
stopper = Stopper(parse_stop(spec.stop.to_dict()), spec.metric, spec.epochs)
run_bundle(expand_grid(spec), synthetic(256, 128), lambda r: None, tensorboard=False, stopper=stopper)
with open("/proc/self/smaps_rollup") as f:
    kb = {l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("Private", "Rss", "Pss", "Anonymous"))}
print(json.dumps({"uss_kb": kb["Private_Clean"] + kb["Private_Dirty"], "rss_kb": kb["Rss"],
                  "dirty_kb": kb["Private_Dirty"], "anon_kb": kb["Anonymous"],
                  "sqlalchemy": "sqlalchemy" in sys.modules, "pandas": "pandas" in sys.modules,
                  "sweep.db": sorted(m for m in sys.modules if m.startswith("sweep.db"))}))
