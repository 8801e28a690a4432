"""A real Ray cluster, started the way a user starts one, every address on the loopback range.

Head on 127.0.0.2 with no CPUs (so trials run on the workers), worker nodes on
127.0.0.3 and 127.0.0.4 with one CPU each, token authentication as Ray sets it
up (`ray get-auth-token --generate` writes ~/.ray/auth_token, every `ray start`
runs with RAY_AUTH_MODE=token and finds it there; the driver, `sweep run
--address`, finds it there by itself: the nodes and the driver share a HOME of
the test's own). Ray turns 127.0.0.1 into the machine's network address, so the cluster
uses other loopback addresses; nothing is sent anywhere else.

Order matters in this module: the sweeps run on both worker nodes, then one
worker node is killed, then a node that cannot see the output folder joins.
"""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep_process import ENV, query, results, start, wait_gone, wait_held

RAY = str(Path(sys.executable).with_name("ray"))
HEAD, WORKERS, UNSHARED = "127.0.0.2", ("127.0.0.3", "127.0.0.4"), "127.0.0.5"
EPOCHS, IMAGES = 3, 1000
SPEC = {
    "name": "syn", "dataset": {"name": "synthetic", "train_limit": IMAGES, "test_limit": 200},
    "epochs": EPOCHS, "stats_every": 5,
    "grid": {"activation": ["tanh", "relu"], "init": ["xavier_uniform"],
             "optimizer": [{"name": "adam", "lr": 0.001}, {"name": "sgd", "lr": 0.01}]},
    "resources": {"cpu": 1, "max_concurrent": 2},
    "output": "out",
}
# A client the cluster refuses gives up after 2 tries (about 2 s), not Ray's default 20: only the wait is shorter.
REFUSED_CLIENT_ENV = {"RAY_gcs_server_port_wait_time_s": "2"}
TRIALS = sorted(f"{a}-xavier_uniform-{o}-s0" for a in ("tanh", "relu") for o in ("adam-lr0.001", "sgd-lr0.01"))


def listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """(address, process name, port) of every TCP socket the processes `pids` listen on."""
    found = []
    for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:  # a socket of no process we may see
            continue
        local, users = fields[3], fields[5]
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+),', users):
            if int(pid) in pids:
                host, _, port = local.rpartition(":")
                found.append((host, name, int(port)))
    return found


def session_of(pid: int) -> set[int]:
    """The processes of the session `pid` leads and their descendants (a sweep's Ray processes)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[3]))  # parent, session
    members = {p for p, (_, sid) in stats.items() if sid == pid}
    while True:
        more = {p for p, (parent, _) in stats.items() if parent in members} - members
        if not more:
            return members
        members |= more


def test_a_local_sweep_listens_on_loopback_only_and_refuses_a_client_without_its_token(tmp_path):
    held = TRIALS[0]
    spec = {**SPEC, "grid": {**SPEC["grid"], "activation": ["relu"], "optimizer": [SPEC["grid"]["optimizer"][0]]}}
    proc = start(tmp_path, spec, holds={held: "epoch1.batch2"})
    try:
        wait_held(tmp_path, proc, {held: "epoch1.batch2"})
        sockets = listening(session_of(proc.pid))
        names = {name for _, name, _ in sockets}
        assert {"gcs_server", "raylet", "python"} <= names, sockets  # the driver is "python"
        assert {host for host, _, _ in sockets} <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, sockets
        gcs = next(port for _, name, port in sockets if name == "gcs_server")
        # Ray's own client, told to stay on loopback (else it turns 127.0.0.1 into this machine's address).
        code = f"import ray; ray.init(address='127.0.0.1:{gcs}', logging_level='ERROR'); print(len(ray.nodes()))"
        client = {**ENV, **REFUSED_CLIENT_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        refused = subprocess.run([sys.executable, "-c", code], env={**client, "RAY_AUTH_MODE": "disabled"},
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and "InvalidAuthToken" in refused.stderr, refused.stderr[-2000:]
        admitted = subprocess.run([sys.executable, "-c", code], env={**client, "RAY_AUTH_MODE": "token"},
                                  capture_output=True, text=True, timeout=120)  # the token in ~/.ray/auth_token
        assert (admitted.returncode, admitted.stdout) == (0, "1\n"), admitted.stderr[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def test_an_address_where_nothing_answers_is_one_line(tmp_path):
    address = f"127.0.0.9:{free_port('127.0.0.9')}"
    proc = start(tmp_path, SPEC, args=("--address", address))
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out) == (1, "")
    assert err == (f"Error: no Ray cluster answers at {address} (Connection refused); start one there with "
                   f"`ray start --head --port {address.split(':')[1]}` or check --address\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Cluster:
    """Ray nodes started with `ray start --block`, each in a session of its own, all killed at the end."""

    def __init__(self, root: Path):
        self.root, self.nodes = root, {}
        self.env = {**ENV, "HOME": str(root / "home"), "RAY_USAGE_STATS_ENABLED": "0",
                    # The head's health checks notice a dead node within seconds, not the default 30 s.
                    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                    "RAY_health_check_failure_threshold": "4"}
        (root / "home").mkdir()
        self.port = free_port(HEAD)
        self.address = f"{HEAD}:{self.port}"

    def start_node(self, ip: str, *args: str, wrap: tuple[str, ...] = ()) -> subprocess.Popen:
        log = self.root / f"node-{ip}.log"
        argv = [RAY, "start", "--block", "--node-ip-address", ip, "--temp-dir", str(self.root / "ray"),
                "--disable-usage-stats", *args]
        if wrap:  # `wrap` ends with a shell command that prepares, then execs ray (e.g. in a mount namespace)
            argv = [*wrap[:-1], f"{wrap[-1]} {shlex.join(argv)}"]
        with open(log, "w") as out:
            # Every node is told to use token authentication: `ray start --address` does not turn it on by itself.
            proc = subprocess.Popen(argv, env={**self.env, "RAY_AUTH_MODE": "token"}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes[ip] = proc
        deadline = time.monotonic() + 180
        while "Ray runtime started." not in log.read_text():  # `ray start` says so once the node has joined
            assert proc.poll() is None, f"ray start on {ip} failed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"ray start on {ip} timed out:\n{log.read_text()}"
            time.sleep(0.2)
        return proc

    def stop(self) -> None:
        for proc in self.nodes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        # Whatever left its session (Ray's own daemons): every process naming this cluster's folder.
        subprocess.run(["pkill", "-KILL", "-f", str(self.root)], check=False)

    def nodes_alive(self) -> dict[str, str]:
        """{node id: node ip} of the alive nodes, asked of the cluster by a client holding the token."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR');"
                "print(json.dumps({n['NodeID']: n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']}))")
        done = subprocess.run([sys.executable, "-c", code % self.address], env={**self.env, "RAY_AUTH_MODE": "token"},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster():
    # Short: Ray's unix sockets live under --temp-dir, and their paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="sweep-cluster-", dir="/tmp"))
    c = Cluster(root)
    try:
        done = subprocess.run([RAY, "get-auth-token", "--generate"], env=c.env, capture_output=True, text=True)
        assert done.returncode == 0 and (root / "home" / ".ray" / "auth_token").is_file(), done.stderr
        c.start_node(HEAD, "--head", "--port", str(c.port), "--num-cpus", "0", "--include-dashboard", "false",
                     "--ray-client-server-port", str(free_port(HEAD)))
        for ip in WORKERS:
            c.start_node(ip, "--address", c.address, "--num-cpus", "1")
        yield c
    finally:
        c.stop()


def run(folder: Path, cluster: Cluster, spec=SPEC, env=None) -> subprocess.CompletedProcess:
    proc = start(folder, spec, args=("--address", cluster.address), env={**cluster.env, **(env or {})})
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_complete(folder: Path) -> None:
    """Every trial completed; every epoch, snapshot and TensorBoard point exactly once."""
    assert dict(query(folder, "SELECT name, status FROM trials")) == dict.fromkeys(TRIALS, "completed")
    assert {name: [r[0] for r in rows] for name, rows in results(folder).items()} == {
        name: list(range(EPOCHS + 1)) for name in TRIALS}
    # 1000 images in batches of 64: 16 batches per epoch, statistics at batches 5, 10 and 15 (the last full one).
    assert query(folder, "SELECT COUNT(DISTINCT step) FROM layer_stats GROUP BY trial_id") == [(3 * EPOCHS,)] * 4
    for name in TRIALS:
        acc = EventAccumulator(str(folder / "out" / "syn" / name))
        acc.Reload()
        assert [e.step for e in acc.Scalars("accuracy/test")] == [IMAGES * e for e in range(EPOCHS + 1)], name
        train_steps = [e.step for e in acc.Scalars("loss/train")]
        assert train_steps == sorted(set(train_steps)) and len(train_steps) == 3 * EPOCHS, name


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory) -> Path:
    """The sweep run once on the cluster, undisturbed."""
    folder = tmp_path_factory.mktemp("on-cluster")
    done = run(folder, cluster)
    assert done.returncode == 0, done.stderr
    return folder


def test_a_sweep_runs_on_both_worker_nodes_everything_stored_once(cluster, reference):
    assert_complete(reference)
    workers = {node_id[:8]: ip for node_id, ip in cluster.nodes_alive().items() if ip in WORKERS}
    nodes = dict(query(reference, "SELECT name, node FROM trials"))
    host = socket.gethostname()
    assert all(node.startswith(f"{host}/") and node.split("/")[1] in workers for node in nodes.values()), nodes
    assert {workers[node.split("/")[1]] for node in nodes.values()} == set(WORKERS)  # both nodes trained
    report = subprocess.run([sys.executable, "-m", "sweep.cli", "report", "--trials", "--format", "csv",
                             "--columns", "trial,final_test_acc", "--db", str(reference / "out" / "sweep.db")],
                            env=ENV, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    finals = dict(query(reference, "SELECT name, final_test_acc FROM trials"))
    lines = report.stdout.strip().splitlines()
    assert lines[0] == "trial,final_test_acc"
    ranked = [line.split(",")[0] for line in lines[1:]]
    # Best first: the stored accuracies in the report's order are the sorted ones (equal ones in any order).
    assert sorted(ranked) == sorted(finals)
    assert [finals[n] for n in ranked] == sorted(finals.values(), reverse=True)
    # csv writes each float in full (pandas' shortest repr that reads back the same): the stored values exactly
    assert [float(line.split(",")[1]) for line in lines[1:]] == [finals[n] for n in ranked]


def test_without_the_token_or_with_another_the_cluster_refuses_the_driver_in_one_line(cluster, tmp_path):
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    done = run(tmp_path / "none", cluster, env={"HOME": str(empty_home), **REFUSED_CLIENT_ENV})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"Error: the Ray cluster at {cluster.address} asks for a token and this driver has none: "
                           "copy the cluster's token (its ~/.ray/auth_token, or `ray get-auth-token` there) to this "
                           "machine's ~/.ray/auth_token, or set RAY_AUTH_TOKEN\n")
    done = run(tmp_path / "wrong", cluster, env={"RAY_AUTH_TOKEN": "0" * 32, **REFUSED_CLIENT_ENV})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"Error: the Ray cluster at {cluster.address} refused this driver's token "
                                  "(from RAY_AUTH_TOKEN): copy the cluster's token")
    assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["spec.yaml"]  # nothing written
    assert sorted(p.name for p in (tmp_path / "wrong").iterdir()) == ["spec.yaml"]


def test_a_driver_with_another_ray_version_is_refused_in_one_line(cluster, tmp_path):
    # The driver believes it is Ray 2.0.0; the cluster's metadata says otherwise: Ray's own check refuses it.
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "spec.yaml").write_text(json.dumps(SPEC))
    code = ("import sys, ray; ray.__version__ = '2.0.0'; from sweep.cli import main; "
            f"sys.exit(main(['run', 'spec.yaml', '--address', {cluster.address!r}]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=cluster.env, capture_output=True, text=True)
    python = ".".join(map(str, sys.version_info[:3]))
    import ray

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"Error: the Ray cluster at {cluster.address} runs Ray {ray.__version__} on Python "
                           f"{python}, this driver Ray 2.0.0 on Python {python}: run the driver with the cluster's "
                           f"versions (pip install 'ray[tune]=={ray.__version__}')\n")
    assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"]


def test_a_worker_node_killed_mid_sweep_its_trial_continues_on_the_other(cluster, reference, tmp_path):
    held = "tanh-xavier_uniform-adam-lr0.001-s0"
    proc = start(tmp_path, SPEC, holds={held: "epoch2.batch8"}, args=("--address", cluster.address),
                 env=cluster.env)
    worker = wait_held(tmp_path, proc, {held: "epoch2.batch8"})[held]
    raylet = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the worker's parent
    assert Path(f"/proc/{raylet}/comm").read_text().strip() == "raylet"
    node_ip = next(ip for ip in WORKERS if f"--node_ip_address={ip}" in
                   Path(f"/proc/{raylet}/cmdline").read_text().replace("\0", " "))
    os.kill(raylet, signal.SIGKILL)
    wait_gone([raylet, worker])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"resumed {held} from epoch 1" in out, out  # from its checkpoint in the shared folder
    assert results(tmp_path) == results(reference)  # nothing lost, nothing twice, the same numbers
    assert_complete(tmp_path)
    survivor = next(ip for ip in WORKERS if ip != node_ip)
    assert survivor in cluster.nodes_alive().values() and node_ip not in cluster.nodes_alive().values()
    survivor_id = next(i for i, ip in cluster.nodes_alive().items() if ip == survivor)[:8]
    assert dict(query(tmp_path, "SELECT name, node FROM trials"))[held].endswith(f"/{survivor_id}")


def test_a_node_that_does_not_see_the_output_folder_stops_the_sweep_before_training(cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # A node in a mount namespace of its own, an empty tmpfs over the output folder: what a node without
    # the shared file system sees.
    cluster.start_node(UNSHARED, "--address", cluster.address, "--num-cpus", "1",
                       wrap=("unshare", "-m", "--propagation", "private", "sh", "-c",
                             f"mount -t tmpfs sweep-test {out} && exec"))
    done = run(tmp_path, cluster)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"Error: output folder {out / 'syn'} is not shared with node {UNSHARED} (it does not see "
                           "the driver's files there): trials write TensorBoard events and checkpoints there, so on "
                           "a cluster `output:` must be on storage every node mounts at the same path (NFS or "
                           "similar)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "spec.yaml"]
    assert list(out.iterdir()) == []  # no database, no sweep folder, nothing trained


def test_a_users_network_reaches_a_worker_node_that_has_no_copy_of_its_file(cluster, tmp_path):
    """Last in this module: it replaces the worker nodes. The one node left to train sees an empty folder where
    the spec's code/ folder is: the factory's file reaches it only through Ray's py_modules."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_nets.py").write_text(
        "from pathlib import Path\nfrom torch import nn\n"
        f"Path({str(tmp_path / 'imported-from')!r}).write_text(__file__)\n"
        "def build(activation, num_classes, input_shape):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), activation(), nn.Linear(16, num_classes))\n")
    for ip, proc in list(cluster.nodes.items()):
        if ip != HEAD and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    cluster.start_node("127.0.0.6", "--address", cluster.address, "--num-cpus", "1",
                       wrap=("unshare", "-m", "--propagation", "private", "sh", "-c",
                             f"mount -t tmpfs sweep-test {code} && exec"))
    spec = {**SPEC, "name": "own", "model": {"factory": "code/my_nets.py:build"}, "epochs": 1,
            "grid": {"activation": ["tanh"], "optimizer": [{"name": "adam", "lr": 0.001}]}}
    done = run(tmp_path, cluster, spec)
    assert done.returncode == 0, done.stderr
    assert query(tmp_path, "SELECT status, epochs_done FROM trials") == [("completed", 1)]
    node = query(tmp_path, "SELECT node FROM trials")[0][0].split("/")[1]
    assert cluster.nodes_alive()[next(i for i in cluster.nodes_alive() if i.startswith(node))] == "127.0.0.6"
    # The worker imported the copy Ray unpacked in its session folder, not the spec's file.
    where = Path((tmp_path / "imported-from").read_text())
    assert "runtime_resources" in where.parts and where.name == "my_nets.py", where
    assert query(tmp_path, "SELECT COUNT(DISTINCT layer) FROM layer_stats") == [(3,)]
