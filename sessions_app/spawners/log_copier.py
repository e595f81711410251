"""Copy a local session's output (a pipe, its stdin) into its log file, up to a cap.

Run as a script by :mod:`.local` (root's, or the portal user's; no Django): the session's
processes hold only the pipe's write end, never the log file, which lies in the portal's var/
beside its database. Past ``limit`` bytes the copier writes one final line and then keeps
reading and dropping what comes, so that the session's writes neither block nor fail. It ends
when every writer has closed the pipe (the session ended), or with the session's cgroup.

Usage: ``python -E -s log_copier.py <log path> <limit bytes>``, with the pipe as stdin.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

_CHUNK = 65536
_SCRIPT = str(Path(__file__).resolve())


def truncated_line(limit: int) -> bytes:
    """The last line of a log that reached ``limit``."""
    return f"\n[log truncated: more than {limit} bytes; the rest is dropped]\n".encode()


def copy(source: int, target: int, limit: int) -> None:
    """Copy ``source`` to ``target`` until end of file, at most ``limit`` bytes of it."""
    left = limit
    while True:
        try:
            data = os.read(source, _CHUNK)
        except InterruptedError:
            continue
        if not data:
            return
        if left < 0:
            continue  # already truncated: drop, but keep the pipe flowing
        kept = data[:left]
        if kept:
            _write_all(target, kept)
        left -= len(kept)
        if len(data) > len(kept):
            _write_all(target, truncated_line(limit))
            left = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# The copiers this OS process started, so that their exit is reaped (see remove()).
_started: dict[int, subprocess.Popen[bytes]] = {}


@contextlib.contextmanager
def pipe(
    log_path: Path, limit: int, preexec_fn: Callable[[], None] | None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start the copier for ``log_path``; yield it and the pipe's write end, for the session's
    stdout and stderr, which is closed on leaving (the session's processes hold the rest)."""
    read_end, write_end = os.pipe()  # both close-on-exec: only the copier gets the read end
    try:
        try:
            copier = subprocess.Popen(
                [sys.executable, "-E", "-s", _SCRIPT, str(log_path), str(limit)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Its own session: signals to the worker's process group (a restart) spare it.
                start_new_session=True,
                preexec_fn=preexec_fn,
                env={"PATH": os.defpath},
            )
        finally:
            os.close(read_end)
        _started[copier.pid] = copier
        yield copier, write_end
    finally:
        os.close(write_end)


def remove(pid: object, log_path: Path, wait_seconds: float = 5.0) -> None:
    """End the copier of ``log_path`` if it still runs, then remove the log.

    In a cgroup the session's stop has ended it already; without one it ends at its last
    writer's exit, unless one escaped the stop: then the copier goes all the same.
    """
    import psutil

    if isinstance(pid, int) and pid > 0:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            # pids get reused: only the copier of this very log.
            if proc.cmdline()[-3:-1] == [_SCRIPT, str(log_path)]:
                proc.terminate()
                try:
                    proc.wait(wait_seconds)
                except psutil.TimeoutExpired:
                    proc.kill()
        child = _started.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(wait_seconds)
    with contextlib.suppress(OSError):
        os.unlink(log_path)


def main(argv: list[str]) -> int:
    path, limit = argv[1], int(argv[2])
    # Root's copier in the session's cgroup: the OOM killer must pick the session's own
    # processes, not the one that drains their output.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("-1000")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        target = os.open(path, flags, 0o600)
    except OSError:
        # Still drain the pipe, or the session's writes would fail (EPIPE).
        target = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        copy(0, target, limit)
    finally:
        os.close(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
