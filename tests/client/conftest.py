"""The portal as a REST user meets it: the web on a live server (in this process, on the test
database), a token made as the account page makes it, and ``jlp`` run as a person runs it, in a
process of its own with a home and configuration folder of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from portal.tokens import token_issue

JLP = str(Path(sys.executable).with_name("jlp"))


@dataclass
class Ran:
    code: int
    out: str
    err: str


@dataclass
class Jlp:
    """``jlp`` in a home of its own; ``env`` is what every run gets on top of it."""

    home: Path
    env: dict[str, str]

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "jlp" / "config.json"

    def __call__(self, *args: str, stdin: str = "", timeout: float = 240, **env: str) -> Ran:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("JLP_")
        }
        environment.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "config"))
        environment.update(self.env)
        environment.update(env)
        done = subprocess.run(
            [JLP, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )
        return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def jlp(tmp_path: Path) -> Jlp:
    home = tmp_path / "home"
    home.mkdir()
    return Jlp(home, {})


@pytest.fixture
def portal_url(live_server: Any) -> str:
    return str(live_server.url)


@pytest.fixture
def token(owner: User) -> str:
    return token_issue(user=owner, name="jlp tests")
