"""The session software of the local back-end, and the variables a session's programs see.

Local sessions run JupyterLab and their kernels from an environment of their own, never from
the portal's: ``images/session/build_local_env.py`` builds it from the service's environment.yml
(mapped to PyPI and Debian by ``images/session/pypi-map.toml``) into ``LOCAL_SESSION_ENV``
(``<dir>/current`` is the version in use). An operator may also point ``LOCAL_SESSION_ENV`` at
a ready environment of their own (a folder with ``bin/python`` and ``bin/jupyter-lab``, e.g. a
conda prefix). The sandbox shows it, and the Python installation it was made from, read-only.

A session resolves ``current`` once, at its start: a rebuild switches the link for later
sessions, and the running ones keep the folder they started from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sessions_app.spawners.base import SpawnerError

# The checkout's default (the Makefile's `make run` and `make test` build it).
DEFAULT_ENV_DIR = Path(__file__).resolve().parents[2] / ".session-env"
CURRENT = "current"
COMPLETE = ".complete"
SERVER_PROGRAM = "jupyter-lab"
# The portal's public URL, for the session's JupyterLab extension (time left, stop, ended).
PORTAL_URL_ENV = "JUPYTER_PORTAL_URL"
# Only these reach a session from the worker's environment: the rest (database URLs, secret
# keys, broker passwords) must not be readable by the user's code.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL")


@dataclass(frozen=True)
class SessionSoftware:
    """One version of the session software, as a session starts from it."""

    prefix: Path  # the environment (sys.prefix of the server and kernels)
    base_prefix: Path  # the Python installation it was made from

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def prefixes(self) -> tuple[Path, ...]:
        """What the sandbox must show (read-only) for the software to run."""
        return tuple(dict.fromkeys((self.base_prefix, self.prefix)))

    @property
    def hidden(self) -> tuple[Path, ...]:
        """The Python installation's own site-packages, which the sandbox shows empty.

        Whatever the machine's Python has installed for itself (test tools, its ``.pth`` files)
        is not the session software; the person's environment in the home, which sees the
        installation's site-packages (``include-system-site-packages``, for ``pip --user``),
        must not load it. A Python of the OS (under ``/usr``) is left alone: its packages are
        the OS's.
        """
        if self.base_prefix == self.prefix or self.base_prefix.is_relative_to("/usr"):
            return ()
        return tuple(sorted(self.base_prefix.glob("lib/python3.*/site-packages")))


def software_problem(env_dir: Path) -> str:
    """Why sessions cannot start from ``env_dir`` ("" when they can)."""
    try:
        session_software(env_dir)
    except SpawnerError as exc:
        return str(exc)
    return ""


def session_software(env_dir: Path) -> SessionSoftware:
    """The version of the session software that a session starting now runs."""
    env_dir = Path(env_dir).absolute()
    current = env_dir / CURRENT
    if os.path.lexists(current):
        prefix = current.resolve()
        if not (prefix / COMPLETE).is_file():
            raise SpawnerError(
                f"The session software in {prefix} is incomplete: rebuild it with "
                "`make run` (images/session/build_local_env.py)."
            )
    elif (env_dir / "bin" / "python").exists():
        prefix = env_dir.resolve()  # an environment of the operator's own
    else:
        raise SpawnerError(
            f"The session software is not built yet ({env_dir}): `make run` builds it "
            "(images/session/build_local_env.py)."
        )
    for program in ("python", SERVER_PROGRAM):
        if not os.access(prefix / "bin" / program, os.X_OK):
            raise SpawnerError(f"The session software in {prefix} has no bin/{program}.")
    # bin/python of a venv links to the installation's interpreter: <base>/bin/python3.X.
    interpreter = (prefix / "bin" / "python").resolve()
    return SessionSoftware(prefix=prefix, base_prefix=interpreter.parents[1])


def session_variables(
    software: SessionSoftware,
    home: Path,
    scratch: Path | None,
    portal_url: str,
    inherited: dict[str, str],
) -> dict[str, str]:
    """The environment variables of a session's programs (without the portal's own ones)."""
    env = {name: inherited[name] for name in INHERITED_ENV if name in inherited}
    python_bin = home / ".local" / "bin"
    # The user's environment in the home first (``pip``, ``python``: installs go there), then
    # the session software (``jupyter``, ``git``-integration, the rest of the server's programs).
    env["PATH"] = os.pathsep.join([str(python_bin), str(software.bin), env.get("PATH", os.defpath)])
    env["HOME"] = str(home)
    env["VIRTUAL_ENV"] = str(python_bin.parent)
    # Jupyter looks in the server's environment before the home when it runs from a virtual
    # environment: the kernel spec in the home, which runs the user's environment, must win
    # over the server's own ``python3``.
    env["JUPYTER_PREFER_ENV_PATH"] = "0"
    # Where Python and conda put what the user installs: the home, kept between sessions.
    env["PYTHONUSERBASE"] = str(home / ".local")
    env["CONDA_ENVS_PATH"] = str(home / ".conda" / "envs")
    env["CONDA_PKGS_DIRS"] = str(home / ".conda" / "pkgs")
    if scratch is not None:
        # A cache, not the user's packages: it would fill the private quota.
        env["PIP_CACHE_DIR"] = str(scratch / ".cache" / "pip")
    env[PORTAL_URL_ENV] = portal_url
    # Bokeh's plots carry BokehJS in the page instead of fetching it from cdn.bokeh.org, which
    # a browser beside an offline machine (or behind a strict proxy) cannot reach.
    env["BOKEH_RESOURCES"] = "inline"
    return env
