"""A private PostgreSQL cluster for tests and benchmarks that stop and restart the database.

The machine's own service (port 5432) is shared by every test and by people working on the
machine: stopping it would break them. A :class:`PgCluster` is a cluster of its own, made with
the machine's ``initdb`` in a temporary folder, on a port of its own, with ``trust``
authentication on 127.0.0.1 only, started and stopped with ``pg_ctl``. The chaos tests
(``tests/chaos/``) stop and restart it under a running portal.

PostgreSQL refuses to run as root: as root, the folder is handed to the ``postgres`` OS account
and every ``initdb``/``pg_ctl`` runs as that account.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

# Fixed ports stay out of the kernel's ephemeral range (32768-60999), where a client socket of
# this machine could take the port while the cluster is stopped.
PORTS = range(15000, 20000)
START_TIMEOUT = 60
# The account PostgreSQL runs as when the caller is root (initdb refuses root).
OS_ACCOUNT = "postgres"


class PgClusterError(RuntimeError):
    """initdb or pg_ctl failed; the message carries the end of the server's log."""


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL of the machine that has initdb and pg_ctl (``PG_BIN_DIR`` to
    choose another)."""
    chosen = os.environ.get("PG_BIN_DIR")
    candidates = [Path(chosen)] if chosen else []
    versions = Path("/usr/lib/postgresql")
    if versions.is_dir():
        numbered = [p for p in versions.iterdir() if p.name.replace(".", "").isdigit()]
        candidates += [p / "bin" for p in sorted(numbered, key=lambda p: -float(p.name))]
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PgClusterError("PostgreSQL's initdb and pg_ctl are not installed (postgresql package)")


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (connections in TIME_WAIT do not count: PostgreSQL
    binds with SO_REUSEADDR, so a port it just left is free for it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port of PORTS on 127.0.0.1, from a random start (other clusters beside ours)."""
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates:
        if port_free(port):
            return port
    raise PgClusterError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass
class PgCluster:
    """A cluster in ``root`` (``root/data``, its log ``root/postgresql.log``) on ``port``.

    Use :meth:`create` (initdb), then :meth:`start`; as a context manager it is started on
    entry and stopped and removed on exit. Every database of it is reached as
    ``postgres://postgres@127.0.0.1:<port>/<name>`` without a password.
    """

    root: Path
    port: int
    bin_dir: Path = field(default_factory=postgres_bin_dir)

    @classmethod
    def create(cls, parent: Path | None = None, port: int | None = None) -> PgCluster:
        """Make a new cluster (initdb) in a new temporary folder under ``parent``."""
        root = Path(tempfile.mkdtemp(prefix="jlp-pg-", dir=parent)).resolve()
        cluster = cls(root, port or free_port())
        try:
            cluster._initdb()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    # --- where ------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgresql.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it accepts connections."""
        self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT), "-l", str(self.log_path))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (connections cut, a clean shutdown), ``immediate`` (as
        if it crashed: recovery at the next start) or ``smart``. Nothing if it is not running."""
        if self.running():
            self._pg_ctl("stop", "-w", "-t", str(START_TIMEOUT), "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        done = self._run([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return done.returncode == 0

    def create_database(self, name: str) -> str:
        """Create database ``name`` (the server must run); returns its URL."""
        import psycopg  # here: importing this module needs no database driver

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server (immediately: its data goes) and remove the folder."""
        with contextlib.suppress(PgClusterError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    # --- inside -----------------------------------------------------------------------------

    def _initdb(self) -> None:
        account = _os_account()
        if account is not None:
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)
        done = self._run([
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "--username", "postgres",
            "--auth", "trust", "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync",
        ])  # fmt: skip
        if done.returncode:
            raise PgClusterError(f"initdb failed:\n{done.stdout[-3000:]}")
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# tests/pg_cluster.py\n"
                "listen_addresses = '127.0.0.1'\n"
                # Its own socket folder: /run/postgresql is the machine's service's.
                f"unix_socket_directories = '{self.root}'\n"
                # A portal's web pool, three workers' threads and beat at once, with room.
                "max_connections = 300\n"
                # The data is thrown away after the test, and a crash of the machine is not
                # under test; a stop in any mode is, and the kernel keeps what was written.
                "fsync = off\n"
                "full_page_writes = off\n"
                f"port = {self.port}\n"
            )

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        done = self._run(command)
        if done.returncode:
            raise PgClusterError(
                f"pg_ctl {args[0]} failed ({done.returncode}): {done.stdout[-1000:]}\n"
                f"--- the server's log ---\n{self.log_tail()}"
            )

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        account = _os_account()
        return subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # The server must not inherit our environment's PG* variables or a root HOME.
            env={"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(self.root)},
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
            # Out of the terminal's process group: a Ctrl+C reaches the test, whose teardown
            # stops the server, not the server half-way through that.
            start_new_session=True,
            timeout=START_TIMEOUT + 30,
        )


def _os_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_ACCOUNT)
    except KeyError:
        raise PgClusterError(
            f"running as root, PostgreSQL needs the {OS_ACCOUNT!r} OS account"
        ) from None
