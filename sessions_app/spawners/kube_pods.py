"""What a session pod says: its status in words a person understands (:func:`pod_verdict`),
the progress lines of its events, and the session's pod name, token and base URL read back from
a state or a pod. Pure functions of the API's objects: no calls to the cluster."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sessions_app.spawners import kube_objects as objects
from sessions_app.spawners.base import PollResult, ServerStatus, State
from sessions_app.spawners.kube_objects import meta

#: Container waiting reasons that mean the image will never come.
IMAGE_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
#: Waiting reasons that mean the container cannot start as configured.
START_FAILURES = frozenset(
    {"CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
#: What the scheduler's and kubelet's event reasons mean for someone waiting for their server.
EVENT_MESSAGES = {
    "Scheduled": "A node was found for your server.",
    "FailedScheduling": "Waiting for a node with room for your server.",
    "Pulling": "Downloading the environment's image (this can take a few minutes).",
    "Pulled": "The environment's image is ready.",
    "Created": "Starting your Jupyter server.",
    "Started": "Your Jupyter server is starting up.",
}
DEADLINE_EXCEEDED = "DeadlineExceeded"


def pod_verdict(pod: client.V1Pod, unschedulable_seconds: int, now: datetime) -> PollResult:
    """What a pod's status means for its session. A STARTING verdict without a message asks
    the caller to find the latest event."""
    status = pod.status or client.V1PodStatus()
    if meta(pod).deletion_timestamp:
        return PollResult(ServerStatus.GONE, message="Its pod is being removed.")
    if status.phase == "Failed":
        if status.reason == DEADLINE_EXCEEDED:
            return PollResult(
                ServerStatus.GONE,
                message="The cluster ended it at its time limit.",
                deadline_exceeded=True,
            )
        return PollResult(ServerStatus.GONE, message=termination_message(pod))
    if status.phase == "Succeeded":
        return PollResult(ServerStatus.GONE, message="The server exited.")
    for container in [*(status.init_container_statuses or []), *(status.container_statuses or [])]:
        waiting = container.state.waiting if container.state else None
        if waiting is None:
            continue
        if waiting.reason in IMAGE_FAILURES:
            return PollResult(
                ServerStatus.GONE,
                message=f"The environment's image {container.image} could not be downloaded "
                f"({waiting.reason}: {waiting.message or 'no details'}). Please tell the staff.",
            )
        if waiting.reason in START_FAILURES:
            return PollResult(
                ServerStatus.GONE,
                message=f"The server crashed while starting ({waiting.reason}: "
                f"{waiting.message or 'no details'}).",
            )
    conditions = {condition.type: condition for condition in status.conditions or []}
    scheduled = conditions.get("PodScheduled")
    if scheduled and scheduled.status == "False" and scheduled.reason == "Unschedulable":
        created = meta(pod).creation_timestamp
        waited = (now - created).total_seconds() if created else 0.0
        if waited > unschedulable_seconds:
            return PollResult(
                ServerStatus.GONE,
                message="No machine in the cluster had room for this session within "
                f"{unschedulable_seconds} seconds ({scheduled.message or 'unschedulable'}). "
                "Please try again later or choose a smaller environment.",
            )
        return PollResult(
            ServerStatus.STARTING, message="Waiting for a machine with room for your server."
        )
    ready = conditions.get("Ready")
    if status.phase == "Running" and ready is not None and ready.status == "True":
        return PollResult(ServerStatus.RUNNING)
    return PollResult(ServerStatus.STARTING)


def termination_message(pod: client.V1Pod) -> str:
    status = pod.status or client.V1PodStatus()
    for container in [*(status.container_statuses or []), *(status.init_container_statuses or [])]:
        terminated = container.state.terminated if container.state else None
        if terminated is None or terminated.exit_code == 0:
            continue
        if terminated.reason == "OOMKilled":
            return "The server ran out of memory and was stopped."
        reason = terminated.reason or "Error"
        return f"The server exited with code {terminated.exit_code} ({reason})."
    details = ": ".join(part for part in (status.reason, status.message) if part)
    return f"The pod failed ({details or 'no reason given'})."


def event_time(event: client.CoreV1Event) -> datetime:
    for moment in (event.last_timestamp, event.event_time, event.first_timestamp):
        if moment is not None:
            return moment
    created = meta(event).creation_timestamp if event.metadata else None
    return created or datetime.min.replace(tzinfo=UTC)


def label_selector(labels: Mapping[str, str], sessions: Sequence[str] = ()) -> str:
    """A label selector: every label of ``labels``, and one of ``sessions`` if given."""
    parts = [f"{key}={value}" for key, value in labels.items()]
    if sessions:
        parts.append(f"{objects.SESSION_LABEL} in ({','.join(sessions)})")
    return ",".join(parts)


def pod_name(state: State) -> str | None:
    name = state.get("pod") if isinstance(state, dict) else None
    if isinstance(name, str) and objects.is_dns_label(name):
        return name
    return None


def pod_token(pod: client.V1Pod) -> str | None:
    for container in pod.spec.containers if pod.spec else []:
        for variable in container.env or []:
            if variable.name == "JUPYTER_TOKEN" and variable.value:
                return str(variable.value)
    return None


def pod_base_url(pod: client.V1Pod) -> str:
    for container in pod.spec.containers if pod.spec else []:
        for argument in container.args or []:
            if argument.startswith("--ServerApp.base_url="):
                return str(argument.split("=", 1)[1])
    return "/"


def api_reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or f"HTTP {exc.status}")
