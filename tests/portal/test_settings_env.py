"""Configuration: bad values fail at start-up naming the variable; secrets come from files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_int, env_port_range, env_secret


def test_a_bad_boolean_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG")


def test_a_bad_integer_and_one_below_its_minimum_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPAWN_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ImproperlyConfigured, match="SPAWN_TIMEOUT_SECONDS"):
        env_int("SPAWN_TIMEOUT_SECONDS", 120)
    monkeypatch.setenv("SPAWN_TIMEOUT_SECONDS", "1")
    with pytest.raises(ImproperlyConfigured, match="at least 5"):
        env_int("SPAWN_TIMEOUT_SECONDS", 120, minimum=5)


def test_a_port_range_must_increase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_SPAWNER_PORT_RANGE", "30000-20000")
    with pytest.raises(ImproperlyConfigured, match="LOCAL_SPAWNER_PORT_RANGE"):
        env_port_range("LOCAL_SPAWNER_PORT_RANGE", (20000, 29999))


def test_a_secret_is_read_from_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    assert env_secret("SECRET_KEY") == "s3cret"
    monkeypatch.setenv("SECRET_KEY", "other")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("SECRET_KEY")


def test_the_portal_refuses_to_start_with_a_bad_value(tmp_path: Path) -> None:
    # Given a bad SPAWNER value, when Django starts, then it stops with the variable's name.
    env = {**os.environ, "SPAWNER": "docker", "PORTAL_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SPAWNER must be one of local" in result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"STORAGE_SCRATCH_ROOT": "{var}/home/scratch"}, "must be separate folders"),
        ({"STORAGE_SCRATCH_ROOT": "{var}/home"}, "must be separate folders"),
        ({"STORAGE_SCRATCH_QUOTA_BYTES": "0"}, "STORAGE_SCRATCH_QUOTA_BYTES"),
        ({"STORAGE_SHARED_SCRATCH_MAX_BYTES": "0"}, "STORAGE_SHARED_SCRATCH_MAX_BYTES"),
        ({"STORAGE_SCRATCH_LOW_WATER": "1.5"}, "STORAGE_SCRATCH_LOW_WATER"),
    ],
)
def test_storage_settings_that_would_remove_too_much_are_refused(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    # Overlapping roots or a zero quota would make a cleanup remove files the rules don't select.
    env = {
        **os.environ,
        "PORTAL_VAR_DIR": str(tmp_path),
        "STORAGE_HOME_ROOT": str(tmp_path / "home"),
        **{name: value.format(var=tmp_path) for name, value in variables.items()},
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
