"""The test plays the scheduler and the kubelet, through the real client, against the fake server.

Each method moves one pod as the node would and writes the Events a real cluster writes, with
their reasons and messages (kube-scheduler's and kubelet's wording as of Kubernetes 1.3x):

    kubelet.schedule("p")        # Scheduled, bound to node-1
    kubelet.pulling("p")         # Pulling; containers ContainerCreating
    kubelet.run("p")             # Pulled, Created, Started; Running and Ready

``auto()`` does that for every pod that appears, in a thread that watches the pods.

The kubelet also keeps what the containers print (``write_log``); the fake API server serves it
at pods/<name>/log once the kubelet is attached to it (``FakeApiServer.attach_kubelet``, which
the ``kubelet`` fixture does).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.kube.apiserver import DEFAULT_NAMESPACE

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient memory."
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _image_pull_error(image: str) -> str:
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f'failed to resolve reference "{image}": {image}: not found'
    )


class Kubelet:
    """Scheduler and kubelet for the pods of one namespace, through ``api_client``.

    Every method reads the pod first and takes a pod's name; a pod deleted meanwhile raises
    the client's 404 ``ApiException`` (``auto`` skips such pods).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        node: str = "node-1",
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.node = node
        # What went wrong in the auto thread, other than pods deleted under its feet.
        self.errors: list[BaseException] = []
        self._event_ids = itertools.count()
        self._ips: dict[str, str] = {}
        self._auto_stop = threading.Event()
        self._auto_thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        # What each container printed, by (pod uid, container): a pod made again under the same
        # name starts with an empty log, as on a node. Read from the API server's thread.
        self._logs: dict[tuple[str, str], str] = {}
        self._logs_lock = threading.Lock()

    # --- the scheduler ---

    def schedule(self, name: str, node: str | None = None) -> None:
        """Bind the pod to ``node`` (PodScheduled True, ``spec.nodeName``), Event Scheduled."""
        node = node or self.node
        pod = self._read(name)
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        # The API answers a Status, which the client cannot read as the V1Binding it expects.
        response: Any = self.core.create_namespaced_pod_binding(
            name, self.namespace, binding, _preload_content=False
        )
        response.read()  # a connection goes back to the pool only once its answer is read
        response.release_conn()
        self._scheduler_event(
            pod, "Normal", "Scheduled", f"Successfully assigned {self.namespace}/{name} to {node}"
        )

    def unschedulable(self, name: str, message: str = DEFAULT_UNSCHEDULABLE) -> None:
        """PodScheduled False (Unschedulable), Event FailedScheduling."""
        pod = self._read(name)
        self._patch(
            pod, conditions=[self._condition(pod, "PodScheduled", False, "Unschedulable", message)]
        )
        self._scheduler_event(pod, "Warning", "FailedScheduling", message)

    # --- the kubelet ---

    def pulling(self, name: str) -> None:
        """The node took the pod: containers ContainerCreating, Event Pulling for each image."""
        pod = self._read(name)
        self._patch(
            pod,
            phase="Pending",
            conditions=self._not_ready(pod, "ContainersNotReady"),
            containers=[
                self._container(c, {"waiting": {"reason": "ContainerCreating"}})
                for c in self._containers(pod)
            ],
        )
        for container in self._containers(pod):
            self._event(
                pod, "Normal", "Pulling", f'Pulling image "{container["image"]}"', container
            )

    def run(self, name: str, ready: bool = True) -> None:
        """Running, every container running (and ready); Events Pulled, Created, Started."""
        pod = self._read(name)
        for container in self._containers(pod):
            self._event(
                pod,
                "Normal",
                "Pulled",
                f'Successfully pulled image "{container["image"]}" in 1.204s (1.204s including '
                "waiting). Image size: 181229811 bytes.",
                container,
            )
            self._event(
                pod, "Normal", "Created", f"Created container: {container['name']}", container
            )
            self._event(
                pod, "Normal", "Started", f"Started container {container['name']}", container
            )
        started = {"running": {"startedAt": _now()}}
        containers = [
            self._container(c, started, ready=ready, started=True, created=True)
            for c in self._containers(pod)
        ]
        conditions = self._not_ready(pod, "ContainersNotReady", ready=ready)
        self._patch(pod, phase="Running", conditions=conditions, containers=containers)

    def image_pull_failed(
        self, name: str, *, back_off: bool = False, error: str | None = None
    ) -> None:
        """Containers waiting ErrImagePull (or ImagePullBackOff, later), Events Failed (BackOff)."""
        pod = self._read(name)
        containers = []
        for container in self._containers(pod):
            image = container["image"]
            detail = error or _image_pull_error(image)
            if back_off:
                reason, message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
                self._event(pod, "Normal", "BackOff", message, container)
            else:
                reason, message = "ErrImagePull", detail
                self._event(
                    pod, "Warning", "Failed", f'Failed to pull image "{image}": {detail}', container
                )
            self._event(pod, "Warning", "Failed", f"Error: {reason}", container)
            containers.append(
                self._container(container, {"waiting": {"reason": reason, "message": message}})
            )
        conditions = self._not_ready(pod, "ContainersNotReady")
        self._patch(pod, phase="Pending", conditions=conditions, containers=containers)

    def crash(self, name: str, exit_code: int = 1) -> None:
        """The containers exit with ``exit_code``: what follows depends on the restartPolicy."""
        policy = self._read(name).get("spec", {}).get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and exit_code != 0):
            self.crash_loop(name, exit_code)
        else:
            self.fail(name, exit_code)

    def crash_loop(self, name: str, exit_code: int = 1) -> None:
        """Running, containers waiting CrashLoopBackOff, lastState terminated; Event BackOff."""
        pod = self._read(name)
        uid = pod["metadata"]["uid"]
        containers = []
        for container, old in self._containers_with_status(pod):
            message = (
                f"back-off 10s restarting failed container={container['name']} "
                f"pod={name}_{self.namespace}({uid})"
            )
            containers.append(
                self._container(
                    container,
                    {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                    created=True,
                    restart_count=int(old.get("restartCount", 0)) + 1,
                    last_state={"terminated": self._terminated(old, exit_code)},
                )
            )
            self._event(
                pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {container['name']} in pod "
                f"{name}_{self.namespace}({uid})",
                container,
            )
        conditions = self._not_ready(pod, "ContainersNotReady")
        self._patch(pod, phase="Running", conditions=conditions, containers=containers)

    def fail(self, name: str, exit_code: int = 1) -> None:
        """Failed: the containers terminated with ``exit_code`` and are not restarted."""
        self._finish(self._read(name), exit_code)

    def succeed(self, name: str) -> None:
        """Succeeded: every container exited 0."""
        self._finish(self._read(name), 0)

    def terminate(self, name: str, exit_code: int = 0) -> None:
        """The kubelet stops the containers (Events Killing); they exit with ``exit_code``."""
        pod = self._read(name)
        for container in self._containers(pod):
            self._event(
                pod, "Normal", "Killing", f"Stopping container {container['name']}", container
            )
        self._finish(pod, exit_code)

    def deadline_exceeded(self, name: str) -> None:
        """Failed, reason DeadlineExceeded (activeDeadlineSeconds ran out), and its Event."""
        pod = self._read(name)
        self._event(pod, "Normal", "DeadlineExceeded", DEADLINE_MESSAGE)
        self._finish(pod, 137, reason="DeadlineExceeded", message=DEADLINE_MESSAGE)

    # --- the containers' logs ---

    def write_log(self, name: str, *lines: str, container: str | None = None) -> None:
        """The container (the pod's first unless named) prints ``lines``, one after the other."""
        pod = self._read(name)
        container = container or self._containers(pod)[0]["name"]
        key = (pod["metadata"]["uid"], container)
        with self._logs_lock:
            self._logs[key] = self._logs.get(key, "") + "".join(f"{line}\n" for line in lines)

    def container_log(self, pod_uid: str, container: str) -> str:
        """All a container printed so far (the API server asks, as it asks a node's kubelet)."""
        with self._logs_lock:
            return self._logs.get((pod_uid, container), "")

    # --- a healthy node for every pod ---

    def auto(self, namespace: str | None = None, delay: float = 0.05) -> Kubelet:
        """Start a thread that schedules, pulls and runs (ready) every pending pod it sees.

        It watches the pods through the client, waits ``delay`` between the steps, and skips
        pods deleted on the way; other failures land in ``errors``. ``namespace`` becomes the
        kubelet's namespace (default: unchanged). ``stop()`` ends it.
        """
        if self._auto_thread is not None:
            raise RuntimeError("the kubelet already runs on its own")
        if namespace is not None:
            self.namespace = namespace
        self._auto_stop.clear()
        self._auto_thread = threading.Thread(
            target=self._auto, args=(delay,), name="fake-kubelet", daemon=True
        )
        self._auto_thread.start()
        return self

    def stop(self) -> None:
        """Stop the ``auto`` thread (at once: its watch is cut)."""
        thread, self._auto_thread = self._auto_thread, None
        if thread is None:
            return
        self._auto_stop.set()
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            # Shut the watch's socket, again if the thread was opening a new one meanwhile.
            if self._watch is not None:
                self._watch.stop()
            thread.join(0.02)

    def _auto(self, delay: float) -> None:
        seen: set[str] = set()
        while not self._auto_stop.is_set():
            try:
                for pod in self._pending_pods(seen):
                    self._play(pod["metadata"]["name"], delay)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                if self._auto_stop.is_set():
                    return
                log.warning("fake kubelet: the pod watch failed: %s", exc)
                self.errors.append(exc)
                self._auto_stop.wait(0.1)

    def _pending_pods(self, seen: set[str]) -> Iterator[Obj]:
        self._watch = watch.Watch()
        for event in self._watch.stream(
            self.core.list_namespaced_pod, self.namespace, timeout_seconds=300
        ):
            if self._auto_stop.is_set():
                return
            pod = event["raw_object"]
            uid = pod["metadata"]["uid"]
            if (
                event["type"] in ("ADDED", "MODIFIED")
                and uid not in seen
                and pod.get("status", {}).get("phase") == "Pending"
                and not pod.get("spec", {}).get("nodeName")
            ):
                seen.add(uid)
                yield pod

    def _play(self, name: str, delay: float) -> None:
        for index, step in enumerate((self.schedule, self.pulling, self.run)):
            if index and self._auto_stop.wait(delay):
                return
            try:
                step(name)
            except ApiException as exc:
                if exc.status != 404:  # a pod deleted on the way is not the kubelet's problem
                    log.warning("fake kubelet: %s of pod %s failed: %s", step.__name__, name, exc)
                    self.errors.append(exc)
                return

    # --- reading and writing ---

    def _read(self, name: str) -> Obj:
        pod = self.core.read_namespaced_pod(name, self.namespace)
        raw: Obj = self.core.api_client.sanitize_for_serialization(pod)
        return raw

    def _patch(
        self,
        pod: Obj,
        *,
        phase: str | None = None,
        conditions: list[Obj] | None = None,
        containers: list[Obj] | None = None,
        **extra: Any,
    ) -> None:
        name = pod["metadata"]["name"]
        status: Obj = dict(extra)
        if phase is not None:
            status["phase"] = phase
            if phase != "Pending" or containers:
                status.setdefault("hostIP", "192.168.0.10")
                status.setdefault("hostIPs", [{"ip": "192.168.0.10"}])
                status.setdefault("startTime", pod.get("status", {}).get("startTime") or _now())
            if phase in ("Pending", "Running") and containers:
                ip = self._ips.setdefault(
                    pod["metadata"]["uid"], f"10.0.0.{len(self._ips) % 250 + 2}"
                )
                status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        if conditions is not None:
            status["conditions"] = conditions
        if containers is not None:
            status["containerStatuses"] = containers
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def _finish(
        self, pod: Obj, exit_code: int, *, reason: str | None = None, message: str | None = None
    ) -> None:
        phase = "Succeeded" if exit_code == 0 and reason is None else "Failed"
        containers = [
            self._container(
                container,
                {"terminated": self._terminated(old, exit_code)},
                created=True,
                restart_count=int(old.get("restartCount", 0)),
            )
            for container, old in self._containers_with_status(pod)
        ]
        why = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        self._patch(
            pod,
            phase=phase,
            conditions=self._not_ready(pod, why),
            containers=containers,
            **({"reason": reason, "message": message} if reason else {}),
        )

    def _terminated(self, old: Obj, exit_code: int) -> Obj:
        running = (old.get("state") or {}).get("running") or {}
        return {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": running.get("startedAt") or _now(),
            "finishedAt": _now(),
            "containerID": old.get("containerID") or f"containerd://{'0' * 64}",
        }

    @staticmethod
    def _containers(pod: Obj) -> list[Obj]:
        return list((pod.get("spec") or {}).get("containers") or [])

    def _containers_with_status(self, pod: Obj) -> list[tuple[Obj, Obj]]:
        statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        return [(c, statuses.get(c["name"], {})) for c in self._containers(pod)]

    @staticmethod
    def _container(
        container: Obj,
        state: Obj,
        *,
        ready: bool = False,
        started: bool = False,
        created: bool = False,
        restart_count: int = 0,
        last_state: Obj | None = None,
    ) -> Obj:
        image = str(container["image"])
        digest = hashlib.sha256(image.encode()).hexdigest()
        status: Obj = {
            "name": container["name"],
            "image": image,
            "imageID": f"{image.split(':')[0]}@sha256:{digest}" if created else "",
            "ready": ready,
            "started": started,
            "restartCount": restart_count,
            "state": state,
            "lastState": last_state or {},
        }
        if created:
            seed = f"{image} {container['name']} {restart_count}".encode()
            status["containerID"] = f"containerd://{hashlib.sha256(seed).hexdigest()}"
        return status

    @staticmethod
    def _condition(
        pod: Obj, kind: str, true: bool, reason: str | None = None, message: str | None = None
    ) -> Obj:
        status = "True" if true else "False"
        old: Obj = next(
            (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == kind),
            {},
        )
        condition: Obj = {
            "type": kind,
            "status": status,
            # The transition time moves only when the status changes, as the kubelet does it.
            "lastTransitionTime": old.get("lastTransitionTime")
            if old.get("status") == status
            else _now(),
            "lastProbeTime": None,
        }
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        return condition

    def _not_ready(self, pod: Obj, reason: str, *, ready: bool = False) -> list[Obj]:
        """The conditions of a pod on a node: Ready and ContainersReady as ``ready`` says."""
        unready = [c["name"] for c in self._containers(pod)]
        message = (
            None
            if reason != "ContainersNotReady"
            else f"containers with unready status: [{' '.join(unready)}]"
        )
        return [
            self._condition(pod, "PodReadyToStartContainers", True),
            self._condition(pod, "Initialized", True),
            self._condition(
                pod, "Ready", ready, None if ready else reason, None if ready else message
            ),
            self._condition(
                pod, "ContainersReady", ready, None if ready else reason, None if ready else message
            ),
            self._condition(pod, "PodScheduled", True),
        ]

    # --- events ---

    def _event(
        self, pod: Obj, kind: str, reason: str, message: str, container: Obj | None = None
    ) -> None:
        now = datetime.now(UTC)
        self.core.create_namespaced_event(
            self.namespace,
            client.CoreV1Event(
                metadata=self._event_metadata(pod),
                involved_object=self._reference(pod, container),
                reason=reason,
                message=message,
                type=kind,
                source=client.V1EventSource(component="kubelet", host=self.node),
                first_timestamp=now,
                last_timestamp=now,
                count=1,
                reporting_component="kubelet",
                reporting_instance=self.node,
            ),
        )

    def _scheduler_event(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        # The scheduler writes events.k8s.io/v1 Events: seen through core/v1 they have an
        # eventTime and an action, but no first/lastTimestamp and no source host.
        self.core.create_namespaced_event(
            self.namespace,
            client.CoreV1Event(
                metadata=self._event_metadata(pod),
                involved_object=self._reference(pod, None),
                reason=reason,
                message=message,
                type=kind,
                action="Binding" if reason == "Scheduled" else "Scheduling",
                event_time=datetime.now(UTC),
                source=client.V1EventSource(component="default-scheduler"),
                reporting_component="default-scheduler",
                reporting_instance="default-scheduler-control-plane",
            ),
        )

    def _event_metadata(self, pod: Obj) -> client.V1ObjectMeta:
        # As client-go's recorder names them: the object's name and a unique hex suffix.
        suffix = time.time_ns() + next(self._event_ids)
        return client.V1ObjectMeta(
            name=f"{pod['metadata']['name']}.{suffix:x}", namespace=self.namespace
        )

    def _reference(self, pod: Obj, container: Obj | None) -> client.V1ObjectReference:
        meta = pod["metadata"]
        return client.V1ObjectReference(
            api_version="v1",
            kind="Pod",
            name=meta["name"],
            namespace=self.namespace,
            uid=meta["uid"],
            resource_version=meta.get("resourceVersion"),
            field_path=f"spec.containers{{{container['name']}}}" if container else None,
        )
