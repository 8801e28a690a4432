"""The user's own code a spec names: `factory: nets.py:build` (a file beside the spec) or
`factory: mypkg.nets:build` (a module: a package folder beside the spec, or one installed).

`code_ref` reads such a reference once, when the spec is read: where the code is, what Ray ships to the
workers (`ship`: the file or the package folder, through runtime_env's py_modules; None for an installed
package, which every node must have), and a digest of its source files, part of each trial's identity (a
changed nets.py is a changed fixed setting). It imports nothing: `sweep report --spec` reads specs too.

`load_callable` imports it: on the driver from its path (the user's folder never joins sys.path, so a
models.py there still never shadows sweep's), on a worker by its module name, from what Ray shipped.

    ref = code_ref("nets.py:build", "model.factory", Path("studies"))
    build = load_callable(ref, from_path=True)
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sweep.spec.checks import SpecError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CodeRef:
    """One `file.py:name` or `package.module:name` of a spec, resolved."""

    text: str  # as the spec writes it
    module: str  # the module name a worker imports: "nets", "mypkg.nets"
    attr: str  # the callable's name in it
    path: str | None  # the module's file (None: an installed module, found by name)
    ship: str | None  # what Ray's py_modules ships: the .py file or the package's folder (None: installed)
    digest: str  # sha256 of its source files' contents, 16 hex digits


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_ref(text: Any, where: str, folder: Path) -> CodeRef:
    """Resolve `text` (`file.py:name` relative to `folder`, the spec's, or `package.module:name`); SpecError
    in one line where it is malformed or its file or module is missing."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise SpecError(f"{where}: {text!r} is not a factory like nets.py:build (a file beside the spec) or "
                        "mypkg.nets:build (a module)")
    source, attr = text.split(":")
    if not _IDENTIFIER.fullmatch(attr):
        raise SpecError(f"{where}: {attr!r} (after the colon in {text!r}) is not a Python name")
    if source.endswith(".py"):
        path = (folder / source).resolve()
        if not path.is_file():
            raise SpecError(f"{where}: {path} does not exist (a factory file is relative to the spec's folder, "
                            f"{folder.resolve()})")
        module = path.stem
        if not _IDENTIFIER.fullmatch(module):
            raise SpecError(f"{where}: {path.name} cannot be imported as a module (its name is not a Python name); "
                            "rename it, e.g. my_nets.py")
        taken = _installed(module)
        if taken is not None and Path(taken).resolve() != path:
            raise SpecError(f"{where}: {path.name} has the name of the installed module {module} ({taken}); rename "
                            f"it, e.g. my_{module}.py, so that the workers import yours")
        return CodeRef(text, module, attr, str(path), str(path), _digest([path]))
    parts = source.split(".")
    if not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise SpecError(f"{where}: {source!r} is neither a .py file nor a module name like mypkg.nets")
    beside = folder / parts[0]
    if (beside / "__init__.py").is_file():  # a package folder beside the spec: shipped to the workers
        path = beside.joinpath(*parts[1:]).with_suffix(".py") if len(parts) > 1 else beside / "__init__.py"
        if not path.is_file():
            raise SpecError(f"{where}: {path} does not exist (module {source} in the package folder {beside})")
        return CodeRef(text, source, attr, str(path.resolve()), str(beside.resolve()),
                       _digest(sorted(beside.rglob("*.py"))))
    try:
        found = importlib.util.find_spec(source)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise SpecError(f"{where}: no module {source} (neither a package folder {beside.resolve()} beside the "
                        "spec nor an installed module)")
    return CodeRef(text, source, attr, None, None, _digest([Path(found.origin)]))


def _installed(module: str) -> str | None:
    """Where an import of `module` finds it on sys.path (None: nowhere); the modules read from a spec's files
    (in sys.modules, not on sys.path) do not count."""
    if module in sys.builtin_module_names:
        return module
    try:
        found = importlib.machinery.PathFinder.find_spec(module)
    except (ImportError, ValueError):
        return None
    return found.origin if found is not None else None


def load_callable(ref: CodeRef, from_path: bool) -> Callable:
    """The callable `ref` names. `from_path` (the driver): the module read from its file, registered under its
    module name; else (a worker) imported by name, from the copy Ray's py_modules put on its path. ImportError
    (a missing module), AttributeError (no such name) and whatever the module raises as it runs go to the
    caller, who says them in one line."""
    module = sys.modules.get(ref.module)
    if from_path and ref.path is not None and (module is None or getattr(module, "__file__", None) != ref.path):
        module = _from_file(ref)  # read again where another file of that name was read before (a test's)
    if module is None:
        module = importlib.import_module(ref.module)
    if not hasattr(module, ref.attr):
        raise AttributeError(f"{ref.module} has no {ref.attr}")
    fn = getattr(module, ref.attr)
    if not callable(fn):
        raise TypeError(f"{ref.module}.{ref.attr} is a {type(fn).__name__}, not a function")
    return fn


def _from_file(ref: CodeRef):
    """Import ref's module from its file (a package folder beside the spec: the package first, from its
    folder), without putting the user's folder on sys.path."""
    if ref.ship is not None and Path(ref.ship).is_dir():
        top = ref.module.split(".")[0]
        for name in [m for m in sys.modules if m == top or m.startswith(f"{top}.")]:
            del sys.modules[name]
        _exec(top, Path(ref.ship) / "__init__.py", [ref.ship])
        return importlib.import_module(ref.module)
    return _exec(ref.module, Path(ref.path), None)


def _exec(name: str, path: Path, search: list[str] | None):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def last_line(exc: BaseException) -> str:
    """An exception as its type and the last line of its message: how a user's code failing is said."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def module_ref(text: str) -> CodeRef:
    """`text` (a spec's factory) as a worker imports it: by module name only ("nets.py:build" -> nets)."""
    source, attr = text.split(":")
    return CodeRef(text, Path(source).stem if source.endswith(".py") else source, attr, None, None, "")
