"""The Kubernetes back-end's readiness: polls of a session's pod (one, or every starting one
in one LIST), the waits between polls (a watch on the pods, not a sleep), and the server
watch's wait for pods that ended (:mod:`.kube_watch`). What a pod's status means is
:func:`.kube_pods.pod_verdict`'s."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from sessions_app.spawners import kube_objects as objects
from sessions_app.spawners.base import PollResult, ServerStatus, State, TransientSpawnerError
from sessions_app.spawners.kube_client import KubeClient
from sessions_app.spawners.kube_objects import meta
from sessions_app.spawners.kube_pods import (
    EVENT_MESSAGES,
    event_time,
    label_selector,
    pod_name,
    pod_verdict,
)
from sessions_app.spawners.kube_watch import PodWatch

log = logging.getLogger("sessions_app.spawners.kube")

#: How old a pod's progress line may be before poll_many reads its events again (when the pod
#: itself did not change): the line is news for a person, one request per pod per tick is not.
EVENTS_REFRESH_SECONDS = 5.0
#: Sessions per LIST of poll_many: a label selector of this many session ids is about 4 KB of
#: URL, well under what API servers and proxies accept.
LIST_CHUNK = 100


class KubeReadiness(KubeClient):
    """Poll and wait, for the start watcher (``poll_many``, ``wait_many``), a single session
    (``poll``, ``wait``) and the server watch (``wait_for_changes``)."""

    def poll(self, state: State) -> PollResult:
        name = pod_name(state)
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
        names = {key: pod_name(state) for key, state in states.items()}
        sessions = sorted(
            {
                objects.label_value(str(state["session_id"]))
                for key, state in states.items()
                if names[key] and isinstance(state.get("session_id"), str)
            }
        )
        chunks = [sessions[i : i + LIST_CHUNK] for i in range(0, len(sessions), LIST_CHUNK)]
        selectors = [label_selector(objects.SESSION_SELECTOR, chunk) for chunk in chunks]
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
        watched = selectors[0] if len(selectors) == 1 else label_selector(objects.SESSION_SELECTOR)
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
        name = pod_name(state)
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
        latest = max(known, key=event_time)
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
