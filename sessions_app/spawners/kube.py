"""Kubernetes back-end: each session's JupyterLab runs in a pod of its own.

The objects come from the pure builders in :mod:`.kube_objects`; this module only sends them,
reads them back and says what it saw. Every call goes through :meth:`KubernetesSpawner._call`,
which retries timeouts, refused connections, 429 and 5xx with exponential backoff, and turns
what is left into a :class:`~.base.TransientSpawnerError`.

- **Start**: the namespace's NetworkPolicy (replaced, so settings changes reach it), the user's
  home PVC (created on first use, adopted after), then the Pod, and a Service and an Ingress
  owned by the pod (the cluster removes them with it). A name already taken by this session
  (a retried task) is adopted; taken by anything else, it is replaced.
- **Poll**: the pod's status in words a person understands: waiting for a node, pulling the
  image, started; running once the kubelet's readiness probe passes; gone when the pod is
  missing, deleted, failed (with why: its time limit, out of memory, an exit code), its image
  cannot be pulled, or no node had room for it within ``unschedulable_seconds``.
- **Wait**: a watch on the pod, so a change is seen at once rather than at the next poll.
- **Poll many, wait many** (the start watcher's, for every starting session at once): one LIST
  of those sessions' pods by label, and one watch of them.
- **Wait for changes** (the server-watch loop's, for every running session): one watch of all
  session pods, resumed from call to call, that wakes only for a pod that ended.
- **Stop**: deletes the Ingress, the Service and the Pod; 404 is done.
- **List**: the pods that carry this portal's session labels.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sessions_app.spawners import kube_objects as objects
from sessions_app.spawners.base import (
    PollResult,
    ProgressCallback,
    Route,
    RunningServer,
    ServerStatus,
    Spawner,
    SpawnerError,
    SpawnRequest,
    State,
    TransientSpawnerError,
)
from sessions_app.spawners.kube_objects import meta
from sessions_app.spawners.kube_watch import PodWatch

log = logging.getLogger(__name__)

T = TypeVar("T")

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
#: How old a pod's progress line may be before poll_many reads its events again (when the pod
#: itself did not change): the line is news for a person, one request per pod per tick is not.
EVENTS_REFRESH_SECONDS = 5.0
#: Sessions per LIST of poll_many: a label selector of this many session ids is about 4 KB of
#: URL, well under what API servers and proxies accept.
LIST_CHUNK = 100


def _retryable(exc: ApiException) -> bool:
    return exc.status in (429, 500, 502, 503, 504) or (exc.status or 0) == 0


class KubernetesSpawner(Spawner):
    """Run each session's JupyterLab as a pod in one namespace of a cluster."""

    clones_library = True  # an init container clones it into the pod

    def __init__(
        self,
        settings: objects.KubeConfig,
        api_client: client.ApiClient | None = None,
        *,
        config_file: str = "",
        request_timeout: float = 10.0,
        retries: int = 4,
        backoff_seconds: float = 0.2,
        unschedulable_seconds: int = 300,
        stop_grace_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self._api_client = api_client
        self._config_file = config_file
        self.request_timeout = request_timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.unschedulable_seconds = unschedulable_seconds
        self.stop_grace_seconds = stop_grace_seconds
        # The pod's resourceVersion each poll saw: where the next watch starts.
        self._seen_versions: dict[str, str] = {}
        # poll_many's: the version and label selector wait_many's watch starts from, and each
        # pod's latest progress line with the pod's version and when it was read.
        self._watch_from = ("", "")
        self._event_lines: dict[str, tuple[str, float, str]] = {}

    # --- the client ---------------------------------------------------------------------------

    @property
    def api_client(self) -> client.ApiClient:
        if self._api_client is None:
            configuration = client.Configuration()
            if self._config_file:
                config.load_kube_config(
                    config_file=self._config_file, client_configuration=configuration
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
            # Our own loop retries (with backoff and a log line); urllib3's would hide the
            # wait, and multiply each attempt's time. Read when the client's connection pool
            # is made: set before the client exists.
            configuration.retries = False
            self._api_client = client.ApiClient(configuration)
        return self._api_client

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def networking(self) -> client.NetworkingV1Api:
        return client.NetworkingV1Api(self.api_client)

    def _call(
        self,
        what: str,
        function: Callable[..., T],
        *args: Any,
        retries: int | None = None,
        **kwargs: Any,
    ) -> T:
        """Call the API, retrying what is worth retrying; ``ApiException`` for the rest.

        ``retries``: instead of the spawner's (0 where a caller holds a lock meanwhile).
        """
        kwargs.setdefault("_request_timeout", self.request_timeout)
        tries = self.retries if retries is None else retries
        delay = self.backoff_seconds
        for attempt in range(tries + 1):
            try:
                return function(*args, **kwargs)
            except ApiException as exc:
                if not _retryable(exc) or attempt == tries:
                    if _retryable(exc):
                        raise TransientSpawnerError(
                            f"The cluster did not manage to {what} (HTTP {exc.status}, "
                            f"{tries + 1} tries)."
                        ) from exc
                    raise
                problem = f"HTTP {exc.status}"
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt == tries:
                    raise TransientSpawnerError(
                        f"The cluster did not answer when asked to {what} "
                        f"({type(exc).__name__}, {tries + 1} tries)."
                    ) from exc
                problem = type(exc).__name__
            log.info("kubernetes: %s: %s, retrying in %.1fs", what, problem, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    # --- start --------------------------------------------------------------------------------

    def start(self, request: SpawnRequest, progress: ProgressCallback) -> State:
        if not request.backend_settings.get("image"):
            raise SpawnerError("This environment has no container image configured.")
        token = secrets.token_urlsafe(32)
        pod = objects.make_pod(self.settings, request, token)
        name = str(meta(pod).name)
        state = self._state(request.session_id, name, token, request.base_url)
        try:
            self._ensure_network_policy()
            progress("Preparing your private storage.")
            self._ensure_home(request)
            progress("Asking the cluster for your server.")
            created = self._create_pod(pod, request.session_id)
            state["token"] = _pod_token(created) or token
            owner = objects.owner_reference(created)
            self._remove_stale_routes(request)
            self._create_owned(
                "create the session's service",
                objects.make_service(self.settings, request, owner),
                self.core.create_namespaced_service,
                self.core.delete_namespaced_service,
            )
            self._create_owned(
                "create the session's route",
                objects.make_ingress(self.settings, request, owner),
                self.networking.create_namespaced_ingress,
                self.networking.delete_namespaced_ingress,
            )
        except ApiException as exc:
            self._stop_quietly(state)
            raise SpawnerError(f"The cluster refused the session: {_api_reason(exc)}") from exc
        except TransientSpawnerError:
            self._stop_quietly(state)
            raise
        return state

    def _ensure_network_policy(self) -> None:
        policy = objects.make_network_policy(self.settings)
        try:
            self._call(
                "set the sessions' network rules",
                self.networking.create_namespaced_network_policy,
                self.namespace,
                policy,
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._call(
                "update the sessions' network rules",
                self.networking.patch_namespaced_network_policy,
                str(meta(policy).name),
                self.namespace,
                policy,
            )

    def _ensure_home(self, request: SpawnRequest) -> None:
        claim = objects.make_pvc(self.settings, request)
        try:
            self._call(
                "create your private storage",
                self.core.create_namespaced_persistent_volume_claim,
                self.namespace,
                claim,
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # 409: the home exists from an earlier session, which is the point; unless it is
            # being deleted (the retention rule, just now): a pod would wait for it in vain.
            existing = self._call(
                "read your private storage",
                self.core.read_namespaced_persistent_volume_claim,
                str(meta(claim).name),
                self.namespace,
            )
            if meta(existing).deletion_timestamp:
                raise TransientSpawnerError(
                    "Your old private storage is still being removed; please launch again in "
                    "a minute."
                ) from exc

    def _create_pod(self, pod: client.V1Pod, session_id: str) -> client.V1Pod:
        name = str(meta(pod).name)
        for _ in range(3):
            try:
                created: client.V1Pod = self._call(
                    "create the server's pod", self.core.create_namespaced_pod, self.namespace, pod
                )
                return created
            except ApiException as exc:
                if exc.status != 409:
                    raise
            existing = self._read_pod(name)
            if existing is None:
                continue  # gone meanwhile: create again
            labels = meta(existing).labels or {}
            if labels.get(objects.SESSION_LABEL) == objects.label_value(session_id) and not (
                meta(existing).deletion_timestamp
            ):
                return existing  # this session's own pod, from an earlier try: adopt it
            log.warning("kubernetes: replacing pod %s of another session", name)
            self._delete("delete a stale pod", self.core.delete_namespaced_pod, name)
            time.sleep(self.backoff_seconds)
        raise TransientSpawnerError(f"The pod name {name} stays taken; please launch again.")

    def _create_owned(
        self,
        what: str,
        body: Any,
        create: Callable[..., Any],
        delete: Callable[..., Any],
    ) -> None:
        """Create a Service or Ingress; one left over under the same name is replaced (and
        waited for: a controller's finalizer may hold it a moment)."""
        for _ in range(10):
            try:
                self._call(what, create, self.namespace, body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self._delete(what, delete, str(meta(body).name))
            time.sleep(self.backoff_seconds)
        raise TransientSpawnerError(f"The cluster did not manage to {what}: the name stays taken.")

    def _remove_stale_routes(self, request: SpawnRequest) -> None:
        """Delete Ingresses of the user's earlier sessions that a failed clean-up left: they
        route the same path, and the oldest rule wins."""
        labels = {
            **objects.SESSION_SELECTOR,
            objects.USER_LABEL: objects.label_value(request.username),
        }
        listed = self._call(
            "list the user's routes",
            self.networking.list_namespaced_ingress,
            self.namespace,
            label_selector=_selector(labels),
        )
        ours = objects.label_value(request.session_id)
        for ingress in listed.items:
            if (meta(ingress).labels or {}).get(objects.SESSION_LABEL) != ours:
                self._delete(
                    "remove an old route",
                    self.networking.delete_namespaced_ingress,
                    str(meta(ingress).name),
                )

    # --- poll and wait ------------------------------------------------------------------------

    def poll(self, state: State) -> PollResult:
        name = _pod_name(state)
        if name is None:
            return PollResult(ServerStatus.GONE, message="The session has no server.")
        try:
            pod = self._read_pod(name)
        except (ApiException, TransientSpawnerError) as exc:
            # Not knowing is not "gone": a session must not end because the API hiccuped.
            return PollResult(ServerStatus.STARTING, message=f"The cluster is not answering: {exc}")
        if pod is None:
            return PollResult(ServerStatus.GONE, message="Its pod is gone from the cluster.")
        self._seen_versions[name] = meta(pod).resource_version or ""
        return self._judge(
            pod, state, datetime.now(UTC), lambda name, _pod: self._latest_event(name)
        )

    def poll_many(self, states: Mapping[str, State]) -> dict[str, PollResult]:
        """The pods of these sessions in one LIST (by their session label, ``LIST_CHUNK`` to a
        request), not one GET each, and never the pods of running sessions; the events behind
        a progress line are read per pod, at most every ``EVENTS_REFRESH_SECONDS`` unless the
        pod changed."""
        names = {key: _pod_name(state) for key, state in states.items()}
        sessions = sorted(
            {
                objects.label_value(str(state["session_id"]))
                for key, state in states.items()
                if names[key] and isinstance(state.get("session_id"), str)
            }
        )
        chunks = [sessions[i : i + LIST_CHUNK] for i in range(0, len(sessions), LIST_CHUNK)]
        selectors = [_selector(objects.SESSION_SELECTOR, chunk) for chunk in chunks]
        pods: dict[str, client.V1Pod] = {}
        versions = []
        try:
            for selector in selectors:
                listed = self._call(
                    "list the starting servers' pods",
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                )
                versions.append(listed.metadata.resource_version if listed.metadata else "")
                pods.update((str(meta(pod).name), pod) for pod in listed.items)
        except (ApiException, TransientSpawnerError) as exc:
            self._watch_from = ("", "")
            unknown = PollResult(
                ServerStatus.STARTING, message=f"The cluster is not answering: {exc}"
            )
            return dict.fromkeys(states, unknown)
        # wait_many watches from the first list on: what changed since then wakes it. Only
        # these pods when one list held them all, else every session pod.
        watched = selectors[0] if len(selectors) == 1 else _selector(objects.SESSION_SELECTOR)
        self._watch_from = (versions[0] if versions else "") or "", watched
        now = datetime.now(UTC)
        results = {}
        for key, state in states.items():
            name = names[key]
            pod = pods.get(name) if name else None
            if pod is None:
                # Listed after the state was saved, so after the pod was made: missing is gone.
                message = "Its pod is gone from the cluster." if name else "No server is recorded."
                results[key] = PollResult(ServerStatus.GONE, message=message)
                continue
            results[key] = self._judge(pod, state, now, self._recent_event)
        for name in set(self._event_lines) - set(names.values()):
            del self._event_lines[name]  # no longer asked about
        return results

    def wait_many(self, states: Mapping[str, State], timeout: float) -> None:
        """Return when one of the pods the last :meth:`poll_many` listed changes, or after
        ``timeout`` (at least a second: a watch, not a sleep)."""
        version, selector = self._watch_from
        seconds = max(1, math.ceil(timeout))
        if not version:
            time.sleep(max(timeout, 1.0))  # the list failed: never a tight loop of requests
            return
        stream = watch.Watch()
        try:
            for _event in stream.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=selector,
                resource_version=version,
                timeout_seconds=seconds,
                _request_timeout=seconds + self.request_timeout,
            ):
                break
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.debug("kubernetes: watch on the starting pods: %s", exc)
            time.sleep(max(timeout, 1.0))
        finally:
            stream.stop()

    def _judge(
        self,
        pod: client.V1Pod,
        state: State,
        now: datetime,
        event_line: Callable[[str, client.V1Pod], str],
    ) -> PollResult:
        verdict = pod_verdict(pod, self.unschedulable_seconds, now)
        if verdict.status == ServerStatus.RUNNING:
            # activeDeadlineSeconds counts from the pod's start (image pull included).
            started = pod.status.start_time if pod.status else None
            return PollResult(
                ServerStatus.RUNNING, url=str(state.get("url") or ""), started_at=started
            )
        if verdict.status == ServerStatus.STARTING and not verdict.message:
            return PollResult(ServerStatus.STARTING, message=event_line(str(meta(pod).name), pod))
        return verdict

    def _recent_event(self, name: str, pod: client.V1Pod) -> str:
        """The pod's latest event line, read again only when the pod changed or the line is
        ``EVENTS_REFRESH_SECONDS`` old: a progress line, not worth a request per pod per tick."""
        version = meta(pod).resource_version or ""
        cached = self._event_lines.get(name)
        now = time.monotonic()
        if cached and cached[0] == version and now - cached[1] < EVENTS_REFRESH_SECONDS:
            return cached[2]
        line = self._latest_event(name)
        self._event_lines[name] = (version, now, line)
        return line

    def wait(self, state: State, timeout: float) -> None:
        """Return when the pod changes, or after ``timeout`` (a watch, not a sleep).

        The watch starts from the version of a fresh list, not from the pod's own version: an
        object that has not changed for a while (a long image pull) has a version older than
        the API server's watch cache, which would answer 410 Gone at once, every time. If the
        list shows the pod changed since the last poll, there is nothing to wait for.
        """
        name = _pod_name(state)
        if not name:
            time.sleep(timeout)
            return
        seconds = max(1, math.ceil(timeout))
        stream = watch.Watch()
        try:
            listed = self.core.list_namespaced_pod(
                self.namespace,
                field_selector=f"metadata.name={name}",
                _request_timeout=self.request_timeout,
            )
            versions = [meta(pod).resource_version for pod in listed.items]
            if versions != [self._seen_versions.get(name)]:
                return  # changed (or gone) since the last poll: poll again now
            for _event in stream.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                field_selector=f"metadata.name={name}",
                resource_version=listed.metadata.resource_version if listed.metadata else None,
                timeout_seconds=seconds,
                _request_timeout=seconds + self.request_timeout,
            ):
                break
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            # A watch that cannot start (a hiccup, an API server restart) is not an error: the
            # next poll reads the pod afresh. Never sooner than a second, so that a persistent
            # failure cannot turn the spawn loop into a tight loop of requests.
            log.debug("kubernetes: watch on %s: %s", name, exc)
            time.sleep(max(timeout, 1.0))
        finally:
            stream.stop()

    def wait_for_changes(self, states: Mapping[str, State], timeout: float) -> set[str]:
        """The sessions whose pod ended, from one watch of all session pods (:mod:`.kube_watch`)."""
        return self._pod_watch.wait(states, timeout)

    @functools.cached_property
    def _pod_watch(self) -> PodWatch:
        def ended(pod: client.V1Pod) -> bool:
            verdict = pod_verdict(pod, self.unschedulable_seconds, datetime.now(UTC))
            return verdict.status == ServerStatus.GONE

        return PodWatch(self.api_client, self.namespace, self.request_timeout, ended=ended)

    def _latest_event(self, name: str) -> str:
        try:
            events = self._call(
                "read the server's events",
                self.core.list_namespaced_event,
                self.namespace,
                field_selector=f"involvedObject.name={name}",
            ).items
        except (ApiException, TransientSpawnerError):
            return ""
        known = [event for event in events if event.reason in EVENT_MESSAGES]
        if not known:
            return "Waiting for the cluster to place your server."
        latest = max(known, key=_event_time)
        return EVENT_MESSAGES[str(latest.reason)]

    def _read_pod(self, name: str) -> client.V1Pod | None:
        try:
            pod: client.V1Pod = self._call(
                "read the server's pod", self.core.read_namespaced_pod, name, self.namespace
            )
            return pod
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- stop and list ------------------------------------------------------------------------

    def stop(self, state: State) -> None:
        name = _pod_name(state)
        if name is None:
            return
        self._seen_versions.pop(name, None)
        self._delete("remove the session's route", self.networking.delete_namespaced_ingress, name)
        self._delete("remove the session's service", self.core.delete_namespaced_service, name)
        self._delete(
            "stop the server's pod",
            self.core.delete_namespaced_pod,
            name,
            grace=math.ceil(self.stop_grace_seconds),
        )

    def _stop_quietly(self, state: State) -> None:
        try:
            self.stop(state)
        except SpawnerError as exc:
            log.warning("kubernetes: clean-up after a failed start: %s", exc)

    def _delete(
        self,
        what: str,
        function: Callable[..., Any],
        name: str,
        grace: int | None = None,
        retries: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if grace is not None:
            kwargs["grace_period_seconds"] = grace
        try:
            self._call(what, function, name, self.namespace, retries=retries, **kwargs)
        except ApiException as exc:
            if exc.status != 404:  # already gone: done
                raise SpawnerError(f"The cluster did not {what}: {_api_reason(exc)}") from exc

    def list_servers(self) -> Iterable[RunningServer]:
        pods = self._call(
            "list the session pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=_selector(objects.SESSION_SELECTOR),
        ).items
        servers = []
        for pod in pods:
            labels = meta(pod).labels or {}
            session_id = labels.get(objects.SESSION_LABEL)
            if not session_id:
                continue
            token = _pod_token(pod) or ""
            base_url = _pod_base_url(pod)
            servers.append(
                RunningServer(
                    session_id, self._state(session_id, str(meta(pod).name), token, base_url)
                )
            )
        return servers

    def home_kept_elsewhere(self, folder: str) -> bool:
        """Whether the user's home volume exists (the retention rule asks)."""
        try:
            self._call(
                "read the private storage",
                self.core.read_namespaced_persistent_volume_claim,
                objects.home_claim_name(folder),
                self.namespace,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise SpawnerError(f"The cluster did not say: {_api_reason(exc)}") from exc
        return True

    def remove_home(self, folder: str) -> None:
        """Delete a user's home PVC (the storage retention rule); missing is done.

        One try, no retries: the caller holds the account's lock, which launches wait on; a
        failure keeps the home until the next sweep."""
        self._delete(
            "remove the private storage",
            self.core.delete_namespaced_persistent_volume_claim,
            objects.home_claim_name(folder),
            retries=0,
        )

    # --- state --------------------------------------------------------------------------------

    def _state(self, session_id: str, name: str, token: str, base_url: str) -> State:
        return {
            "backend": "kubernetes",
            "namespace": self.namespace,
            "pod": name,
            "session_id": session_id,
            "token": token,
            "base_url": base_url,
            "url": self._url(base_url),
        }

    def _url(self, base_url: str) -> str:
        # No token: the ingress adds the server's credential after the portal's forward-auth
        # (``route``), so the browser never sees it.
        return f"{self.settings.public_url}{base_url}lab"

    def route(self, state: State) -> Route | None:
        """The credential the ingress adds (``auth-response-headers``); the Ingress itself
        knows the back-end, so no upstream."""
        token = state.get("token") if isinstance(state, dict) else None
        if not isinstance(token, str) or not token or _pod_name(state) is None:
            return None
        return Route(upstream="", authorization=f"token {token}")


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
        return PollResult(ServerStatus.GONE, message=_termination_message(pod))
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


def _termination_message(pod: client.V1Pod) -> str:
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


def _event_time(event: client.CoreV1Event) -> datetime:
    for moment in (event.last_timestamp, event.event_time, event.first_timestamp):
        if moment is not None:
            return moment
    created = meta(event).creation_timestamp if event.metadata else None
    return created or datetime.min.replace(tzinfo=UTC)


def _selector(labels: Mapping[str, str], sessions: Sequence[str] = ()) -> str:
    """A label selector: every label of ``labels``, and one of ``sessions`` if given."""
    parts = [f"{key}={value}" for key, value in labels.items()]
    if sessions:
        parts.append(f"{objects.SESSION_LABEL} in ({','.join(sessions)})")
    return ",".join(parts)


def _pod_name(state: State) -> str | None:
    name = state.get("pod") if isinstance(state, dict) else None
    if isinstance(name, str) and objects.is_dns_label(name):
        return name
    return None


def _pod_token(pod: client.V1Pod) -> str | None:
    for container in pod.spec.containers if pod.spec else []:
        for variable in container.env or []:
            if variable.name == "JUPYTER_TOKEN" and variable.value:
                return str(variable.value)
    return None


def _pod_base_url(pod: client.V1Pod) -> str:
    for container in pod.spec.containers if pod.spec else []:
        for argument in container.args or []:
            if argument.startswith("--ServerApp.base_url="):
                return str(argument.split("=", 1)[1])
    return "/"


def _api_reason(exc: ApiException) -> str:
    import json

    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or f"HTTP {exc.status}")
