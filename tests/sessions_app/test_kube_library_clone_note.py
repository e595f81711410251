"""The credentials in the notebooks library's URL stay out of the clone's failure note, which
users read."""

from __future__ import annotations

from pathlib import Path

from sessions_app.spawners.base import SpawnRequest
from sessions_app.spawners.kube_objects import (
    KubeConfig,
    make_pod,
)


def test_the_library_urls_credentials_stay_out_of_the_failure_note(tmp_path: Path) -> None:
    config = KubeConfig(library_url="https://deploy:s3cret@git.example.org/course/notebooks.git")
    request = SpawnRequest(
        session_id="s1",
        username="alice",
        memory_mb=1024,
        cpus=1,
        duration_seconds=60,
        home_dir=tmp_path / "u~1",
        backend_settings={"image": "example.org/session:1"},
    )

    pod = make_pod(config, request, "token")
    assert pod.spec is not None and pod.spec.init_containers
    [init] = pod.spec.init_containers
    command = init.command or []

    script, display = command[2], command[-1]
    assert display == "https://git.example.org/course/notebooks.git"
    assert "$3" in script.split("CLONE-FAILED")[0]
