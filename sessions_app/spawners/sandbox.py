"""The bubblewrap sandbox a local session runs in (multi-user mode).

``bwrap`` runs as root and builds the session's file system from nothing (not ``--ro-bind / /``):
the OS (``/usr`` with the merged-usr links, ``/etc``) and the session software (its environment and
the Python installation it was made from, :mod:`.software`; not the portal's own virtual
environment) read-only at their own paths; the person's home and scratch read-write and the
notebooks library read-only at the same paths as outside, so that the state, the ``scratch`` link
and ``HOME`` mean the same on both sides; the session's socket folder read-write; a private
``/tmp`` and ``/dev/shm``, a new ``/proc`` in a PID namespace of its own (with new IPC, UTS and
cgroup namespaces). Nothing of the portal's ``var/`` or code, other people's folders, ``/run`` or
``/var`` (PostgreSQL's Unix socket with trust authentication lives in ``/var/run/postgresql``)
exists in there.

Inside, ``setpriv`` drops to the person's account with no groups, no capabilities (also none
in the bounding set) and ``no_new_privs``, so a setuid program gains nothing. bwrap keeps only
``CAP_SETUID``, ``CAP_SETGID`` and ``CAP_SETPCAP`` for that step (as root it drops the rest).

Bind sources the person controls are never named by path: each folder is opened by the portal
without following links (``O_PATH | O_NOFOLLOW``), checked, and handed to bwrap as a file
descriptor (``--bind-fd``), so a link planted in the home cannot make root bind something else.

Not ``--die-with-parent``: sessions outlive a worker's restart (the next worker finds them by
their cgroup and state file). bwrap's parent is the session's deadline supervisor
(:mod:`.deadline`), started apart from the worker; a stop, or that supervisor at the session's
time limit, kills the session's whole cgroup.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sessions_app.spawners.base import SpawnerError
from sessions_app.spawners.os_accounts import SessionAccount, run_as_prefix
from sessions_app.spawners.session_net import RESOLV_CONF, net_problem

logger = logging.getLogger(__name__)

BWRAP = "bwrap"
# Where the bootstrap's files appear inside (a path of the sandbox only: nothing is bound there).
BOOT_DIR = Path("/opt/jupyter-portal")
_MERGED_USR = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
_PROBE_TIMEOUT_SECONDS = 10


@dataclass
class SandboxSpec:
    """What one session's sandbox holds besides the OS and the session software."""

    account: SessionAccount
    home: Path
    socket_dir: Path
    scratch: Path | None = None
    library: Path | None = None
    # Files made inside (path -> content), read-only: the bootstrap scripts.
    files: dict[Path, bytes] = field(default_factory=dict)
    # Where the library appears inside (default: ``home/notebooks-library``).
    library_target: Path | None = None
    # The session software's folders (software.py), shown read-only at their own paths, and
    # folders in them shown empty.
    software: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    # A network namespace of its own (session_net.py): bwrap reports the sandbox's first pid on
    # Sandbox.info_fd, for slirp4netns to join it.
    own_network: bool = False


class Sandbox:
    """A bwrap command line and the file descriptors it needs; close() after the start."""

    def __init__(self, spec: SandboxSpec, command: list[str]) -> None:
        self.fds: list[int] = []
        self.info_fd: int | None = None  # read end of bwrap's --info-fd (own_network)
        try:
            self.argv = self._build(spec, command)
        except BaseException:
            self.discard()
            raise

    def close(self) -> None:
        """Close what bwrap was given (not ``info_fd``: the caller reads and closes it)."""
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def discard(self) -> None:
        self.close()
        if self.info_fd is not None:
            os.close(self.info_fd)
            self.info_fd = None

    def _open(self, path: Path, owner: int, what: str, dir_fd: int | None = None) -> int:
        """An O_PATH descriptor of the folder ``path`` (never a link), owned by ``owner``."""
        try:
            fd = os.open(
                path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
            )
        except OSError as exc:
            raise SpawnerError(f"The session's {what} {path} is not a folder: {exc}") from exc
        self.fds.append(fd)
        st = os.fstat(fd)
        if st.st_uid != owner:
            raise SpawnerError(
                f"The session's {what} {path} belongs to uid {st.st_uid}, not {owner}."
            )
        return fd

    def _build(self, spec: SandboxSpec, command: list[str]) -> list[str]:
        uid = spec.account.uid
        args = [
            BWRAP,
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname", "jupyter",
            "--new-session",
            *system_binds(spec.software),
            *_hide(spec.hidden),
            "--proc", "/proc",
            "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/dev/shm",
            "--perms", "1777", "--tmpfs", "/tmp",
        ]  # fmt: skip
        files = dict(spec.files)
        if spec.own_network:
            read_end, write_end = os.pipe()
            self.info_fd = read_end
            self.fds.append(write_end)
            args += ["--unshare-net", "--info-fd", str(write_end)]
            # Names are resolved by slirp4netns's forwarder (the machine's resolver, or one on
            # its loopback, is out of reach from the session's namespace).
            files[Path(os.path.realpath("/etc/resolv.conf"))] = RESOLV_CONF
        mounts = _MountPoints(_system_bind_targets(spec.software))
        home_fd = self._open(spec.home, uid, "home")
        args += [*mounts.parents(spec.home), "--bind-fd", str(home_fd), str(spec.home)]
        if spec.library is not None and spec.library.parent == spec.home:
            # Opened from the home's descriptor, so no path component is the person's; it must
            # be root's (the portal's clone), which the person cannot fake. Read-only on top of
            # the home's copy, so that it cannot be changed, renamed or removed inside.
            try:
                library_fd = self._open(Path(spec.library.name), 0, "notebooks library", home_fd)
            except SpawnerError as exc:
                # Something of the person's (a link, a folder of theirs) where the clone was:
                # not bound; the session starts without the library rather than not at all.
                logger.warning("Notebooks library not bound: %s", exc)
            else:
                args += ["--ro-bind-fd", str(library_fd), str(spec.library)]
        if spec.scratch is not None:
            scratch_fd = self._open(spec.scratch, uid, "scratch folder")
            args += [*mounts.parents(spec.scratch), "--bind-fd", str(scratch_fd), str(spec.scratch)]
        socket_fd = self._open(spec.socket_dir, uid, "socket folder")
        args += [
            *mounts.parents(spec.socket_dir),
            "--bind-fd",
            str(socket_fd),
            str(spec.socket_dir),
        ]
        for path, content in files.items():
            fd = os.memfd_create(path.name)
            self.fds.append(fd)
            os.write(fd, content)
            os.lseek(fd, 0, os.SEEK_SET)
            # Readable folders: Python lists a folder on sys.path before it imports from it.
            args += [*mounts.parents(path, "0755"), "--perms", "0444"]
            args += ["--ro-bind-data", str(fd), str(path)]
        args += [
            "--chdir", str(spec.home),
            # As root, bwrap drops every capability unless told: keep only what setpriv needs.
            "--cap-add", "CAP_SETUID",
            "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_SETPCAP",
            "--",
            *run_as_prefix(spec.account),
            *command,
        ]  # fmt: skip
        return args


def _hide(folders: tuple[Path, ...]) -> list[str]:
    """An empty, read-only folder over each of ``folders``."""
    args: list[str] = []
    for folder in folders:
        args += ["--perms", "0555", "--tmpfs", str(folder), "--remount-ro", str(folder)]
    return args


class _MountPoints:
    """Makes the folders above a mount point, traversable (0711) rather than bwrap's 0700.

    bwrap creates missing parents of a destination as root-only folders, which the session's
    account could not pass through (``/tmp/…/home`` of a test, ``/root`` above the Python).
    """

    def __init__(self, binds: list[Path]) -> None:
        self.binds = list(binds)  # folders that exist inside (bind mounts): nothing to make
        self.made: set[Path] = set()

    def parents(self, dest: Path, mode: str = "0711") -> list[str]:
        args: list[str] = []
        for parent in reversed(dest.parents[:-1]):  # from the top, without "/"
            inside_bind = any(parent == b or parent.is_relative_to(b) for b in self.binds)
            if parent in self.made or inside_bind:
                continue
            args += ["--perms", mode, "--dir", str(parent)]
            self.made.add(parent)
        self.binds.append(dest)
        return args


def _software_prefixes(software: tuple[Path, ...]) -> list[Path]:
    """The session software's folders that ``/usr`` does not already hold."""
    prefixes = dict.fromkeys(Path(p).resolve() for p in software)
    return [prefix for prefix in prefixes if not prefix.is_relative_to("/usr")]


def _system_bind_targets(software: tuple[Path, ...]) -> list[Path]:
    return [Path("/usr"), Path("/etc"), *_software_prefixes(software)] + [
        Path("/") / name for name in _MERGED_USR if (Path("/") / name).is_dir()
    ]


@functools.cache
def system_binds(software: tuple[Path, ...] = ()) -> tuple[str, ...]:
    """Read-only binds of the OS and the session software, at their own paths."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _MERGED_USR:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", "/etc", "/etc"]
    # The software's folders sit at their own paths, below folders (e.g. a 0700 /root) that
    # are made traversable, not readable, in the new root.
    mounts = _MountPoints([Path("/usr"), Path("/etc")])
    for prefix in _software_prefixes(software):
        args += [*mounts.parents(prefix), "--ro-bind", str(prefix), str(prefix)]
    return tuple(args)


@functools.cache
def sandbox_problem() -> str:
    """Why sessions cannot be sandboxed here ("" when they can): bwrap runs a program as
    another uid in a new PID namespace."""
    if os.geteuid() != 0:
        return "the portal does not run as root"
    for program in (BWRAP, "setpriv"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install bubblewrap util-linux)"
    if net_problem():
        return net_problem()
    probe = [
        BWRAP, "--unshare-pid", "--unshare-net", *system_binds(),
        "--proc", "/proc", "--dev", "/dev",
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
        "--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
        "--inh-caps=-all", "--bounding-set=-all", "--", "/usr/bin/id", "-u",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            probe, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap cannot run: {exc}"
    if result.returncode != 0 or result.stdout.strip() != "65534":
        return f"bwrap does not work here: {(result.stderr or result.stdout).strip()[:200]}"
    return ""


def is_socket_of(path: Path, uid: int | None) -> bool:
    """Whether ``path`` is a Unix socket (owned by ``uid`` when given), not a link to one."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and (uid is None or st.st_uid == uid)
