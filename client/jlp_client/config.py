"""Where ``jlp login`` keeps the portal's address and the token: one JSON file, readable by its
owner only, under ``$XDG_CONFIG_HOME/jlp/`` (``~/.config/jlp/`` without it). ``JLP_URL`` and
``JLP_TOKEN`` in the environment come first, for scripts and CI that keep no file."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.json"


class NotLoggedIn(Exception):
    """No portal address or token: neither ``jlp login`` nor ``JLP_URL``/``JLP_TOKEN``."""

    def __init__(self) -> None:
        super().__init__(
            "not logged in: run 'jlp login' with a token from your account page "
            "(or set JLP_URL and JLP_TOKEN)"
        )


@dataclass(frozen=True)
class Credentials:
    url: str | None
    token: str | None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jlp" / CONFIG_FILE


def load_stored() -> Credentials:
    """What ``jlp login`` stored (each None when nothing is)."""
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Credentials(None, None)
    if not isinstance(data, dict):
        return Credentials(None, None)
    return Credentials(data.get("url") or None, data.get("token") or None)


def load_credentials() -> Credentials:
    """The environment's ``JLP_URL``/``JLP_TOKEN``, each in place of the stored one."""
    stored = load_stored()
    return Credentials(
        os.environ.get("JLP_URL") or stored.url, os.environ.get("JLP_TOKEN") or stored.token
    )


def store_credentials(url: str, token: str) -> Path:
    """Write the file, mode 0600 from its first byte (in a 0700 folder), replacing any
    earlier one whole: a reader never sees half of it, nor anyone else the token."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file 0600; the rename is atomic within the folder.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump({"url": url, "token": token}, stream)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def forget_credentials() -> bool:
    """Remove the file; False if there was none."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
