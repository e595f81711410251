"""The first program of a local session: prepares the home as its owner, then runs the server.

Run by the session's own account (inside the sandbox in multi-user mode), never by root, so
nothing written here can be turned against the portal by a link the person planted in their
home: it links ``scratch`` into the home and refreshes the person's Python environment
(:mod:`user_python`, which sits beside this file), then replaces itself with the server.

Usage: ``python -E -s session_boot.py '<json settings>' -- <server command…>``; standard
library only (inside the sandbox the portal's code is not there: both files are copied in).
Neither step blocks the session: a home where they fail still gets its server, and the reason
goes to the server's log.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path


def _say(message: str) -> None:
    """A line for the server's log (the session's stderr)."""
    sys.stderr.write(f"[session boot] {message}\n")


def link_scratch(link: Path, target: str) -> None:
    """Make ``link`` a symbolic link to ``target``, unless the person has something else there."""
    try:
        if os.readlink(link) == target:
            return
    except FileNotFoundError:
        pass
    except OSError:  # not a link: the person's own file or folder, which is left alone
        _say(f"{link} is not a link to {target}: left as it is")
        return
    # A new link renamed over the old one: the path is never missing or half made.
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        _say(f"Cannot link {link} to {target}: {exc}")
        try:
            os.unlink(tmp)
        except OSError:
            pass


def main(argv: list[str]) -> None:
    settings = json.loads(argv[1])
    if argv[2] != "--" or len(argv) < 4:
        sys.exit("usage: session_boot.py SETTINGS -- COMMAND...")
    command = argv[3:]
    os.umask(0o077)  # the home is private: what the session makes is too, unless asked
    home = Path(settings["home"])
    if settings.get("scratch"):
        link_scratch(home / settings["scratch_link"], settings["scratch"])
    if settings.get("user_python"):
        sys.path.insert(0, str(Path(__file__).parent))
        try:
            from user_python import user_python_ensure

            user_python_ensure(home / ".local")
        except (OSError, ValueError) as exc:
            _say(f"No Python environment in the home: {exc}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
