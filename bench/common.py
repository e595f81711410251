"""What the benchmark scripts in ``bench/`` share: the machine, processes, the report.

Imported as ``common`` (``from common import …``): a script run as ``python bench/<name>.py``
has ``bench/`` first on ``sys.path``, and ``mypy .`` checks the folder's files as top-level
modules (``bench/`` is not a package).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INTRO = "# Benchmarks\n\nWhat the portal costs, measured by the scripts in `bench/`.\n"


# --- The machine ----------------------------------------------------------------------------


def machine_basics() -> dict[str, Any]:
    """What every report names of the machine: CPUs this process may use, the CPU model,
    RAM in GiB, the kernel's release and Python's version."""
    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    memory = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model.group(1) if model else platform.machine(),
        "ram_gib": round(int(memory.group(1)) / 2**20, 1) if memory else "?",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def postgresql_version(url: str) -> str:
    """The version of the PostgreSQL server at ``url`` (a database URL), e.g. ``15.20``."""
    import psycopg  # here: not every benchmark needs PostgreSQL

    with psycopg.connect(url) as conn:
        found = conn.execute("SHOW server_version").fetchone() or ("?",)
    return str(found[0]).split()[0]


# --- Processes --------------------------------------------------------------------------------


def print_portal_logs(var: Path, names: Sequence[str] = ("runportal", "log/web")) -> None:
    """The end of a benchmark portal's logs on stderr, for a run that failed: runportal's own
    (its terminal: the banner and the supervisor's errors) and the web's (``var/log/``, where
    a request's traceback goes)."""
    for name in names:
        with contextlib.suppress(OSError):
            tail = (var / f"{name}.log").read_text(errors="replace")[-4000:]
            print(f"--- the end of {name}.log ---\n{tail}", file=sys.stderr)


def stop_on_signals() -> None:
    """Clean up on SIGTERM as on Ctrl+C (exit status 143), and on SIGINT also when started in
    the background (where the shell leaves it ignored)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port() -> int:
    """A free TCP port on 127.0.0.1: an ephemeral one, outside the local spawner's range
    (20000-29999 by default)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` in a process group of its own, output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **kwargs,
        )  # fmt: skip


def kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop the process group that ``start`` began: SIGTERM, up to ``grace`` seconds for the
    leader to exit, then SIGKILL for what it left behind in its group (jupyter-lsp's
    ``npm``, for one)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def manage(env: Mapping[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``args`` in ``env``; its output, or RuntimeError if it fails."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


# --- The report -------------------------------------------------------------------------------


def command_line(prefix: str = "") -> str:
    """The command that ran this benchmark, to repeat it: ``cd ROOT && {prefix}python …``
    (``prefix``: variables set for the run, as ``NAME=value ``)."""
    python = os.path.relpath(sys.executable, ROOT)
    return f"cd {ROOT} && {prefix}{python} {shlex.join(sys.argv)}"


def spread(values: Sequence[float]) -> str:
    """Seconds as ``median (min–max)``: ``1.23 s (1.01–1.50)``."""
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def write_section(path: Path, title: str, section: str) -> None:
    """Replace the ``## <title>`` section of ``path`` with ``section`` (a Markdown text that
    begins with that heading), or add it at the end, keeping the other sections. The section
    runs until the next ``## `` heading: ``## Launch: where the time goes`` is one of its own.
    A missing file is begun with the benchmarks page's introduction."""
    text = path.read_text() if path.exists() else INTRO
    found = re.search(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", text, re.M | re.S)
    if found:
        text = f"{text[: found.start()]}{section}\n{text[found.end() :]}"
    else:
        text = f"{text.rstrip()}\n\n{section}"
    path.write_text(text.rstrip() + "\n")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--output``, the Markdown page to write the section to (``docs/benchmarks.md``), and
    ``--results``, the folder for the raw JSON (``bench/results/``): what ``publish`` reads."""
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results", help="raw JSON's folder"
    )


def save_results(folder: Path, name: str, now: datetime, results: dict[str, Any]) -> Path:
    """Write the raw figures to ``<folder>/<name>-<UTC time>.json``; returns the path."""
    raw = folder / f"{name}-{now:%Y%m%dT%H%M%S}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=2))
    return raw


def publish(
    args: argparse.Namespace,
    title: str,
    section: str,
    name: str,
    now: datetime,
    results: dict[str, Any],
) -> None:
    """Print ``section``, write it to ``args.output`` as the ``## <title>`` section and the raw
    figures to ``args.results`` (see ``add_output_arguments``); then say where."""
    print(f"\n{section}")
    write_section(args.output, title, section)
    raw = save_results(args.results, name, now, results)
    print(f"Written: {args.output}, {raw}")
