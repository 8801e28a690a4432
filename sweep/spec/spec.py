"""The sweep spec: YAML in, validated once, frozen dataclasses out.

`load_spec` is the only place that reads a spec. Every error names the key
path in the file, the bad value, what is allowed and, for near-miss names,
a "did you mean". The value checks live in sweep.spec.checks, the
`optimizer:` entries in sweep.spec.optimizer.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from sweep.data.datasets import DATASETS
from sweep.measures import DEFAULT_METRIC, DEFAULT_VALIDATION_METRIC, RANKING
from sweep.spec.checks import (SpecError, _choice, _fail, _int, _items, _mapping, _number, _safe_name,
                               _show, _unique, _whole)
from sweep.spec.optimizer import OptimizerSpec, parse_optimizer
from sweep.run.stopping import RULES, AshaSpec, HalvingSpec, StopRule, StopSpec

# The registries (models/) import torch: seconds and hundreds of MB that
# `sweep report` and `sweep plot`, which import this module, never need.
# They are imported where a spec is validated.

# Ranking metrics: name -> True where larger is better (sweep.measures.RANKING: the one table).
METRICS: Mapping[str, bool] = {name: metric.higher_is_better for name, metric in RANKING.items()}

DEFAULT_OUTPUT = "runs"
DEFAULT_DATA_DIR = "data"
DEFAULT_MLP_HIDDEN = (256, 256)
DEFAULT_GPU_SHARE = 0.25  # four trials per GPU unless the spec says otherwise


# The settings that change what a sweep's trials compute, besides the grid's values: with them, a trial's
# config hash (sweep.spec.grid) and folder name (the grid's values alone) would part. They are fixed once a sweep
# has run; new grid values add trials and more epochs extend them.
FIXED_SETTINGS = ("dataset.name", "dataset.train_limit", "dataset.test_limit", "dataset.validation", "model.name",
                  "model.hidden", "batch_size", "stats_every", "model.args", "model.code", "dataset.args",
                  "dataset.code")
# (A factory or torchvision network is its model.name, as written; a data factory its dataset.name.)


def fixed_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """FIXED_SETTINGS of a spec as stored (dataclasses.asdict of a SweepSpec, its JSON, or the flat mapping
    this returns, as a sweep folder's settings file holds it): key -> value, tuples as lists, so that a spec
    and its stored JSON compare equal. A key the mapping lacks is left out."""
    out = {}
    for key in FIXED_SETTINGS:
        value: Any = spec
        if key in spec:  # already flat
            out[key] = list(spec[key]) if isinstance(spec[key], (tuple, list)) else spec[key]
            continue
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                break
            value = value[part]
        else:
            out[key] = list(value) if isinstance(value, (tuple, list)) else value
    return out


def changed_setting(stored: Mapping[str, Any], spec: "SweepSpec") -> tuple[str, Any, Any] | None:
    """The first fixed setting whose value in `spec` differs from `stored` (a stored spec): (key, old, new)."""
    from dataclasses import asdict

    old, new = fixed_settings(stored), fixed_settings(asdict(spec))
    for key in FIXED_SETTINGS:
        if key in old and old[key] != new[key]:
            return key, old[key], new[key]
    return None


@dataclass(frozen=True)
class DatasetSpec:
    name: str = "fashion_mnist"  # a data set of sweep.data.datasets, or the factory as written
    train_limit: int | None = None
    test_limit: int | None = None
    data_dir: str = DEFAULT_DATA_DIR
    validation: int | float | None = None  # examples held out of the training set: a count, or a fraction < 1
    # The user's own data: `factory: data.py:load` (sweep.spec.code), its keyword arguments as canonical JSON,
    # the digest of its source and its file.
    factory: str | None = None
    args: str | None = None
    code: str | None = None
    path: str | None = None
    # The data's number of classes, once a run has loaded it (the chance flag's 1/classes in the report).
    classes: int | None = None

    def source(self) -> dict | None:
        """A data factory's identity for its trials (the factory as written, its arguments, its code's digest),
        as ModelSpec.network is a network's; None for a named data set."""
        if self.factory is None:
            return None
        return {"factory": self.factory, "args": json.loads(self.args or "{}"), "code": self.code}

    def ref(self):
        """The data factory as sweep.spec.code.CodeRef (None without one)."""
        return _ref(self.factory, self.path, None, self.code)


@dataclass(frozen=True)
class ModelSpec:
    name: str = "lenet"  # lenet, mlp, or the factory or torchvision network as written
    hidden: tuple[int, ...] = ()
    # A network of the user's (`factory: nets.py:build`) or of torchvision's (`torchvision: resnet18`), its
    # keyword arguments as canonical JSON, and for a factory the digest of its source, its module's file and
    # what Ray ships to the workers (sweep.spec.code.CodeRef).
    factory: str | None = None
    torchvision: str | None = None
    args: str | None = None
    code: str | None = None
    path: str | None = None
    ship: str | None = None

    @property
    def fuses(self) -> bool:
        """Whether its trials may train fused (sweep.models.fused): the study's own networks only."""
        return self.factory is None and self.torchvision is None

    def network(self) -> dict | None:
        """What a trial needs to build it (models.network.build_network), and its identity: None for lenet
        and mlp."""
        if self.fuses:
            return None
        kind = "factory" if self.factory is not None else "torchvision"
        out = {kind: getattr(self, kind), "args": json.loads(self.args or "{}")}
        return {**out, "code": self.code} if self.code else out

    def ref(self):
        """The factory as sweep.spec.code.CodeRef (None without one)."""
        return _ref(self.factory, self.path, self.ship, self.code)


def _ref(factory, path, ship, code):
    if factory is None:
        return None
    from sweep.spec.code import CodeRef, module_ref

    named = module_ref(factory)
    return CodeRef(factory, named.module, named.attr, path, ship, code)


@dataclass(frozen=True)
class InitSpec:
    name: str
    gain: float | str = 1.0  # a number, or "auto": torch's gain for the activation






@dataclass(frozen=True)
class GridSpec:
    activation: tuple[str, ...]
    init: tuple[InitSpec, ...]
    optimizer: tuple[OptimizerSpec, ...]
    seed: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class ResourcesSpec:
    cpu: float = 1.0
    gpu: float | str = "auto"  # "auto": a share of a GPU where the cluster has GPUs, else 0
    max_concurrent: int | None = None
    max_failures: int = 2
    fuse: int | str = "auto"  # "auto", "off", or the most configurations per fused bundle


@dataclass(frozen=True)
class SweepSpec:
    name: str
    grid: GridSpec
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    epochs: int = 5
    batch_size: int = 64
    stats_every: int = 100
    metric: str = "final_test_acc"
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    output: str = DEFAULT_OUTPUT
    database: str | None = None  # None: sqlite file <output>/sweep.db
    stop: StopSpec = field(default_factory=StopSpec)  # no rules: every trial runs every epoch
    # Nuisance hyper-parameters (lr, momentum, ...): the report compares the other factors each at its best
    # setting of these, chosen on validation (sweep.analysis.report's tuned view).
    tune: tuple[str, ...] = ()

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{Path(self.output) / 'sweep.db'}"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.output) / self.name


# --------------------------------------------------------------------------- sections


def _args(raw: Any, where: str) -> str:
    """A factory's `args:` as canonical JSON (sorted keys): a mapping of names to YAML values."""
    value = {} if raw is None else raw
    if not isinstance(value, dict):
        _fail(where, f"expected a mapping of keyword arguments, got {_show(value)}")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            _fail(where, f"{_show(key)} is not a keyword argument name")
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        _fail(where, "holds a value that is not a number, string, boolean, list or mapping")


def _one_of(raw: Mapping, keys: tuple[str, ...], path: str) -> str:
    given = [k for k in keys if k in raw]
    if len(given) > 1:
        _fail(path, f"gives {' and '.join(given)}; a spec names one of {', '.join(keys)}")
    return given[0] if given else keys[0]


def _dataset(raw: Any, path: str, folder: Path) -> DatasetSpec:
    from sweep.spec.code import code_ref

    if isinstance(raw, str):
        raw = {"name": raw}
    raw = _mapping(raw, path, ("name", "factory", "args", "train_limit", "test_limit", "data_dir", "validation"))
    factory = None
    if _one_of(raw, ("name", "factory"), path) == "factory":
        factory = code_ref(raw["factory"], f"{path}.factory", folder)
        name = factory.text
    else:
        if "args" in raw:
            _fail(f"{path}.args", "args apply to a data factory (dataset.factory: data.py:load) only")
        name = _choice(raw.get("name", "fashion_mnist"), DATASETS, f"{path}.name", "dataset")
    limits = {}
    for key in ("train_limit", "test_limit"):
        value = raw.get(key)
        limits[key] = None if value is None else _int(value, f"{path}.{key}")
    data_dir = raw.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(data_dir, str) or not data_dir:
        _fail(f"{path}.data_dir", f"{_show(data_dir)} is not a path")
    validation = raw.get("validation")
    if validation is not None:
        whole = _whole(validation)
        if whole is None:
            validation = _number(validation, f"{path}.validation")
            if not 0 < validation < 1:
                _fail(f"{path}.validation", f"{validation!r} is neither a count of examples (a whole number >= 1) "
                                            "nor a fraction of the training set (above 0, below 1)")
        else:
            validation = _int(whole, f"{path}.validation")
    if factory is None:
        return DatasetSpec(name, limits["train_limit"], limits["test_limit"], data_dir, validation)
    return DatasetSpec(name, limits["train_limit"], limits["test_limit"], data_dir, validation, factory.text,
                       _args(raw.get("args"), f"{path}.args"), factory.digest, factory.path)


def _model(raw: Any, path: str, folder: Path) -> ModelSpec:
    from sweep.models.nets import MODELS
    from sweep.spec.code import code_ref

    if isinstance(raw, str):
        raw = {"name": raw}
    raw = _mapping(raw, path, ("name", "hidden", "factory", "torchvision", "args"))
    kind = _one_of(raw, ("name", "factory", "torchvision"), path)
    if kind != "name":
        if "hidden" in raw:
            _fail(f"{path}.hidden", f"hidden applies to mlp only; a {kind} network takes its sizes in args")
        args = _args(raw.get("args"), f"{path}.args")
        if kind == "torchvision":
            from sweep.models.network import torchvision_builders

            net = _choice(raw["torchvision"], torchvision_builders(), f"{path}.torchvision",
                          "classification network of torchvision.models")
            return ModelSpec(net, torchvision=net, args=args)
        ref = code_ref(raw["factory"], f"{path}.factory", folder)
        return ModelSpec(ref.text, factory=ref.text, args=args, code=ref.digest, path=ref.path, ship=ref.ship)
    if "args" in raw:
        _fail(f"{path}.args", "args apply to model.factory and model.torchvision only")
    name = _choice(raw.get("name", "lenet"), MODELS, f"{path}.name", "model")
    if name == "lenet":
        if "hidden" in raw:
            _fail(f"{path}.hidden", "lenet has a fixed shape; hidden applies to mlp only")
        return ModelSpec(name)
    hidden = raw.get("hidden", list(DEFAULT_MLP_HIDDEN))
    hidden = tuple(_int(h, where) for where, h in _items(hidden, f"{path}.hidden"))
    return ModelSpec(name, hidden)


def _init(raw: Any, path: str) -> InitSpec:
    from sweep.models.registry import ACTIVATION_GAIN_INITS, GAIN_INITS, INITS

    if isinstance(raw, str):
        raw = {"name": raw}
    raw = _mapping(raw, path, ("name", "gain"), required=("name",))
    name = _choice(raw["name"], INITS, f"{path}.name", "init")
    if name in ACTIVATION_GAIN_INITS:
        # Kaiming's gain comes from the activation (tanh 5/3, ReLU sqrt 2, ...): `auto` is all it can be.
        gain = raw.get("gain", "auto")
        if gain != "auto":
            _fail(f"{path}.gain", f"{_show(gain)}: {name} takes its gain from the activation; "
                                  "write gain: auto or leave gain out")
        return InitSpec(name, "auto")
    gain = raw.get("gain", 1.0)
    if gain != 1.0 and name not in GAIN_INITS:
        _fail(f"{path}.gain", f"{name} takes no gain; gain applies to {', '.join(sorted(GAIN_INITS))}")
    if isinstance(gain, str) and gain != "auto":
        _fail(f"{path}.gain", f"{_show(gain)} is neither a number > 0 nor auto"
              + (" (did you mean auto?)" if difflib.get_close_matches(gain, ["auto"]) else ""))
    if gain != "auto":
        gain = _number(gain, f"{path}.gain", positive=True)
    return InitSpec(name, gain)




def _grid(raw: Any, path: str) -> GridSpec:
    from sweep.models.registry import ACTIVATIONS

    raw = _mapping(raw, path, ("activation", "init", "optimizer", "seed"),
                   required=("activation", "optimizer"))
    acts = [_choice(a, ACTIVATIONS, where, "activation") for where, a in _items(raw["activation"], f"{path}.activation")]
    _unique(acts, f"{path}.activation")
    inits = [_init(x, where) for where, x in _items(raw.get("init", ["default"]), f"{path}.init")]
    _unique(inits, f"{path}.init", key=lambda s: f"{s.name} gain={s.gain}")
    opts = [parse_optimizer(x, where) for where, x in _items(raw["optimizer"], f"{path}.optimizer")]
    _unique(opts, f"{path}.optimizer", key=lambda s: f"{s.name} {dict(s.params)}")
    seeds = [_int(s, where, minimum=0) for where, s in _items(raw.get("seed", [0]), f"{path}.seed")]
    _unique(seeds, f"{path}.seed")
    return GridSpec(tuple(acts), tuple(inits), tuple(opts), tuple(seeds))


def _resources(raw: Any, path: str) -> ResourcesSpec:
    raw = _mapping(raw, path, ("cpu", "gpu", "max_concurrent", "max_failures", "fuse"))
    cpu = _number(raw.get("cpu", 1), f"{path}.cpu", positive=True)
    gpu = raw.get("gpu", "auto")
    if gpu != "auto":
        gpu = _number(gpu, f"{path}.gpu", minimum=0.0)
    cap = raw.get("max_concurrent")
    cap = None if cap is None else _int(cap, f"{path}.max_concurrent")
    failures = _int(raw.get("max_failures", 2), f"{path}.max_failures", minimum=0)
    return ResourcesSpec(cpu, gpu, cap, failures, _fuse(raw.get("fuse", "auto"), f"{path}.fuse"))


def _fuse(value: Any, path: str) -> int | str:
    if value is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    if value in ("auto", "off"):
        return value
    whole = _whole(value)
    if whole is not None and whole >= 1:
        return whole
    _fail(path, f"{_show(value)} is not auto, off or a number of configurations >= 1")


def parse_stop(raw: Any, path: str = "stop", epochs: int | None = None) -> StopSpec:
    """`stop:` rules, each `rule: N` (patience, the flag's threshold) or `rule: {<threshold>: x, epochs: N}`,
    and `asha: {grace: G, reduction: R}` or `halving: {grace: G, reduction: R}` (sweep/run/stopping.py), with
    G below the sweep's `epochs`."""
    if raw is None:
        return StopSpec()
    raw = _mapping(raw, path, (*RULES, "asha", "halving"))
    if "asha" in raw and "halving" in raw:
        _fail(f"{path}.halving", "halving and asha are two rules for the same rungs: give one (halving for a "
                                 "study's comparison, asha for a search)")
    rules = []
    for name, value in raw.items():
        if name in ("asha", "halving"):
            continue
        where = f"{path}.{name}"
        _, key, default = RULES[name]
        if isinstance(value, dict):
            value = _mapping(value, where, (key, "epochs"), required=("epochs",))
            threshold = _number(value.get(key, default), f"{where}.{key}", positive=True)
            if name in ("dead", "saturated", "chance") and threshold >= 1:
                _fail(f"{where}.{key}", f"{threshold!r} must be below 1 (a share)" if name != "chance"
                      else f"{threshold!r} must be below 1 (an accuracy margin)")
            rules.append(StopRule(name, threshold, _int(value["epochs"], f"{where}.epochs")))
        else:
            if _whole(value) is None:
                _fail(where, f"{_show(value)} is not a patience in epochs (an integer >= 1) "
                             f"or a mapping like {{{key}: {default:g}, epochs: 3}}")
            rules.append(StopRule(name, default, _int(value, where)))
    asha = None
    if "asha" in raw:
        value = _mapping(raw["asha"], f"{path}.asha", ("grace", "reduction"), required=("grace",))
        reduction = _number(value.get("reduction", 3), f"{path}.asha.reduction")
        if reduction <= 1:
            _fail(f"{path}.asha.reduction", f"{reduction!r} must be > 1 (the top 1/reduction continue)")
        asha = AshaSpec(_int(value["grace"], f"{path}.asha.grace"), reduction)
        if epochs is not None and asha.grace >= epochs:
            _fail(f"{path}.asha.grace", f"{asha.grace} must be below epochs ({epochs}): no rung comes before the last")
    halving = None
    if "halving" in raw:
        where = f"{path}.halving"
        value = _mapping(raw["halving"], where, ("grace", "reduction"), required=("grace",))
        reduction = _number(value.get("reduction", 3), f"{where}.reduction")
        if reduction < 2:
            _fail(f"{where}.reduction", f"{reduction!r} must be 2 or more (the top 1/reduction of each population "
                                        "continue at each rung)")
        halving = HalvingSpec(_int(value["grace"], f"{where}.grace"), reduction)
        if epochs is not None and halving.grace >= epochs:
            _fail(f"{where}.grace", f"{halving.grace} must be below epochs ({epochs}): no rung comes before the last")
    return StopSpec(tuple(rules), asha, halving)


TOP_KEYS = ("name", "dataset", "model", "epochs", "batch_size", "stats_every", "metric",
            "grid", "resources", "stop", "tune", "output", "database")


def tunable(grid: GridSpec) -> list[str]:
    """The hyper-parameters a grid's optimizers set (lr first): what `tune:` and `--tune` may name."""
    keys = {k for opt in grid.optimizer for k in (*dict(opt.params), *(r.key for r in opt.ranges))}
    return ["lr", *sorted(keys - {"lr"})]


def _tune(raw: Any, grid: GridSpec) -> tuple[str, ...]:
    """`tune: [lr, momentum]`: nuisance hyper-parameters, each one the grid's optimizers set."""
    if raw is None:
        return ()
    allowed = tunable(grid)
    names = [_choice(v, allowed, where, "hyper-parameter the grid's optimizers set") for where, v in _items(raw, "tune")]
    _unique(names, "tune")
    return tuple(names)


def _is_url(text: str) -> bool:
    from sweep.db.engine import sqlite_path  # SQLAlchemy: not for the trials, which import this module's types

    try:
        sqlite_path(text)  # parses the URL
    except Exception:  # SQLAlchemy's ArgumentError, or ValueError from a bad port
        return False
    return "://" in text


def parse_spec(raw: Any, folder: Path | None = None) -> SweepSpec:
    """Validate a spec already parsed from YAML into a SweepSpec; `folder` (default: the working folder) is
    where its factory files are found, the spec file's."""
    folder = Path.cwd() if folder is None else folder
    raw = _mapping(raw, "", TOP_KEYS, required=("name", "grid"))
    output = raw.get("output", DEFAULT_OUTPUT)
    if not isinstance(output, str) or not output:
        _fail("output", f"{_show(output)} is not a path")
    database = raw.get("database")
    if database is not None and (not isinstance(database, str) or not _is_url(database)):
        _fail("database", f"{_show(database)} is not a database URL like sqlite:///runs/sweep.db")
    grid, dataset = _grid(raw["grid"], "grid"), _dataset(raw.get("dataset", {}), "dataset", folder)
    model = _model(raw.get("model", {}), "model", folder)
    resources = _resources(raw.get("resources", {}), "resources")
    if not model.fuses and resources.fuse not in ("auto", "off"):
        _fail("resources.fuse", f"{resources.fuse}: {model.name} trains alone (sweep fuses its own networks, lenet "
                                "and mlp, only); write fuse: auto or off")
    return SweepSpec(
        name=_safe_name(raw["name"], "name"),
        grid=grid,
        dataset=dataset,
        model=model,
        epochs=(epochs := _int(raw.get("epochs", 5), "epochs")),
        batch_size=_int(raw.get("batch_size", 64), "batch_size"),
        stats_every=_int(raw.get("stats_every", 100), "stats_every"),
        metric=_metric(raw.get("metric"), dataset),
        resources=resources,
        stop=parse_stop(raw.get("stop"), "stop", epochs),
        tune=_tune(raw.get("tune"), grid),
        output=output,
        database=database,
    )


def _metric(raw: Any, dataset: DatasetSpec) -> str:
    """The ranking metric: on the validation split where there is one, unless the spec says otherwise."""
    if raw is None:
        return DEFAULT_VALIDATION_METRIC if dataset.validation else DEFAULT_METRIC
    metric = _choice(raw, METRICS, "metric", "metric")
    if RANKING[metric].column.startswith(("val_", "best_val")) and not dataset.validation:
        _fail("metric", f"{metric} is read on the validation split, and this spec has none; "
                        "add dataset.validation: N (a count, or a fraction below 1)")
    return metric


def _relative_to(spec: SweepSpec, folder: Path) -> SweepSpec:
    """The spec with its relative paths (written or default) taken from `folder`.

    A spec means the same wherever it is run from: `sweep report --spec
    studies/a.yaml` finds the database that `sweep run studies/a.yaml` wrote.
    """
    def resolve(p: str) -> str:
        return str((folder / p).resolve())

    from sweep.db.engine import sqlite_path

    database = spec.database
    file = sqlite_path(database) if database else None
    if file is not None and not file.is_absolute():
        database = database.replace(str(file), resolve(str(file)), 1)
    return replace(spec, output=resolve(spec.output), database=database,
                   dataset=replace(spec.dataset, data_dir=resolve(spec.dataset.data_dir)))


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file; raises SpecError with a one-line message.

    Relative paths in the spec (output, dataset.data_dir, a SQLite database)
    are relative to the spec file's own folder.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a text file: byte 0x{exc.object[exc.start]:02x} at position {exc.start} "
                        "is not UTF-8; a spec is a YAML text file like sweeps.yaml") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
    try:
        return _relative_to(parse_spec(raw, path.parent), path.parent)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
