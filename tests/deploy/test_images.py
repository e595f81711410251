"""The two images: their Dockerfiles agree with the manifests and the spawner, and the session
image's conda environment is the service's.

No container engine runs here, so the images are not built in the tests; these checks read the
Dockerfiles for what the rest of the system relies on (users, base images, build steps).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

from sessions_app.spawners import kube_objects
from tests.deploy.rendering import REPO, render

IMAGES = REPO / "images"
PORTAL_DOCKERFILE = IMAGES / "portal" / "Dockerfile"
SESSION_DOCKERFILE = IMAGES / "session" / "Dockerfile"
SESSION_ENVIRONMENT = IMAGES / "session" / "environment.yml"
# The service's environment (the service page's software list), beside the repository on the
# developers' machines and in CI. When it changes, copy it to images/session/environment.yml
# and put its new SHA-256 here: the test says so.
SEED_ENVIRONMENT = REPO.parent / "shared" / "seed" / "environment.yml"
SEED_ENVIRONMENT_SHA256 = "378318ff9117c4f369bd172c08570c90218a68810b1da1defe019e28b973f1b2"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, also between continuation lines
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                joined.append(current.strip())
            current = ""
    pairs = []
    for text in joined:
        keyword, _, rest = text.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def last(dockerfile: Path, keyword: str) -> str:
    values = [rest for word, rest in instructions(dockerfile) if word == keyword]
    assert values, f"{dockerfile} has no {keyword}"
    return values[-1]


def arg_default(dockerfile: Path, name: str) -> str:
    for word, rest in instructions(dockerfile):
        if word == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"{dockerfile} has no ARG {name}=default")


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for word, rest in instructions(dockerfile):
        if word != "COPY" or "--from=" in rest:
            continue
        parts = [part for part in rest.split() if not part.startswith("--")]
        sources.extend(parts[:-1])
    return sources


def pod_spec(component: str) -> dict:
    for obj in render("base"):
        labels = obj.get("metadata", {}).get("labels", {})
        if (
            obj["kind"] in ("Deployment", "Job")
            and labels.get("app.kubernetes.io/component") == component
        ):
            spec: dict = obj["spec"]["template"]["spec"]
            return spec
    raise AssertionError(f"no {component} workload in the base")


# --- the session image --------------------------------------------------------------------------


def test_session_environment_is_the_services() -> None:
    copy = SESSION_ENVIRONMENT.read_bytes()

    if SEED_ENVIRONMENT.exists():
        # Beside the repository (developers' machines, CI): the copy is the service's file,
        # and the recorded digest is the file's, for checkouts that do not have it.
        assert copy == SEED_ENVIRONMENT.read_bytes(), (
            f"copy {SEED_ENVIRONMENT} to {SESSION_ENVIRONMENT.relative_to(REPO)}"
        )
    assert hashlib.sha256(copy).hexdigest() == SEED_ENVIRONMENT_SHA256, (
        "images/session/environment.yml changed: if the service's environment changed, put its "
        f"SHA-256 in SEED_ENVIRONMENT_SHA256 ({__file__})"
    )


def test_session_image_is_the_minimal_jupyter_image_on_python_311() -> None:
    base = arg_default(SESSION_DOCKERFILE, "BASE_IMAGE")
    environment = yaml.safe_load(SESSION_ENVIRONMENT.read_text())

    assert base.startswith("quay.io/jupyter/minimal-notebook:python-3.11")
    assert "python=3.11" in environment["dependencies"]
    assert environment["name"] == "base"  # updated into the image's base environment
    assert re.search(r"mamba env update --name base --file \S*environment\.yml", " ".join(
        rest for word, rest in instructions(SESSION_DOCKERFILE) if word == "RUN"
    ))  # fmt: skip


def test_session_image_runs_as_the_spawners_user() -> None:
    assert last(SESSION_DOCKERFILE, "USER") == (f"{kube_objects.USER_ID}:{kube_objects.GROUP_ID}")
    assert last(SESSION_DOCKERFILE, "WORKDIR") == kube_objects.HOME


def test_session_image_context_is_its_own_folder() -> None:
    sources = copy_sources(SESSION_DOCKERFILE)

    assert sources
    assert all((SESSION_DOCKERFILE.parent / source).exists() for source in sources)


# --- the portal image ---------------------------------------------------------------------------


def test_portal_image_builds_on_python_311_slim_with_the_c_helper_and_static_files() -> None:
    run = " ".join(rest for word, rest in instructions(PORTAL_DOCKERFILE) if word == "RUN")

    assert arg_default(PORTAL_DOCKERFILE, "PYTHON_IMAGE").startswith("python:3.11-slim")
    assert "pip install --requirement requirements.txt" in run
    assert "python setup.py build_ext --inplace" in run
    assert "manage.py collectstatic --noinput" in run


def test_portal_image_user_is_the_pods_user() -> None:
    user = last(PORTAL_DOCKERFILE, "USER")

    assert user.split(":")[0] not in ("0", "root")
    for component in ("web", "beat", "migrate"):
        context = pod_spec(component)["securityContext"]
        assert user == f"{context['runAsUser']}:{context['runAsGroup']}", component


def test_workers_run_as_the_sessions_user() -> None:
    # They make each user's scratch folder and remove what sessions wrote there: only the
    # files' owner can, under the restricted profile. Every queue's worker: routes may change.
    workers = [
        obj["spec"]["template"]["spec"]["securityContext"]
        for obj in render("base")
        if obj["kind"] == "Deployment"
        and obj["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]

    assert workers
    for context in workers:
        assert (context["runAsUser"], context["runAsGroup"]) == (
            kube_objects.USER_ID,
            kube_objects.GROUP_ID,
        )


def test_portal_image_context_excludes_local_state() -> None:
    ignored = set((PORTAL_DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split())

    assert {".git", ".venv", "var", "**/*.so", "tests"} <= ignored
    assert all((REPO / source).exists() for source in copy_sources(PORTAL_DOCKERFILE))
