"""Kubernetes back-end: each session's JupyterLab runs in a pod of its own.

The objects come from the pure builders in :mod:`.kube_objects`; this module only sends them,
reads them back and says what it saw. Every call goes through ``_call``
(:mod:`.kube_client`), which retries timeouts, refused connections, 429 and 5xx with
exponential backoff, and turns what is left into a :class:`~.base.TransientSpawnerError`.
Here: start, stop, list, the homes and the routes; the polls and waits are
:mod:`.kube_readiness`'s, what a pod's status means :mod:`.kube_pods`'.

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
- **Log tail**: the last lines of the server container's log (the history keeps them), cut as
  the local back-end cuts its own; "" when the pod is gone or the cluster fails to say.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sessions_app.spawners import kube_objects as objects
from sessions_app.spawners.base import (
    ProgressCallback,
    Route,
    RunningServer,
    Spawner,
    SpawnerError,
    SpawnRequest,
    State,
    TransientSpawnerError,
)
from sessions_app.spawners.kube_network import make_network_policy
from sessions_app.spawners.kube_objects import meta
from sessions_app.spawners.kube_pods import (
    api_reason,
    label_selector,
    pod_base_url,
    pod_name,
    pod_token,
)
from sessions_app.spawners.kube_readiness import KubeReadiness
from sessions_app.spawners.processes import cut_log_tail

log = logging.getLogger(__name__)


class KubernetesSpawner(KubeReadiness, Spawner):
    """Run each session's JupyterLab as a pod in one namespace of a cluster."""

    clones_library = True  # an init container clones it into the pod

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
            state["token"] = pod_token(created) or token
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
            raise SpawnerError(f"The cluster refused the session: {api_reason(exc)}") from exc
        except TransientSpawnerError:
            self._stop_quietly(state)
            raise
        return state

    def _ensure_network_policy(self) -> None:
        policy = make_network_policy(self.settings)
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
        route the same path, and the oldest rule wins.

        Selected by the route they serve, never by a label two users could share: the route
        label (``names.route_name``, which no two usernames share) and not this session's own
        id, then kept only if the rule really is this path on this host. Another user's route
        is never listed, let alone deleted.
        """
        selector = label_selector(
            {**objects.SESSION_SELECTOR, objects.ROUTE_LABEL: _route_label(request)}
        )
        ours = objects.label_value(request.session_id)
        listed = self._call(
            "list the routes of your address",
            self.networking.list_namespaced_ingress,
            self.namespace,
            label_selector=f"{selector},{objects.SESSION_LABEL}!={ours}",
        )
        host = self.settings.public_host or None
        for ingress in listed.items:
            if _routes_path(ingress, host, request.base_url):
                self._delete(
                    "remove an old route",
                    self.networking.delete_namespaced_ingress,
                    str(meta(ingress).name),
                )

    # --- stop and list ------------------------------------------------------------------------

    def stop(self, state: State) -> None:
        name = pod_name(state)
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
                raise SpawnerError(f"The cluster did not {what}: {api_reason(exc)}") from exc

    def list_servers(self) -> Iterable[RunningServer]:
        pods = self._call(
            "list the session pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=label_selector(objects.SESSION_SELECTOR),
        ).items
        servers = []
        for pod in pods:
            labels = meta(pod).labels or {}
            session_id = labels.get(objects.SESSION_LABEL)
            if not session_id:
                continue
            token = pod_token(pod) or ""
            base_url = pod_base_url(pod)
            servers.append(
                RunningServer(
                    session_id, self._state(session_id, str(meta(pod).name), token, base_url)
                )
            )
        return servers

    def log_tail(self, state: State, lines: int) -> str:
        """The last ``lines`` lines of the server container's log, as the kubelet keeps it (also
        for a failed pod, until it is deleted), cut as the local back-end cuts its own
        (:func:`~.processes.cut_log_tail`). "" when the pod is gone or the cluster will not
        say: asked before the stop, which must go on whatever happens here."""
        name = pod_name(state)
        if name is None or lines <= 0:
            return ""
        try:
            text = self._call(
                "read the server's log",
                self.core.read_namespaced_pod_log,
                name,
                self.namespace,
                container=objects.SERVER_CONTAINER,
                tail_lines=lines,
                # A KiB per line wanted, as the local back-end reads: the kubelet cuts the tail
                # at this size, so a log of very long lines gives fewer.
                limit_bytes=lines * 1024,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            # 404: the pod is gone, and its log with it (a vanished pod: nothing to keep).
            level = logging.INFO if exc.status == 404 else logging.WARNING
            log.log(level, "kubernetes: the log of pod %s: %s", name, api_reason(exc))
            return ""
        except SpawnerError as exc:  # the retries ran out
            log.warning("kubernetes: the log of pod %s: %s", name, exc)
            return ""
        return cut_log_tail(text, lines) if isinstance(text, str) else ""

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
            raise SpawnerError(f"The cluster did not say: {api_reason(exc)}") from exc
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
        if not isinstance(token, str) or not token or pod_name(state) is None:
            return None
        return Route(upstream="", authorization=f"token {token}")


def _route_label(request: SpawnRequest) -> str:
    return objects.label_value(objects.route_name(request.username))


def _routes_path(ingress: client.V1Ingress, host: str | None, path: str) -> bool:
    """Whether one of the Ingress's rules routes ``path`` on ``host``."""
    spec = ingress.spec or client.V1IngressSpec()
    return any(
        (rule.host or None) == host and any(p.path == path for p in rule.http.paths or [])
        for rule in spec.rules or []
        if rule.http is not None
    )
