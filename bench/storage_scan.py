"""Storage scan benchmark: ``scan_tree`` against GNU ``du -s`` on the same tree of a million files.

Builds a tree of about a million files (nested folders, mostly small files, some large and
sparse ones, hard links, symlinks, a few modification times in the future) in ten parts of a
tenth each, under the temporary folder. Then, in one run with a warm cache, it takes turns
between ``du -s -B1 TREE`` and ``scan_tree(TREE, keep=1000)`` as the storage sweep calls it,
each in a fresh process (so that its peak memory is its own): with the default threads, with
one thread, and with the pure-Python lister (what runs without the compiled helper). It also
measures the scan's memory on one part (a tenth of the files) against the whole tree, and
checks that every scan's total equals du's.

It writes the "Storage scan" section of ``docs/benchmarks.md`` and raw JSON under
``bench/results/``, and removes the tree at the end unless ``--keep-tree`` (a kept tree is
reused by the next run).
Usage: ``.venv/bin/python bench/storage_scan.py [--files 1000000] [--rounds 5] [--keep-tree]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
from common import (
    ROOT,
    add_output_arguments,
    command_line,
    machine_basics,
    publish,
    spread,
    stop_on_signals,
)

sys.path.insert(0, str(ROOT))
from storage_app import fs_scan  # noqa: E402 (after the path: run as a script)

PARTS = 10
TREE_VERSION = 1  # bump when the generator changes, so that a kept tree is rebuilt
KEEP = 1000
SLACK_NS = 3600 * 10**9
DAY = 86_400
KINDS = {
    "du": "`du -s -B1`",
    "scan": "`scan_tree(keep=1000)`, {threads} threads (the default here)",
    "scan_1": "`scan_tree(keep=1000)`, 1 thread",
    "python": "`scan_tree(keep=1000)`, pure-Python lister (no compiled helper), 1 thread",
}
# The scan as the sweep would run it, in a process of its own; prints what it found as JSON,
# with its peak memory (VmHWM: of this program only, where wait4's figure would include the
# memory of the benchmark it was forked from).
CHILD = """
import json, re, sys, time
from pathlib import Path
from storage_app import fs_scan
tree, kind, keep, slack = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if kind == "python":
    fs_scan._native = None
out = {"native": fs_scan.native_helper(), "threads": fs_scan.default_threads()}
if kind != "import":
    t0 = time.perf_counter()
    result = fs_scan.scan_tree(tree, keep=keep, now_ns=time.time_ns(), future_slack_ns=slack,
                               threads=1 if kind == "scan_1" else None)
    out.update(seconds=time.perf_counter() - t0, bytes_used=result.bytes_used,
               files=result.files, dirs=result.dirs, errors=result.errors,
               candidates=len(result.candidates), future=len(result.future_mtimes))
status = Path("/proc/self/status").read_text()
out["rss"] = int(re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1)) * 1024
print(json.dumps(out))
"""
REPORT = """## Storage scan

Measured {date} with `{command}` on {nproc} CPUs ({cpu}), {ram_gib} GiB RAM, Linux {kernel},
Python {python}, {du_version}, the tree on {fs_type}; load average {load_before:.2f} (1 min)
before the run and {load_after:.2f} after (other work on the machine makes the figures noisy:
compare the ratios, which pair runs made one after the other).

| the same tree: {files:,} files, {dirs:,} folders, {gib:.1f} GiB; warm cache | wall time of the process, median (min–max) of {rounds} | vs du, median of paired runs (min–max) | scan alone, median | CPU (user + system), median | peak RSS, median | total vs du |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

Target: a scan at least as fast as `du -s` on the same tree: **{verdict}** (the default scan
took ×{ratio:.2f} du's time, median of {rounds} paired runs).

Memory of the scan process (default threads, peak RSS, median of {memory_runs}): Python with
the module imported and nothing scanned {rss_import:.1f} MB; one part of the tree
({part_files:,} files) {rss_part:.1f} MB; the whole tree ({files:,} files) {rss_whole:.1f} MB:
ten times the files, {rss_growth:+.1f} MB. What grows is mostly the set of inode numbers of
hard-linked files (here {links:,} extra links), kept to count each once; the rest is the heap
of {keep:,} candidates and the folders still to visit, never a list of files.

A warm-cache scan is system calls: `du` spends {du_kernel:.0%} of its CPU time in the kernel
(`getdents64`, then one `fstatat` per entry), and the scan makes the same calls (but does not
`stat` folders twice). A plain Python walk adds {python_us:.1f} µs of Python per entry on top
(the pure-Python row against the one-thread row). The scan gets ahead of `du` by opening and
listing each folder in one call of a small C function that runs with the GIL released, in
two threads that share the walk; in one thread, as when the other CPU is busy, it takes about
du's time.

*Tree*: {parts} parts of {part_files:,} files made by the same generator with different
seeds: nested folders ({per_folder:.0f} files per folder on average, up to 12 levels), sizes
mostly under 4 kB (a quarter empty), some up to 1 MB and sparse 100 MB files, {links:,} extra hard links,
{symlinks:,} symlinks (to files, folders and `/etc`), {future:,} files modified in the future.
*Method*: every run is a fresh process, timed from its start until it exits, with its own CPU
time from `wait4` and its peak memory (VmHWM) from `/proc`; the scan's own time is measured
inside the process (without the interpreter's start-up). After one uncounted run of each, the
rounds take turns in a rotating order. The scan is `scan_tree(tree, keep={keep}, now_ns=…, future_slack_ns=1 h)`;
its `bytes_used` is compared with du's total in every run. Raw figures: `bench/results/`
(not in git).
"""  # noqa: E501 (a Markdown table row is one line)


@dataclass
class Made:
    files: int = 0
    dirs: int = 0
    links: int = 0
    symlinks: int = 0
    future: int = 0
    parts: list[int] = field(default_factory=list)


def build_part(root: Path, n_files: int, seed: int, made: Made) -> None:
    """One part: four users' trees of random shape, ``n_files`` files in all."""
    rng = random.Random(seed)
    data = random.Random(seed).randbytes(1 << 20)
    now = time.time()
    root.mkdir(parents=True)
    made.dirs += 1
    weights = [rng.paretovariate(1.2) for _ in range(4)]
    budgets = [int(n_files * weight / sum(weights)) for weight in weights]
    budgets[0] += n_files - sum(budgets)
    stack = []
    for user, budget in enumerate(budgets):
        home = root / f"user{user}"
        home.mkdir()
        made.dirs += 1
        stack.append((home, budget, 0))
    recent: list[Path] = []
    while stack:
        folder, budget, depth = stack.pop()
        here = budget
        if depth < 12 and budget >= 20:
            here = min(budget, int(rng.lognormvariate(3.2, 1.0)))
        for i in range(here):
            path = folder / (f"notebook-{i}.ipynb" if i % 7 == 0 else f"f{i:04d}.dat")
            draw = rng.random()
            if draw < 0.25:
                size = 0
            elif draw < 0.92:
                size = rng.randint(1, 4096)
            elif draw < 0.997:
                size = rng.randint(4097, 32768)
            else:
                size = rng.randint(32769, 1 << 20)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            if size:
                os.write(fd, data[:size])
            if rng.random() < 0.001:
                os.ftruncate(fd, 100 << 20)  # a sparse tail: size without blocks
            mtime = now - rng.uniform(0, 400 * DAY)
            if rng.random() < 0.0001:
                mtime, made.future = now + rng.uniform(1, 3650) * DAY, made.future + 1
            os.utime(fd, (mtime, mtime))
            os.close(fd)
            made.files += 1
            if recent and rng.random() < 0.01:
                os.link(rng.choice(recent), folder / f"hardlink-{i}")
                made.links += 1
            if rng.random() < 0.01:
                recent = [*recent[-49:], path]
        if rng.random() < 0.006:
            target = rng.choice(["/etc", "..", str(recent[-1]) if recent else "/etc/passwd"])
            os.symlink(target, folder / "link")
            made.symlinks += 1
        rest = budget - here
        if rest > 0:
            cuts = sorted(rng.randint(0, rest) for _ in range(rng.randint(1, 6) - 1))
            for j, (a, b) in enumerate(zip([0, *cuts], [*cuts, rest], strict=True)):
                sub = folder / f"d{depth}_{j}"
                sub.mkdir()
                made.dirs += 1
                stack.append((sub, b - a, depth + 1))


def tree(base: Path, files: int) -> tuple[Path, Made]:
    """The tree of ``files`` files under ``base``: reused if a complete one is there."""
    path, spec = base / f"tree-{files}-v{TREE_VERSION}", base / f"tree-{files}-v{TREE_VERSION}.json"
    if spec.exists() and path.is_dir():
        return path, Made(**json.loads(spec.read_text()))
    remove(path)
    spec.unlink(missing_ok=True)
    made, t0 = Made(), time.perf_counter()
    for part in range(PARTS):
        build_part(path / f"part{part}", files // PARTS, part, made)
        made.parts.append(files // PARTS)
        print(f"built part {part + 1}/{PARTS}: {made.files:,} files, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    made.dirs += 1
    subprocess.run(["sync"], check=True)  # not to measure the writeback of what we just wrote
    spec.write_text(json.dumps(asdict(made)))
    return path, made


def remove(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)


def peak_rss(pid: int) -> int:
    """The high-water mark of a running process's resident memory (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"VmHWM:\s*(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else 0


def run(command: list[str]) -> dict[str, Any]:
    """Run ``command`` to its end: wall time, its own CPU time (``wait4``) and peak memory,
    sampled every 10 ms from ``/proc`` (``wait4``'s would include the memory of this process,
    which the child was forked from)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, peak_rss(proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        wall = time.perf_counter() - t0
    finally:
        done.set()
        sampler.join()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if code != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {code}: {err.decode()[-2000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "user": usage.ru_utime,
        "system": usage.ru_stime,
        "rss": peak,
        "out": out.decode(),
    }


def measure(kind: str, path: Path) -> dict[str, Any]:
    if kind == "du":
        figures = run(["du", "-s", "-B1", str(path)])
        figures["bytes_used"] = int(figures.pop("out").split()[0])
        return figures
    figures = run([sys.executable, "-c", CHILD, str(path), kind, str(KEEP), str(SLACK_NS)])
    own = json.loads(figures.pop("out"))
    own["rss"] = max(own["rss"], figures["rss"])
    figures.update(own)
    return figures


def machine(path: Path) -> dict[str, Any]:
    du_version = subprocess.run(["du", "--version"], capture_output=True, text=True).stdout
    fs_type = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "--target", str(path)], capture_output=True, text=True
    )
    return {
        **machine_basics(),
        "du_version": du_version.splitlines()[0].replace("du (GNU coreutils)", "GNU du"),
        "fs_type": fs_type.stdout.strip() or "?",
    }


def report(results: dict[str, Any]) -> str:
    runs, median = results["runs"], statistics.median
    du_runs, total = runs["du"], runs["du"][0]["bytes_used"]
    rows = []
    for kind, label in KINDS.items():
        figures = runs[kind]
        paired = [r["wall"] / d["wall"] for r, d in zip(figures, du_runs, strict=True)]
        alone = [r["seconds"] for r in figures if "seconds" in r]
        if kind == "du":
            agreement = f"{total:,} B"
        elif all(r["bytes_used"] == total for r in figures):
            agreement = "equal in every run"
        else:
            agreement = "**differs**"
        cells = [
            label.format(threads=results["threads"]),
            spread([r["wall"] for r in figures]),
            f"×{median(paired):.2f} (×{min(paired):.2f}–×{max(paired):.2f})",
            f"{median(alone):.2f} s" if alone else "–",
            f"{median(r['cpu'] for r in figures):.2f} s",
            f"{median(r['rss'] for r in figures) / 1e6:.1f} MB",
            agreement,
        ]
        rows.append(f"| {' | '.join(cells)} |")
    scan = runs["scan"]
    ratio = statistics.median(r["wall"] / d["wall"] for r, d in zip(scan, du_runs, strict=True))
    made, memory = results["tree"], results["memory"]
    rss = {key: statistics.median(r["rss"] for r in values) / 1e6 for key, values in memory.items()}
    rss["whole"] = statistics.median(r["rss"] for r in scan) / 1e6
    du_cpu = sum(r["cpu"] for r in du_runs)
    one, python = (statistics.median(r["seconds"] for r in runs[k]) for k in ("scan_1", "python"))
    entries = made["files"] + made["dirs"] + made["links"] + made["symlinks"]
    fields = {
        **results,
        "du_kernel": sum(r["system"] for r in du_runs) / du_cpu,
        "python_us": (python - one) / entries * 1e6,
        "per_folder": made["files"] / made["dirs"],
        **results["machine"],
        **made,
        "rows": "\n".join(rows),
        "verdict": "met" if ratio <= 1 else "missed",
        "ratio": ratio,
        "gib": du_runs[0]["bytes_used"] / 2**30,
        "memory_runs": len(memory["part"]),
        "rss_import": rss["import"],
        "rss_part": rss["part"],
        "rss_whole": rss["whole"],
        "rss_growth": rss["whole"] - rss["part"],
        "part_files": made["parts"][0],
        "keep": KEEP,
        "parts": PARTS,
        "rounds": len(du_runs),
    }
    return REPORT.format_map(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000, help="files in the tree (1e6)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each (5)")
    parser.add_argument("--keep-tree", action="store_true", help="keep the tree for next time")
    add_output_arguments(parser)
    args = parser.parse_args()
    stop_on_signals()
    if not fs_scan.native_helper():
        sys.exit("the compiled lister is not built: .venv/bin/python setup.py build_ext --inplace")
    base = Path(tempfile.gettempdir()) / "portal-bench-storage-scan"
    base.mkdir(exist_ok=True)
    path, made = tree(base, args.files)
    try:
        system = machine(path)
        load_before = os.getloadavg()[0]
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for kind in KINDS:  # warm-up, not counted: the cache, the interpreter's files
            measure(kind, path)
        for i in range(args.rounds):
            order = list(KINDS)[i % len(KINDS) :] + list(KINDS)[: i % len(KINDS)]
            for kind in order:
                runs[kind].append(measure(kind, path))
            times = (f"{kind} {runs[kind][-1]['wall']:.2f} s" for kind in KINDS)
            print(f"round {i + 1}: {', '.join(times)}", flush=True)
        memory: dict[str, list[dict[str, Any]]] = {"import": [], "part": []}
        for _ in range(3):
            memory["import"].append(measure("import", path))
            memory["part"].append(measure("scan", path / "part0"))
        load_after = os.getloadavg()[0]
    finally:
        if not args.keep_tree:
            remove(path)
            (base / f"tree-{args.files}-v{TREE_VERSION}.json").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                base.rmdir()
    for kind, figures in runs.items():
        for figure in figures:
            if figure["bytes_used"] != runs["du"][0]["bytes_used"] or figure.get("errors"):
                print(f"warning: {kind} found {figure}", file=sys.stderr)
    now = datetime.now(UTC)
    results = {
        "date": f"{now:%Y-%m-%d %H:%M} UTC",
        "command": command_line(),
        "machine": system,
        "tree": asdict(made),
        "threads": runs["scan"][0]["threads"],
        "load_before": load_before,
        "load_after": load_after,
        "runs": runs,
        "memory": memory,
    }
    publish(args, "Storage scan", report(results), "storage-scan", now, results)


if __name__ == "__main__":
    main()
