"""The local sessions' software: what building it costs, its size, and how long a new kernel
takes to import earthkit.data.

- build: ``images/session/build_local_env.py --env <temporary folder>`` from nothing (a new
  virtual environment, every package installed by pip; pip's cache as the machine has it, which
  the report says), timed, and the size of the result on disk;
- import: a new kernel of the session software (``jupyter_client``'s ``KernelManager``, the kernel
  spec the server uses), the time from ``import earthkit.data`` to its return, measured in the
  kernel, then opening a GRIB file into xarray (ecCodes loads then); the first round after the page
  cache was dropped (as root: cold, as after a reboot), the others warm. Also the kernel's start to
  its first answer.

    python bench/session_software.py [--rounds 5] [--skip-build]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ROOT, add_output_arguments, command_line, machine_basics, publish

sys.path.insert(0, str(ROOT))
BUILDER = ROOT / "images" / "session" / "build_local_env.py"
# The notebooks library's sample: 4 fields of 2 m temperature, GRIB2 (images/notebooks-library).
SAMPLE = ROOT / "images" / "notebooks-library" / "data" / "t2m-sample.grib2"
# Run by the session software's Python: one new kernel, its start and the import, in seconds.
KERNEL_SCRIPT = r"""
import json, sys, time
from jupyter_client.manager import start_new_kernel
began = time.perf_counter()
manager, client = start_new_kernel(kernel_name="python3")
try:
    client.wait_for_ready(timeout=120)
    ready = time.perf_counter() - began
    code = ("import time as _t; _b = _t.perf_counter(); import earthkit.data as ekd; "
            "_i = _t.perf_counter() - _b; _b = _t.perf_counter(); "
            f"ekd.from_source('file', {sys.argv[1]!r}).to_xarray().load(); "
            "print(_i, _t.perf_counter() - _b)")
    output = []
    def keep(message):
        if message["msg_type"] == "stream":
            output.append(message["content"]["text"])
    reply = client.execute_interactive(code, timeout=300, output_hook=keep)
    assert reply["content"]["status"] == "ok", reply["content"]
    imported, opened = (float(x) for x in "".join(output).split())
    print(json.dumps({"ready": ready, "import": imported, "open": opened}))
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
"""


def software_python() -> Path:
    env_dir = Path(os.environ.get("LOCAL_SESSION_ENV") or ROOT / ".session-env")
    return (env_dir / "current").resolve() / "bin" / "python"


def build(folder: Path) -> dict[str, Any]:
    began = time.perf_counter()
    subprocess.run([sys.executable, str(BUILDER), "--env", str(folder)], check=True)
    seconds = time.perf_counter() - began
    version = (folder / "current").resolve()
    size = int(subprocess.run(
        ["du", "-sb", str(version)], capture_output=True, text=True, check=True
    ).stdout.split()[0])  # fmt: skip
    listed = subprocess.run(
        [str(version / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"seconds": seconds, "bytes": size, "packages": len(json.loads(listed.stdout))}


def drop_page_cache() -> bool:
    if os.geteuid() != 0:
        return False
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def kernel_round(python: Path, home: Path) -> dict[str, float]:
    env = {**os.environ, "HOME": str(home), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(python), "-c", KERNEL_SCRIPT, str(SAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"the kernel round failed: {done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-build", action="store_true", help="only the kernel rounds")
    add_output_arguments(parser)
    args = parser.parse_args()
    now = datetime.now(UTC)
    results: dict[str, Any] = {"machine": machine_basics()}
    pip_cache = Path.home() / ".cache" / "pip"
    results["pip_cache_bytes_before"] = (
        sum(p.stat().st_size for p in pip_cache.rglob("*") if p.is_file())
        if pip_cache.is_dir()
        else 0
    )
    if not args.skip_build:
        with tempfile.TemporaryDirectory(prefix="jlp-bench-env-") as folder:
            results["build"] = build(Path(folder))
    python = software_python()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="jlp-bench-home-") as home:
        cold = drop_page_cache()
        for _ in range(args.rounds):
            rounds.append(kernel_round(python, Path(home)))
            shutil.rmtree(Path(home) / "runtime", ignore_errors=True)
    results.update(kernel_rounds=rounds, cold_first=cold, python=str(python))
    warm = rounds[1:] or rounds
    lines = [
        f"Measured {now:%Y-%m-%d %H:%M} UTC with `{command_line()}`.",
        "",
        "| what | figure |",
        "| --- | --- |",
    ]
    if "build" in results:
        b = results["build"]
        cache = results["pip_cache_bytes_before"] / 2**20
        lines += [
            f"| build from nothing (pip's cache held {cache:.0f} MiB before) "
            f"| {b['seconds']:.0f} s |",
            f"| size on disk | {b['bytes'] / 2**30:.2f} GiB ({b['packages']} packages) |",
        ]
    first = "cold page cache" if cold else "first round (page cache not dropped: not root)"
    lines += [
        f"| `import earthkit.data` in a new kernel, {first} | {rounds[0]['import']:.2f} s |",
        f"| `import earthkit.data` in a new kernel, warm, median of {len(warm)} | "
        f"{statistics.median(r['import'] for r in warm):.2f} s |",
        f"| then opening the library's GRIB sample (4 fields) into xarray, {first} | "
        f"{rounds[0]['open']:.2f} s |",
        f"| the same, warm, median of {len(warm)} | "
        f"{statistics.median(r['open'] for r in warm):.2f} s |",
        f"| a new kernel's start to its first answer, warm, median of {len(warm)} | "
        f"{statistics.median(r['ready'] for r in warm):.2f} s |",
        "",
        "The launch of a session with this software is in the Launch section above"
        " (`bench/launch.py`: the sessions' server is this environment's JupyterLab).",
    ]
    publish(args, "Session software", "\n".join(lines), "session_software", now, results)


if __name__ == "__main__":
    main()
