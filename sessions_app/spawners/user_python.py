"""The session's own Python environment in the home, for the local back-end.

Packages a user installs with ``pip`` go to private storage and are there at the next session
(service rule 6). Local sessions run the session software's virtual environment
(:mod:`.software`), read-only and shared, where pip's usual ways to install elsewhere fail (each
tried for real, pip 23.2):

- ``PIP_USER=1`` with ``PYTHONUSERBASE``: refused, "User site-packages are not visible in this
  virtualenv" (the environment has no system site-packages, so it has no user site either);
- ``PIP_PREFIX`` with ``PYTHONPATH``: new packages land in the home, but upgrading a package the
  shared environment has *uninstalls it from the shared environment* (or fails, read-only);
- ``PIP_TARGET`` with ``PYTHONPATH``: never touches the shared environment, but it reinstalls
  every dependency into the home, a reinstall or upgrade leaves the old ``.dist-info`` behind
  (``pip list`` then reports the wrong version) and ``pip uninstall`` removes nothing.

So the home gets a small virtual environment of its own at ``~/.local`` (the user-site layout:
``~/.local/lib/pythonX.Y/site-packages`` and ``~/.local/bin``, as ``PYTHONUSERBASE=~/.local`` gives
in a container image without a virtual environment), layered over the shared one: a ``.pth`` file
adds the shared environment's site-packages *after* its own. Its ``pyvenv.cfg`` says ``include-
system-site-packages = true``, which is what lets ``pip install --user`` (what many guides say)
work: the user site is then ``~/.local`` itself, the same folder as a plain ``pip install``. The
Python installation's own site-packages come after both. Kernels run its ``python`` (a user-level
``python3`` kernel spec) and its ``bin`` comes first on ``PATH`` (``pip``, ``python``), so
``%pip``, ``!pip`` and ``pip`` in a terminal install, upgrade and uninstall in the home and only
there: a package of the shared environment is shadowed, never removed, and one it already has
satisfies a dependency without a copy. The environment is refreshed at every start (links to the
interpreter, the ``.pth`` file, ``pip``, the kernel spec); what the user installed is kept."""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import types
import venv
from pathlib import Path

_PTH_NAME = "portal-environment.pth"
_KERNEL_NAME = "python3"  # the name notebooks ask for: the user's environment answers it
# A shell trampoline rather than a "#!/path/python" line, which the kernel cuts at 255 bytes
# (homes can be deep); the same shape pip's own launchers use for long paths.
_PIP_SCRIPT = """#!/bin/sh
'''exec' "${0%/*}/python" "$0" "$@"
' '''
import sys

from pip._internal.cli.main import main

sys.exit(main())
"""


def user_python_ensure(prefix: Path) -> Path:
    """Create or refresh the layered environment at ``prefix``; return its ``bin`` folder.

    ``prefix`` is ``~/.local`` of the session's ``HOME``: its ``share/jupyter`` is then also
    Jupyter's user data folder, where the server finds the kernel spec written here.
    """
    _LayeredEnvBuilder().create(str(prefix))
    return prefix / "bin"


def _venv_path(prefix: str, name: str) -> str:
    base = {"base": prefix, "platbase": prefix, "installed_base": prefix}
    return sysconfig.get_path(name, "venv", vars={**base, "installed_platbase": prefix})


class _LayeredEnvBuilder(venv.EnvBuilder):
    """A virtual environment without pip of its own, which sees the session software's packages."""

    def __init__(self) -> None:
        super().__init__(symlinks=True, with_pip=False, system_site_packages=True)

    def setup_python(self, context: types.SimpleNamespace) -> None:
        # EnvBuilder keeps an existing link: one to an interpreter that was replaced (a Python
        # upgrade, a moved portal) would leave the user's kernels unable to start.
        exe = Path(context.env_exe)
        if exe.is_symlink() and os.readlink(exe) != context.executable:
            exe.unlink()
        super().setup_python(context)

    def setup_scripts(self, context: types.SimpleNamespace) -> None:
        """No ``activate`` scripts: the session's environment variables activate it."""

    def post_setup(self, context: types.SimpleNamespace) -> None:
        prefix = context.env_dir
        site_packages = Path(_venv_path(prefix, "purelib"))
        shared = dict.fromkeys(sysconfig.get_paths()[name] for name in ("purelib", "platlib"))
        # addsitedir, not a bare path: the shared environment's .pth files must be read as well.
        lines = [f"import site; site.addsitedir({path!r})\n" for path in shared]
        _write(site_packages / _PTH_NAME, "".join(lines))
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        for name in ("pip", f"pip{sys.version_info.major}", f"pip{minor}"):
            _write(Path(context.bin_path) / name, _PIP_SCRIPT, mode=0o755)
        spec = {
            "argv": [context.env_exe, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": True},
        }
        kernel_dir = Path(prefix) / "share" / "jupyter" / "kernels" / _KERNEL_NAME
        kernel_dir.mkdir(parents=True, exist_ok=True)
        _write(kernel_dir / "kernel.json", json.dumps(spec, indent=1) + "\n")
        logos = Path(sys.prefix) / "share" / "jupyter" / "kernels" / _KERNEL_NAME
        for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            if (logos / logo).is_file():
                _write(kernel_dir / logo, (logos / logo).read_bytes())


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by a new file (a rename: never writes through a link the user made)."""
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)
