"""Build the local back-end's session environment: the software every local session runs.

JupyterLab, its kernels and the service's packages (environment.yml) run from this virtual
environment, never from the portal's own: see pypi-map.toml (beside this file) for where each
package of environment.yml comes from, and constraints.txt for the pins of the whole tree.

    python3.11 images/session/build_local_env.py [--env DIR]

``DIR`` (default ``$LOCAL_SESSION_ENV``, else ``.session-env`` in the checkout) holds one
folder per version of the inputs (named by their hash) and ``current``, a link to the one in
use. A version is built in place (a virtual environment cannot be moved), marked complete only
at the end, and ``current`` is switched to it by a rename: sessions that run keep the folder
they started from (the previous version is kept; older ones are removed). Nothing is done when
``current`` already is the inputs' version. The whole environment is root's (or the builder's)
and read-only to everyone else: sessions share it and cannot change it; what people install
goes to their home (user_python.py).

Standard library only: it runs before the portal's virtual environment has anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAP_FILE = HERE / "pypi-map.toml"
CONSTRAINTS = HERE / "constraints.txt"
LABEXTENSION = HERE / "labextension" / "built"
LAB_EXTENSION_NAME = "@jupyter-portal/session-status"
LAB_OVERRIDES = HERE / "lab-overrides.json"
COMPLETE = ".complete"
CURRENT = "current"
_PIP = ("--disable-pip-version-check", "--no-input")


def _say(step: int, steps: int, message: str) -> None:
    print(f"[session software {step}/{steps}] {message}", flush=True)


def inputs_hash() -> str:
    """What the environment is made of: a change to any of these files means a new version."""
    digest = hashlib.sha256()
    files = [Path(__file__).resolve(), MAP_FILE, CONSTRAINTS, LAB_OVERRIDES]
    if LABEXTENSION.is_dir():
        files += sorted(p for p in LABEXTENSION.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:16]


def requirements(mapping: dict) -> list[str]:
    reqs = list(mapping.get("extra", {}).get("pypi", []))
    for entry in mapping["packages"].values():
        reqs += entry.get("pypi", [])
    return reqs


def debian_programs(mapping: dict, step: int, steps: int) -> None:
    """Install the Debian packages whose check fails (as root; otherwise only say so)."""
    missing = []
    for name, entry in mapping["packages"].items():
        if "debian" in entry and shutil.which(entry["check"][0]) is None:
            missing.append((name, entry["debian"]))
    if not missing:
        _say(step, steps, "Programs from the OS: all there")
        return
    packages = sorted({debian for _name, debian in missing})
    if os.geteuid() != 0:
        _say(step, steps, f"Not root: cannot install {', '.join(packages)} (sessions lack them)")
        return
    _say(step, steps, f"Installing from Debian: {', '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def build(target: Path, mapping: dict, unpinned: bool) -> None:
    steps = 5
    debian_programs(mapping, 1, steps)
    _say(2, steps, f"Creating the environment in {target}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
    python = str(target / "bin" / "python")
    reqs = requirements(mapping)
    _say(3, steps, f"Installing {len(reqs)} packages and what they need (pip; a few minutes)")
    subprocess.run([python, "-m", "pip", "install", *_PIP, "--upgrade", "pip==26.3"], check=True)
    pins = [] if unpinned else ["-c", str(CONSTRAINTS)]
    subprocess.run([python, "-m", "pip", "install", *_PIP, *pins, *reqs], check=True)
    _say(4, steps, "Installing the portal's JupyterLab extension and settings")
    share = target / "share" / "jupyter"
    if LABEXTENSION.is_dir():
        dest = share / "labextensions" / LAB_EXTENSION_NAME
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(LABEXTENSION, dest)
    else:
        print(f"  (no {LABEXTENSION}: the session status extension is missing)", flush=True)
    settings = share / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LAB_OVERRIDES, settings / "overrides.json")
    _say(5, steps, "Making it read-only for sessions")
    # Byte-compiled files made later by a session's import would fail (read-only): make them now.
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", str(target / "lib")],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    _read_only(target)


def _read_only(root: Path) -> None:
    """Readable (and where executable, runnable) by all, writable by the owner only."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                mode = st.st_mode & 0o7777
                new = (mode | 0o444 | (0o111 if mode & 0o100 else 0)) & ~0o022 & ~0o6000
                if new != mode:
                    os.chmod(path, new)
    os.chmod(root, 0o755)


def switch(env_dir: Path, version: str) -> None:
    """Point ``current`` at ``version`` by a rename; keep the previous version, drop older."""
    current = env_dir / CURRENT
    previous = os.readlink(current) if current.is_symlink() else None
    tmp = env_dir / f".{CURRENT}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, current)
    for entry in env_dir.iterdir():
        if entry.name not in (CURRENT, version, previous) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("LOCAL_SESSION_ENV") or str(HERE.parents[1] / ".session-env")
    parser.add_argument("--env", default=default, help="where environments live (%(default)s)")
    parser.add_argument(
        "--unpinned", action="store_true", help="ignore constraints.txt (to refresh the pins)"
    )
    args = parser.parse_args(argv)
    env_dir = Path(args.env).absolute()
    version = inputs_hash()
    target = env_dir / version
    if (target / COMPLETE).is_file() and (env_dir / CURRENT).resolve() == target.resolve():
        print(f"Session software is up to date ({target}).", flush=True)
        return 0
    with open(MAP_FILE, "rb") as file:
        mapping = tomllib.load(file)
    env_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(env_dir, 0o755)
    started = time.monotonic()
    print(f"Building the session software (version {version}): once, then at each change.")
    if not (target / COMPLETE).is_file():
        build(target, mapping, args.unpinned)
        size = sum(
            p.lstat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink()
        )
        record = {"version": version, "seconds": round(time.monotonic() - started), "bytes": size}
        (target / COMPLETE).write_text(json.dumps(record) + "\n")
        os.chmod(target / COMPLETE, 0o644)
        print(f"Built in {record['seconds']} s, {size / 2**30:.2f} GiB.", flush=True)
    switch(env_dir, version)
    print(f"Session software ready: {env_dir / CURRENT} -> {version}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
