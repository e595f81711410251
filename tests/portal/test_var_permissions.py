"""The portal's own files are its alone: var/ 0700, the database and every secret 0600, the
portal's processes under umask 077, and an older installation tightened at start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from portal.private_files import make_private_dir, tighten_var_dir, write_private_file
from tests.portal.embedded import ROOT, EmbeddedPortal


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: what the code does must not rely on the caller's."""
    old = os.umask(0)
    yield
    os.umask(old)


OLD_SECRETS = ("secret_key", "admin-password", "portal.sqlite3", "portal.sqlite3-wal")


def old_installation(var: Path, names: tuple[str, ...] = OLD_SECRETS) -> None:
    """var/ as the portal left it before: everything readable by every local account."""
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    for name in names:
        # An empty file is a valid (empty) SQLite database.
        (var / name).write_text("" if name.startswith("portal.sqlite3") else "secret-" * 8)
        (var / name).chmod(0o644)
    (var / "broker" / "queue").mkdir(parents=True)
    (var / "broker").chmod(0o755)
    (var / "broker" / "queue").chmod(0o755)
    (var / "broker" / "queue" / "message.msg").write_text("{}")
    (var / "broker" / "queue" / "message.msg").chmod(0o644)
    (var / "home").mkdir()
    (var / "home").chmod(0o755)


def test_an_old_installation_is_tightened_and_a_second_pass_changes_nothing(
    tmp_path: Path,
) -> None:
    # Given var/ as an older portal left it
    var = tmp_path / "var"
    old_installation(var)

    # When it is tightened
    changed = tighten_var_dir(var)

    # then var/ and its private folders are 0700, the secrets and the database 0600
    assert mode(var) == 0o700
    for name in OLD_SECRETS:
        assert mode(var / name) == 0o600, name
    assert mode(var / "broker") == mode(var / "broker" / "queue") == 0o700
    assert mode(var / "broker" / "queue" / "message.msg") == 0o600
    # and what other parts of the portal own keeps its mode (var/ 0700 already closes it)
    assert mode(var / "home") == 0o755
    assert len(changed) == 8
    assert tighten_var_dir(var) == []


def test_tightening_never_follows_a_symbolic_link(tmp_path: Path) -> None:
    # Given a secret's name that is a link to a file elsewhere
    var, elsewhere = tmp_path / "var", tmp_path / "shared.txt"
    var.mkdir(mode=0o700)
    elsewhere.write_text("not the portal's")
    elsewhere.chmod(0o644)
    (var / "secret_key").symlink_to(elsewhere)

    # When var/ is tightened, the link's target is left as it was
    tighten_var_dir(var)
    assert mode(elsewhere) == 0o644


def test_secret_files_and_private_folders_are_private_whatever_the_umask(
    tmp_path: Path, open_umask: None
) -> None:
    # Given a umask that would leave everything open, when a private folder and a secret
    # file are made
    folder = tmp_path / "a" / "var"
    make_private_dir(folder)
    write_private_file(folder / "secret_key", "s3cret")

    # then they are the portal's alone
    assert mode(folder) == 0o700
    assert mode(folder / "secret_key") == 0o600
    # and a secret is never written through an existing file or link
    with pytest.raises(FileExistsError):
        write_private_file(folder / "secret_key", "other")
    (folder / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        write_private_file(folder / "link", "other")
    assert not (tmp_path / "target").exists()


def test_settings_create_a_new_var_dir_and_secret_key_private(tmp_path: Path) -> None:
    # Given no var/ yet and an open umask, when the portal's settings load (any command)
    var = tmp_path / "new-var"
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE")}
    env["PORTAL_VAR_DIR"] = str(var)
    script = "import os; os.umask(0); import django; django.setup(); from django.conf import settings; settings.SECRET_KEY"  # noqa: E501
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True)

    # then var/ and the secret key were created private
    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600


def test_manage_py_runs_under_umask_077(tmp_path: Path) -> None:
    # When a management command creates a file (migrate creates the SQLite database)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["PORTAL_VAR_DIR"] = str(tmp_path / "var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        preexec_fn=lambda: os.umask(0o022),
    )

    # then it is the portal's alone
    assert mode(tmp_path / "var" / "portal.sqlite3") == 0o600


def _umask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask line")


@pytest.mark.integration
def test_runportal_tightens_an_old_installation_runs_private_and_stops_everything(
    open_umask: None,
) -> None:
    with tempfile.TemporaryDirectory(prefix="jlp-") as tmp:
        # Given an older installation's var/ (everything readable by every local account)
        var = Path(tmp) / "var"
        old_installation(var, ("secret_key", "portal.sqlite3"))

        # When runportal starts on it
        portal = EmbeddedPortal(var)
        portal.start()
        try:
            # then it said so, var/ and its files are private, the new ones too
            assert f"Made {var} private" in portal.output()
            assert mode(var) == 0o700
            for name in ("secret_key", "admin-password", "portal.sqlite3"):
                assert mode(var / name) == 0o600, name
            assert mode(var / "broker") == 0o700
            assert stat.S_ISSOCK((var / "broker" / "redis.sock").lstat().st_mode)
            assert mode(var / "broker" / "redis.sock") == 0o600
            # and every process of the portal runs under umask 077
            children = portal.children()
            assert {c.name() for c in children} >= {"redis-server"}
            assert len(children) >= 4
            for process in [psutil.Process(portal.process.pid), *children]:  # type: ignore[union-attr]
                assert _umask(process.pid) == 0o077, process.cmdline()
        finally:
            # When it is asked to stop (SIGTERM), it stops every process it started, and exits
            code = portal.stop()
        assert code == 0, portal.output()[-3000:]
        assert not [p for p in portal.descendants if p.is_running() and p.status() != "zombie"]
        assert "worker-control stopped" in portal.output() and "broker stopped" in portal.output()
