"""Where users' folders are: one per account whatever its name, private, the session's three."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from hypothesis import given
from hypothesis import strategies as st

from storage_app.layout import (
    LIBRARY_DIR_NAME,
    folder_name,
    home_ensure,
    home_path,
    scratch_ensure,
    scratch_path,
    session_folders_prepare,
)

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def test_a_folder_is_named_after_the_account_not_its_name() -> None:
    assert folder_name(7) == "u~7"
    assert folder_name(User(pk=7, username="alice")) == folder_name(7)


@pytest.mark.parametrize("bad", [0, -1, None, "alice", "7", True])
def test_no_folder_for_an_unsaved_user_or_a_name(bad: Any) -> None:
    with pytest.raises(ValueError):
        folder_name(bad)


def test_no_folder_for_an_unsaved_user() -> None:
    with pytest.raises(ValueError):
        folder_name(User(username="alice"))


@given(st.integers(min_value=1), st.integers(min_value=1))
def test_distinct_accounts_never_share_a_folder(first: int, second: int) -> None:
    if first != second:
        assert folder_name(first) != folder_name(second)


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_no_account_gives_a_hidden_folder_a_path_or_an_old_name(pk: int) -> None:
    name = folder_name(pk)

    assert name and not name.startswith((".", "~"))
    assert "/" not in name and "\0" not in name
    assert len(name.encode()) <= 255
    # Folders of earlier versions were named after usernames: a kept one had no "~", a changed
    # one exactly 12 hex digits after it. A pk-named folder is neither (below 10**11 accounts).
    assert name == f"u~{pk}"


def test_paths_are_under_their_roots(settings: Any) -> None:
    assert home_path(7) == settings.STORAGE_HOME_ROOT / "u~7"
    assert scratch_path(7) == settings.STORAGE_SCRATCH_ROOT / "u~7"


def test_home_and_scratch_are_made_private_also_when_they_existed_wider(settings: Any) -> None:
    # Given a scratch folder made earlier with the umask's 0755
    old = settings.STORAGE_SCRATCH_ROOT / "u~1"
    old.mkdir(parents=True, mode=0o755)

    home = home_ensure(1)
    scratch = scratch_ensure(1)

    for path in (home, scratch):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
    assert scratch == old


def test_something_else_in_a_users_place_is_refused_not_removed(
    settings: Any, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    settings.STORAGE_HOME_ROOT.mkdir(parents=True)
    (settings.STORAGE_HOME_ROOT / "u~1").symlink_to(elsewhere)

    with pytest.raises(NotADirectoryError):
        home_ensure(1)

    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


def test_session_folders_without_a_library_configured(settings: Any) -> None:
    folders = session_folders_prepare(1)

    assert folders.home == home_path(1) and folders.home.is_dir()
    assert folders.scratch == scratch_path(1) and folders.scratch.is_dir()
    assert folders.library == folders.home / LIBRARY_DIR_NAME
    assert not folders.library.exists()
    assert (folders.library_status, folders.library_message) == (
        "not_configured",
        "No shared notebooks are offered here.",
    )


def test_session_folders_get_a_fresh_library_clone(settings: Any, tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    subprocess.run(["git", "init", "-q", str(origin)], env=GIT_ENV, check=True)
    (origin / "intro.ipynb").write_text("{}\n")
    subprocess.run(["git", "-C", str(origin), "add", "."], env=GIT_ENV, check=True)
    subprocess.run(["git", "-C", str(origin), "commit", "-qm", "x"], env=GIT_ENV, check=True)
    settings.NOTEBOOKS_LIBRARY_URL = f"file://{origin}"

    folders = session_folders_prepare(1)

    assert folders.library_status == "cloned"
    assert folders.library_message.startswith("Notebooks library: cloned at commit ")
    assert (folders.library / "intro.ipynb").read_text() == "{}\n"
    assert stat.S_IMODE(folders.library.stat().st_mode) == 0o555


@pytest.mark.django_db
def test_a_deleted_users_successor_with_the_same_name_starts_empty() -> None:
    # Given alice's files in her home and scratch
    alice = get_user_model().objects.create_user("alice")
    folders = session_folders_prepare(alice)
    (folders.home / "thesis.ipynb").write_text("{}")
    (folders.scratch / "data.nc").write_text("x")
    # When her account is deleted and someone else later gets the name (OIDC, say)
    alice.delete()
    successor = get_user_model().objects.create_user("alice")

    new = session_folders_prepare(successor)

    # then the newcomer has a new, empty home and scratch; alice's stay where they were
    assert (new.home, new.scratch) != (folders.home, folders.scratch)
    assert list(new.home.iterdir()) == [] and list(new.scratch.iterdir()) == []
    assert (folders.home / "thesis.ipynb").exists() and (folders.scratch / "data.nc").exists()


@pytest.mark.django_db
def test_a_renamed_user_keeps_their_files_and_the_next_holder_of_the_name_gets_none() -> None:
    users = get_user_model().objects
    bob = users.create_user("bob")
    (session_folders_prepare(bob).home / "notes.ipynb").write_text("{}")
    (scratch_path(bob) / "run.log").write_text("x")
    bob.username = "bob-old"
    bob.save()
    carol = users.create_user("carol")
    carol.username = "bob"
    carol.save()

    assert (home_path(bob) / "notes.ipynb").exists() and (scratch_path(bob) / "run.log").exists()
    carols = session_folders_prepare(carol)
    assert list(carols.home.iterdir()) == [] and list(carols.scratch.iterdir()) == []
