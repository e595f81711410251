"""A local session's time limit, kept by the session itself: its first process supervises it.

On Kubernetes the pod's ``activeDeadlineSeconds`` ends a session at its time limit whether or not
a portal process runs. Locally the session's first process plays that part: this small program
(standard library only, no Django) is what the worker starts, and it runs the session's command
(bwrap, or the session's boot in single-user mode) as its only child. It waits for that child or
for the deadline, whichever comes first:

- at the deadline it ends every process of the session (its cgroup, or without one its process
  group and the processes marked with the session's id): SIGTERM, then SIGKILL after a short
  grace, so that the session is over within about a second of its deadline;
- when the child ends first (a stop, a crash), whatever the session left running (slirp4netns,
  a kernel that outlived its server) is killed at once: a session ends with its server.

Either way it then leaves with the child's own exit status (the same code, or killed by the same
signal), so the worker reads the server's fate from it as before. It is started in a session of
its own and nothing of it depends on the worker, which may die or restart meanwhile: the session's
deadline holds with no portal process at all. The log copier (:mod:`.log_copier`) is spared, so
the last lines of the log are kept; it ends once the session's processes have all gone.

Usage: ``python -I -S deadline.py '<json settings>' -- <command…>`` (see :func:`supervised`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path

_SCRIPT = str(Path(__file__).resolve())
# Between SIGTERM and SIGKILL at the deadline: the target is "ended within 2 s of the deadline".
DEADLINE_GRACE_SECONDS = 1.0
_KILL_SECONDS = 5.0
_POLL_SECONDS = 0.02
# The longest single wait: the deadline is wall-clock time, read again after each wait, so a
# clock that is set meanwhile moves the end with it (as it moves the portal's expires_at).
_MAX_WAIT_SECONDS = 60.0


def supervised(
    python: str,
    command: list[str],
    deadline: float,
    cgroup_procs: list[str],
    spare: list[int],
    markers: dict[str, str],
) -> list[str]:
    """The command line that runs ``command`` under this supervisor.

    ``deadline``: when the session must end (seconds since the epoch; 0: never). ``cgroup_procs``:
    the session's ``cgroup.procs`` files (none: no cgroup, the session's processes are found by
    process group and by ``markers``, environment variables only they carry). ``spare``: pids
    left alone (the log copier).
    """
    settings = {
        "deadline": deadline,
        "cgroup_procs": cgroup_procs,
        "spare": spare,
        "markers": markers,
    }
    return [python, "-I", "-S", _SCRIPT, json.dumps(settings), "--", *command]


def _say(message: str) -> None:
    """A line for the session's log (this process's stderr is the log copier's pipe)."""
    with contextlib.suppress(OSError):
        os.write(2, f"[session] {message}\n".encode())


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The state follows the command name in parentheses, which may itself hold ")".
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True  # gone meanwhile


class SessionProcesses:
    """The processes of the supervised session (see :func:`supervised` for the settings)."""

    def __init__(self, cgroup_procs: list[str], spare: list[int], markers: dict[str, str]) -> None:
        self.cgroup_procs = [str(path) for path in cgroup_procs]
        self.spare = {int(pid) for pid in spare} | {os.getpid()}
        self.markers = [f"{key}={value}".encode() for key, value in markers.items()]

    def pids(self) -> set[int]:
        """Its processes that run (not zombies), this one and the spared ones left out."""
        found: set[int] = set()
        if self.cgroup_procs:
            for path in self.cgroup_procs:
                with contextlib.suppress(OSError, ValueError):
                    with open(path, encoding="ascii") as procs:
                        found.update(int(line) for line in procs.read().split())
        else:
            found = self._grouped_or_marked()
        return {pid for pid in found - self.spare if not _zombie(pid)}

    def _grouped_or_marked(self) -> set[int]:
        """Without a cgroup: the processes of this process group (the server) and those that
        carry every marker (kernels start sessions of their own)."""
        group = os.getpgrp()
        found: set[int] = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == group:
                    found.add(pid)
                    continue
                if self.markers:
                    with open(f"/proc/{pid}/environ", "rb") as env:
                        variables = env.read().split(b"\0")
                    if all(marker in variables for marker in self.markers):
                        found.add(pid)
        return found

    def end(self, grace: float) -> set[int]:
        """SIGTERM its processes, SIGKILL those left after ``grace`` (at once if 0); return the
        pids that survived. A process forked meanwhile is caught by the next reading."""
        pids = self.pids()
        if grace > 0:
            _send(pids, signal.SIGTERM)
            until = time.monotonic() + grace
            while pids and time.monotonic() < until:
                time.sleep(_POLL_SECONDS)
                pids = self.pids()
        until = time.monotonic() + _KILL_SECONDS
        while pids and time.monotonic() < until:
            _send(pids, signal.SIGKILL)
            time.sleep(_POLL_SECONDS)
            pids = self.pids()
        return pids


def _send(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait(child: int, deadline: float) -> int | None:
    """The child's wait status once it ends, or None when the deadline comes first."""
    try:
        pidfd: int | None = os.pidfd_open(child)
    except (AttributeError, OSError):
        pidfd = None  # a kernel older than 5.3: poll twice a second instead
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return status
        left = deadline - time.time() if deadline > 0 else _MAX_WAIT_SECONDS
        if left <= 0:
            return None
        wait = min(left, _MAX_WAIT_SECONDS)
        if pidfd is None:
            time.sleep(min(wait, 0.5))
        else:
            # Readable once the child has ended.
            select.select([pidfd], [], [], wait)


def _close_inherited() -> None:
    """Close what the child needed (bwrap's descriptors, the info pipe): holding them would keep
    the pipe's reader waiting and the folders open."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


def _leave_as(status: int) -> None:
    """Exit the way the child did: with its code, or killed by its signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        import resource

        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the child's core is enough
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set (nor need be)
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal that does not end a process by default
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: deadline.py SETTINGS -- COMMAND...")
    settings = json.loads(argv[1])
    command = argv[3:]
    deadline = float(settings["deadline"])
    session = SessionProcesses(settings["cgroup_procs"], settings["spare"], settings["markers"])
    if os.getpgrp() != os.getpid():
        # A process group of its own (local.py starts it so already): at the end it kills its
        # group, which must never be its parent's.
        os.setsid()
    child = os.fork()
    if child == 0:
        # What Python ignores for itself (as subprocess's restore_signals does): the session's
        # programs expect SIGPIPE to end a writer whose reader is gone (``yes | head``).
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            _say(f"Cannot run {command[0]}: {exc.strerror}")
        os._exit(127)
    _close_inherited()
    # After the fork, so the child keeps the usual score: the OOM killer must choose the
    # session's own processes, never the one that keeps its deadline.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("-1000")
    status = _wait(child, deadline)
    if status is None:
        _say("The session reached its time limit: it is being ended.")
        left = session.end(DEADLINE_GRACE_SECONDS)
        status = os.waitpid(child, 0)[1]
    else:
        left = session.end(0)
    if left:
        _say(f"Processes {sorted(left)} did not end.")
    _leave_as(status)


if __name__ == "__main__":
    main(sys.argv)
