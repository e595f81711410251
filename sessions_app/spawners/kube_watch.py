"""One watch of every session pod, so that the server-watch loop sees a server die at once.

:class:`PodWatch` is what :meth:`KubernetesSpawner.wait_for_changes` waits on: it blocks on a
watch of the portal's session pods and returns the sessions (of those it is asked about) whose
pod was deleted, is being deleted, or changed into a state that ``ended`` calls gone (failed,
out of memory, its deadline, a crash). A readiness flip, a label or a status condition that
changes on a live pod is no death and does not end the wait: waking the caller would cost a
poll per wake for nothing.

- **Every session pod, by the session labels**, not only the ones asked about: the set of
  running sessions changes between calls, a watch of all of them does not, so one
  resourceVersion serves every call. Events of other pods (starting sessions) are skipped.
- **The resourceVersion is kept across calls**: the next watch starts where the last one
  stopped, so a death between two calls is still seen. The first call lists the pods to get
  one, and so does a 410 Gone (the API server no longer remembers that far back). The list
  also tells what died while nobody watched: a pod of the sessions asked about that is
  missing or ended in it is returned at once.
- **Never longer than ``timeout``**: the client's read timeout is the time left, so a quiet
  watch returns at the deadline even from a slow or silent server; the server itself ends the
  watch after ``timeoutSeconds`` (the time left rounded up to a second), which bounds a watch
  whose events keep coming to under a second past it.
- **Errors do not raise**: an API server that fails or does not answer is logged, waited out a
  short pause (never a tight loop of requests) and answered with every id, so the caller polls
  each and decides by the poll, which takes "not answering" for "not known", never for "gone".

One caller at a time: the kept version is a plain attribute (the spawn worker's one
server-watch loop calls it).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from sessions_app.spawners.base import State
from sessions_app.spawners.kube_objects import SESSION_SELECTOR, meta

log = logging.getLogger(__name__)

#: How long a failed list or watch waits before it answers every id (at most the timeout): the
#: caller polls them all, which must not become a tight loop of requests to a failing server.
ERROR_PAUSE_SECONDS = 1.0
HTTP_GONE = 410
#: What a failing API server raises through the client (a malformed answer: ValueError).
_FAILURES = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class PodWatch:
    """A watch of the portal's session pods in one namespace, resumed from call to call."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        request_timeout: float,
        *,
        ended: Callable[[client.V1Pod], bool],
    ) -> None:
        self.core = client.CoreV1Api(_without_retries(api_client))
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.ended = ended
        self.selector = ",".join(f"{key}={value}" for key, value in SESSION_SELECTOR.items())
        # Where the next watch starts; empty until a list has given one (or after a 410).
        self.version = ""

    def wait(self, states: Mapping[str, State], timeout: float) -> set[str]:
        """The keys of ``states`` whose pod ended, as soon as one does; an empty set after
        ``timeout``; every key after a short pause when the API server fails."""
        deadline = time.monotonic() + max(timeout, 0.0)
        keys = _keys_by_pod(states)
        if unknown := set(states) - set(keys.values()):
            return unknown  # no pod recorded: no server to wait for
        if not keys:
            time.sleep(max(timeout, 0.0))  # nothing to watch; the next call resumes the watch
            return set()
        try:
            if not self.version:
                ended = self._list(keys, deadline)
                if ended:
                    return ended
            while deadline - time.monotonic() > 0:
                try:
                    ended = self._watch(keys, deadline)
                except ApiException as exc:
                    if exc.status != HTTP_GONE:
                        raise
                    log.info("kubernetes: the session pods' watch expired; listing them again")
                    self.version = ""
                    ended = self._list(keys, deadline)
                if ended:
                    return ended
        except _FAILURES as exc:
            if isinstance(exc, ApiException) and exc.status in (400, 404, 422):
                self.version = ""  # refused (a bad version, say): list afresh next time
            log.warning("kubernetes: watching the session pods failed: %s", exc)
            time.sleep(max(0.0, min(ERROR_PAUSE_SECONDS, deadline - time.monotonic())))
            return set(states)
        return set()

    def _list(self, keys: Mapping[str, str], deadline: float) -> set[str]:
        """List the session pods for a version to watch from; the keys whose pod is missing
        or ended (it died before the watch could see it)."""
        listed = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=self.selector,
            _request_timeout=self._timeouts(deadline),
        )
        self.version = str(listed.metadata.resource_version or "") if listed.metadata else ""
        pods = {str(meta(pod).name): pod for pod in listed.items}
        return {key for name, key in keys.items() if name not in pods or self.ended(pods[name])}

    def _watch(self, keys: Mapping[str, str], deadline: float) -> set[str]:
        """Watch from the kept version until a pod of ``keys`` ends or the deadline passes."""
        left = deadline - time.monotonic()
        stream = watch.Watch()
        try:
            for event in stream.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=self.selector,
                resource_version=self.version,
                timeout_seconds=max(1, math.ceil(left)),
                # The API server sends its version now and then, so a quiet namespace's watch
                # can resume without a 410 and a new list.
                allow_watch_bookmarks=True,
                _request_timeout=self._timeouts(deadline),
            ):
                if stream.resource_version:
                    self.version = str(stream.resource_version)
                kind = event.get("type") if isinstance(event, dict) else None
                if kind in ("ADDED", "MODIFIED", "DELETED"):  # not BOOKMARK, not unreadable
                    pod = event["object"]
                    key = keys.get(str(meta(pod).name))
                    if key is not None and (kind == "DELETED" or self.ended(pod)):
                        return {key}
                if time.monotonic() >= deadline:
                    break
        except urllib3.exceptions.ReadTimeoutError:
            # Silent until the read timeout, which is the time that was left: the deadline.
            pass
        finally:
            stream.stop()
        return set()

    def _timeouts(self, deadline: float) -> tuple[float, float]:
        """(connect, read) timeouts that end a request at the deadline at the latest."""
        left = max(deadline - time.monotonic(), 0.001)
        return min(self.request_timeout, left), left


def _without_retries(api_client: client.ApiClient) -> client.ApiClient:
    """A client of the watch's own, on the same configuration but without urllib3's retries.

    urllib3 retries a GET whose answer is late (three times by default): a silent API server
    would hold the watch four times its deadline. Setting ``retries`` on a client's
    configuration after the client is made changes nothing (its connection pool already has
    it), so the watch makes its own client (and connection pool: a long-lived watch takes no
    connection from the spawner's other calls). The configuration's credentials are shared.
    """
    configuration = copy.copy(api_client.configuration)
    configuration.retries = False
    return client.ApiClient(configuration)


def _keys_by_pod(states: Mapping[str, State]) -> dict[str, str]:
    """The caller's key of each state by its pod's name; states without one are left out."""
    keys = {}
    for key, state in states.items():
        name = state.get("pod") if isinstance(state, dict) else None
        if isinstance(name, str) and name:
            keys[name] = key
    return keys
