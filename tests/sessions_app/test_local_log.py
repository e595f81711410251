"""A local session's output: capped in its log, which the session's processes never hold.

The session writes into a pipe; a copier of root's (in the session's cgroup) appends at most
``log_max_bytes`` of it to the log and drops the rest, so that printing without end (or writing
into a file descriptor fetched with pidfd_getfd) cannot fill the disk of the portal's var/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sessions_app.spawners import limits, log_copier
from sessions_app.spawners.base import ServerStatus
from tests.sessions_app.local_world import FIRST_TEST_PK, World, needs_isolation

A = FIRST_TEST_PK + 7
CAP = 64 * 1024
# The kernel's fd 1 is ipykernel's (it goes to the notebook); ipykernel keeps the one it
# inherited, the server's stdout, which the session may write into without end. 4 MiB through a
# 64 KiB pipe: the writer would block if the copier stopped reading.
FLOOD = """
import os
out = os.readlink(f"/proc/{os.getppid()}/fd/1")
def same(n):
    try:
        return n != "1" and os.readlink(f"/proc/self/fd/{n}") == out
    except OSError:
        return False
fd = next(int(n) for n in os.listdir("/proc/self/fd") if same(n))
for _ in range(64):
    os.write(fd, b"CHAR" * 65535 + b"\\n")
print("WORD")
"""


def test_the_copier_keeps_the_cap_and_drains_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    copier = subprocess.Popen(
        [sys.executable, "-E", "-s", log_copier.__file__, str(log), str(CAP)],
        stdin=subprocess.PIPE,
    )
    assert copier.stdin is not None
    for _ in range(64):
        copier.stdin.write(b"x" * 65536)  # blocks for good if the copier stops reading
    copier.stdin.close()

    assert copier.wait(60) == 0
    data = log.read_bytes()
    assert data == b"x" * CAP + log_copier.truncated_line(CAP)
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_short_output_is_kept_whole(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    result = subprocess.run(
        [sys.executable, "-E", "-s", log_copier.__file__, str(log), str(CAP)],
        input=b"hello\n",
        check=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert log.read_bytes() == b"hello\n"


def test_remove_ends_a_copier_whose_writer_escaped_the_stop(tmp_path: Path) -> None:
    # Without a cgroup: a writer the stop missed still holds the pipe, so the copier would not
    # see its end; remove() ends it all the same, and removes the log.
    log = tmp_path / "s.log"
    with log_copier.pipe(log, CAP, None) as (copier, output):
        writer = subprocess.Popen(["sleep", "600"], stdout=output)
    try:
        log_copier.remove(copier.pid, log)
        exited = copier.poll()
    finally:
        writer.kill()
        writer.wait()

    assert exited is not None
    assert not log.exists()


@pytest.mark.integration
@needs_isolation
def test_a_flooding_session_keeps_running_with_a_capped_log(world: World) -> None:
    world.spawner.log_max_bytes = CAP
    session = world.start(A)
    state = session.state
    log = Path(state["log_path"])
    cgroup = limits.session_cgroup(session.request.session_id)
    assert cgroup is not None
    copier = psutil.Process(state["copier"])

    first = session.run(FLOOD.replace("CHAR", "y").replace("WORD", "done"))
    # Past the cap: the writes neither block nor fail, and the server still answers.
    second = session.run(FLOOD.replace("CHAR", "z").replace("WORD", "still"))
    data = log.read_bytes()
    holders = [pid for pid in cgroup.pids() if pid != copier.pid and _holds(pid, log)]
    poll = world.spawner.poll(state)

    assert (first.status, first.ename, first.stdout.strip()) == ("ok", "", "done")
    assert (second.status, second.ename, second.stdout.strip()) == ("ok", "", "still")
    assert poll.status == ServerStatus.RUNNING
    assert b"y" * 1000 in data  # the kernel's own fd 1 reaches the log, through the copier
    assert len(data) <= CAP + len(log_copier.truncated_line(CAP))
    assert data.endswith(log_copier.truncated_line(CAP))
    assert b"z" * 1000 not in data
    assert copier.pid in cgroup.pids()  # ends with the session
    assert copier.uids().effective == 0
    assert holders == []  # the session's processes hold the pipe, never the file

    world.spawner.stop(state)

    assert not _running(copier)
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(log) in (p.info["cmdline"] or [])
    ]
    assert not log.exists()


def _holds(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
