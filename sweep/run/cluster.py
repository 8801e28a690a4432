"""Where trials run: this machine's own Ray instance, or an existing Ray cluster.

A local sweep starts Ray in single-machine mode: every server it starts
listens on 127.0.0.1 only (measured with `ss -ltnp`: by default the GCS
server, the raylet, the workers and the driver listen on every interface), and
Ray's default token authentication stays on.

Joining a cluster (`--address host:port`), every way it can fail is one line:
nothing answers at the address, the cluster refuses this driver's token (or
its lack of one), the driver's Ray or Python version differs from the
cluster's. Then, before any trial, every node must see the sweep's output
folder as the driver does (shared storage): trials write their TensorBoard
events and checkpoints there, and a trial retried on another node continues
from the checkpoint it finds there.

A researcher's own folder stays out of the trial workers' imports: Ray puts the driver's working folder
(and its script's folder) first on every worker's sys.path, where a `sweep.py` of the user's would stand
in for this package. Ray is started or joined from the folder that holds this package instead
(`_code_folder`), and the user's folders are off sys.path while it reads them.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sweep.run import hold

# Ray's single-machine switch (what it uses on macOS and Windows): servers bind
# and advertise 127.0.0.1 instead of the machine's network address.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
CONNECT_TIMEOUT = 10.0  # seconds to wait for a TCP answer at a cluster's address
STORAGE_TIMEOUT = 120.0  # seconds for every node to run its storage check (a node may start a worker first)


class ClusterError(Exception):
    """Ray cannot be started or joined; the message is one line for the user."""


class FolderError(Exception):
    """A folder to write into is missing or not writable; the message (`folder X ...`) is one line for the user."""


def writable_folder(folder: Path, parents: bool = False) -> Path:
    """Check, making nothing, that files can be written into `folder`: it takes a probe file if it exists;
    if not, the folder that would hold it must exist (its parent; with `parents`, its nearest existing
    ancestor) and take one. FolderError, in one line (`folder X ...`), otherwise. Without `parents` a
    mistyped path is refused instead of growing a new tree. Used for a sweep's output (with parents) and
    `sweep plot --out`.
    """
    folder = Path(folder).absolute()
    holder = folder
    while not holder.exists() and (parents or holder == folder) and holder != holder.parent:
        holder = holder.parent
    if not holder.exists():
        raise FolderError(f"folder {folder} cannot be made: {holder} does not exist")
    if not holder.is_dir():
        raise FolderError(f"folder {folder} cannot be made: {holder} is not a folder")
    probe = holder / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise FolderError(f"folder {folder} is not writable: {exc.strerror or exc}") from None
    return folder


_INIT = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True)
# Verbose (sweep run -v, SWEEP_VERBOSE=1): the workers' output and Ray's INFO logging on the terminal, for debugging.
_VERBOSE = dict(_INIT, log_to_driver=True, logging_level="INFO")


def _code_folder() -> Path:
    """The folder holding this `sweep` package (site-packages, or a source checkout): where the workers
    would find it anyway, so that Ray putting it first on their sys.path adds nothing of the user's."""
    return Path(__file__).resolve().parent.parent.parent


@contextmanager
def _user_folder_hidden() -> Iterator[None]:
    """While Ray is started or joined: the working folder is the code's, and the user's folders (the
    working folder, '' and the running script's folder) are off sys.path, so that Ray hands none of them to
    the workers. Both are restored afterwards; the driver itself has already imported what it needs."""
    code = _code_folder()
    here = Path.cwd()
    script = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] not in ("", "-c") else None
    hidden = {os.path.realpath(p) for p in (here, script) if p is not None and p != code}
    saved_path = list(sys.path)
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) not in hidden]
    os.chdir(code)
    try:
        yield
    finally:
        os.chdir(here)
        sys.path[:] = saved_path


@contextmanager
def ray_session(address: str | None, verbose: bool = False, py_modules: list[str] = ()) -> Iterator[None]:
    """Ray started on this machine (address None) or joined at `address`, shut down afterwards.

    `py_modules`: the user's code the trials import (a factory's file or package folder), shipped to every
    worker by Ray's runtime_env: a node without a copy of it, or another working folder, runs it the same.
    An already initialised Ray (a test or a notebook that called ray.init) is used as it is.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    init = _VERBOSE if verbose else _INIT
    shipped = {"py_modules": list(py_modules)} if py_modules else {}
    if address is None:
        _start_local(ray, dict(init, runtime_env=shipped) if shipped else init)
    else:
        _join(ray, address, init, shipped)
    try:
        yield
    finally:
        ray.shutdown()


def _start_local(ray, init: dict) -> None:
    from ray._private import ray_constants

    saved = os.environ.get(LOCAL_ONLY_ENV), ray_constants.ENABLE_RAY_CLUSTER
    # The environment reaches the processes Ray starts; this process read it at import.
    os.environ[LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _user_folder_hidden():
            ray.init(**init)
    finally:
        if saved[0] is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        else:
            os.environ[LOCAL_ONLY_ENV] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


def token_source() -> str | None:
    """Where Ray would read this driver's token from, or None without one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return path if Path(path).is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _host_port(address: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"\[?([^\]\s]+?)\]?:(\d+)", address)
    return (match.group(1), int(match.group(2))) if match else None


def _join(ray, address: str, init: dict, shipped: dict) -> None:
    target = _host_port(address)
    if target is not None:
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ClusterError(f"no Ray cluster answers at {address} ({reason}); start one there with "
                               f"`ray start --head --port {target[1]}` or check --address") from None
    # Ray enables token authentication for an explicit address only when told
    # (RAY_AUTH_MODE=token); a driver holding a token sends it, which a cluster
    # without authentication ignores.
    token = token_source()
    if token is not None and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        # Ray read its configuration when imported: have it read the mode again, as `ray start` does.
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    # A cluster's workers do not inherit this process's environment; hold points (sweep/run/hold.py) must reach them.
    forwarded = {k: os.environ[k] for k in (hold.ENV, hold.ENV_DIR) if k in os.environ}
    runtime_env = {**({"env_vars": forwarded} if forwarded else {}), **shipped} or None
    with _stderr_captured() as captured:
        try:
            with _user_folder_hidden():
                ray.init(address=address, runtime_env=runtime_env, **init)
            return
        except ConnectionError:
            said = captured()
            failure = "connection"
        except RuntimeError as exc:
            said, failure = str(exc), "runtime"
        except Exception as exc:  # noqa: BLE001: ray.exceptions.AuthenticationError and kin, one line each
            said, failure = f"{type(exc).__name__}: {exc}", "other"
    raise ClusterError(_join_error(address, failure, said, token if token_mode else None)) from None


def _join_error(address: str, failure: str, said: str, token: str | None) -> str:
    """One line saying why joining `address` failed, from what Ray raised or logged."""
    fix = ("copy the cluster's token (its ~/.ray/auth_token, or `ray get-auth-token` there) to this machine's "
           "~/.ray/auth_token, or set RAY_AUTH_TOKEN")
    if "InvalidAuthToken" in said or "token" in said.lower():
        if token is None:
            return f"the Ray cluster at {address} asks for a token and this driver has none: {fix}"
        return f"the Ray cluster at {address} refused this driver's token (from {token}): {fix}"
    versions = re.findall(r"Ray: (\S+)\s+Python: (\S+)", said)
    if "Version mismatch" in said and len(versions) == 2:
        (c_ray, c_py), (d_ray, d_py) = versions
        return (f"the Ray cluster at {address} runs Ray {c_ray} on Python {c_py}, this driver Ray {d_ray} on "
                f"Python {d_py}: run the driver with the cluster's versions (pip install 'ray[tune]=={c_ray}')")
    last = [line.strip() for line in said.splitlines() if line.strip()]
    return f"could not join the Ray cluster at {address}: {last[-1] if last else failure + ' failed'}"


@contextmanager
def _stderr_captured():
    """Ray's C++ client logs its retries to file descriptor 2 (twenty lines for a refused token): keep them
    off the terminal while joining, and let the caller read them to say what went wrong."""
    with tempfile.TemporaryFile(mode="w+b") as buffer:
        saved = os.dup(2)
        os.dup2(buffer.fileno(), 2)
        try:
            def captured() -> str:
                buffer.seek(0)
                return buffer.read().decode(errors="replace")
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def check_shared_storage(folder: Path) -> None:
    """Every alive node must see and write `folder` as this driver does; else one line naming the nodes.

    The driver writes a file with a random token; a task pinned to each node
    reads it back (a node's own empty folder of the same name does not count)
    and writes a file of its own, which the driver must then see.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = folder / f".storage-check-{secrets.token_hex(4)}"
    probe.mkdir(parents=True)
    try:
        secret = secrets.token_hex(16)
        (probe / "driver").write_text(secret)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        check = ray.remote(num_cpus=0)(_check_from_node)
        pending = {
            check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                str(probe), secret, n["NodeID"]): n for n in nodes}
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=STORAGE_TIMEOUT)
        failed = []
        for ref in ready:
            node = pending[ref]
            problem = ray.get(ref)
            if problem is None and not (probe / node["NodeID"]).is_file():
                problem = "its file did not appear here"
            if problem is not None:
                failed.append(f"{node['NodeManagerAddress']} ({problem})")
        failed += [f"{pending[ref]['NodeManagerAddress']} (no answer in {STORAGE_TIMEOUT:g} s)" for ref in late]
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if failed:
        raise ClusterError(
            f"output folder {folder} is not shared with {'node' if len(failed) == 1 else 'nodes'} "
            f"{', '.join(failed)}: trials write TensorBoard events and checkpoints there, so on a cluster "
            "`output:` must be on storage every node mounts at the same path (NFS or similar)")


def _check_from_node(probe: str, secret: str, node_id: str) -> str | None:
    """Runs on one node: None if it sees the driver's file and can write beside it, else what is wrong."""
    folder = Path(probe)
    try:
        if (folder / "driver").read_text() != secret:
            return "it sees another folder there"
    except OSError:
        return "it does not see the driver's files there"
    try:
        (folder / node_id).write_text(secret)
    except OSError as exc:
        return f"cannot write there: {exc.strerror or exc}"
    return None
