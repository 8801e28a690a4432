"""A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package.

It listens on 127.0.0.1 only (no Unix socket, no other address), on a free
port, and accepts only password (scram-sha-256) logins from 127.0.0.1/32.
initdb and postgres refuse to run as root, so as root they run as the
unprivileged user `.ci/setup` creates (sweep-pg; the package's own postgres
user also does). fsync is off: the server and its data die with the session.

    server = PostgresServer.start()
    url = server.url(server.create_database())  # postgresql+psycopg://sweep:PASSWORD@127.0.0.1:PORT/t1
    url = server.schema_url()  # ...:PORT/postgres?options=-csearch_path%3Dt2: an empty schema, made quicker
    server.stop()
"""
from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import URL

SERVER_USERS = ("sweep-pg", "postgres")
SUPERUSER = "sweep"
START_TIMEOUT = 60.0


def _bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)])
    if not found:
        raise RuntimeError("no PostgreSQL under /usr/lib/postgresql: run `bash .ci/setup` (installs Debian's package)")
    return found[-1].parent


def _server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """setpriv's options that drop root for initdb/postgres, and that user (none needed when not root)."""
    if os.geteuid() != 0:
        return [], None
    for name in SERVER_USERS:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"], user
    raise RuntimeError(f"none of the users {', '.join(SERVER_USERS)} exists to run PostgreSQL as: run `bash .ci/setup`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A running server; `url()` gives a SQLAlchemy URL with the password in it."""

    def __init__(self, folder: Path, port: int, password: str, proc: subprocess.Popen, log: Path):
        self.folder, self.port, self.password, self.proc, self.log = folder, port, password, proc, log
        self._made = 0  # databases and schemas made, for fresh names

    @classmethod
    def start(cls) -> "PostgresServer":
        bindir = _bindir()
        as_user, user = _server_user()
        # Not under pytest's tmp folder: that is private to root, and the server user must reach its data.
        folder = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
        # Distinctive, so that grepping every output for it means something.
        password = "pw-" + secrets.token_hex(12)
        data, pwfile, log = folder / "data", folder / "pwfile", folder / "server.log"
        pwfile.write_text(password + "\n")
        if user is not None:
            for path in (folder, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            subprocess.run(["setpriv", *as_user, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                            f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
                           cwd=folder, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()}") from None
        pwfile.unlink()
        (data / "pg_hba.conf").write_text("# Password logins from 127.0.0.1 only.\n"
                                          "host all all 127.0.0.1/32 scram-sha-256\n")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        for _ in range(5):  # a free port may be taken between choosing it and binding it
            port = _free_port()
            with open(log, "ab") as out:
                # If pytest dies without stopping it, the kernel sends the server SIGINT (fast shutdown).
                proc = subprocess.Popen(["setpriv", "--pdeathsig=INT", *as_user, str(bindir / "postgres"),
                                         "-D", str(data), "-p", str(port)],
                                        cwd=folder, stdout=out, stderr=subprocess.STDOUT)
            server = cls(folder, port, password, proc, log)
            if server._wait_ready(bindir):
                return server
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{log.read_text() if log.exists() else ''}")

    def _wait_ready(self, bindir: Path) -> bool:
        """Poll pg_isready until the server accepts connections (True) or the process exits (False)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            ready = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)])
            if ready.returncode == 0:
                return True
            time.sleep(0.05)  # the poll interval, not a wait for an event
        self.proc.kill()
        self.proc.wait()
        return False

    def url(self, database: str = "postgres", password: str | None = None, driver: str = "psycopg",
            schema: str | None = None) -> str:
        """postgresql+<driver>://sweep:<password>@127.0.0.1:<port>/<database> (the real password by default);
        with `schema`, its tables go there (search_path)."""
        query = {"options": f"-csearch_path={schema}"} if schema else {}
        return URL.create(f"postgresql+{driver}", username=SUPERUSER, password=password or self.password,
                          host="127.0.0.1", port=self.port, database=database,
                          query=query).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def _name(self) -> str:
        self._made += 1
        return f"t{self._made}"

    def create_database(self) -> str:
        """A new empty database on the server (as a user's would be); its name."""
        name = self._name()
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def schema_url(self) -> str:
        """The URL of a new empty schema in the database postgres: as good as a fresh database, and
        a thousand times quicker to make (CREATE DATABASE copies a template: about a second here)."""
        name = self._name()
        self._admin(f'CREATE SCHEMA "{name}"')
        return self.url(schema=name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, then exit); the data folder goes with it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
