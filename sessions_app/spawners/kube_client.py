"""The Kubernetes back-end's connection to the cluster: the API client (in-cluster or from a
kubeconfig) and :meth:`KubeClient._call`, through which every request goes. It retries
timeouts, refused connections, 429 and 5xx with exponential backoff, and turns what is left
into a :class:`~.base.TransientSpawnerError` (the spawn task retries those)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sessions_app.spawners import kube_objects as objects
from sessions_app.spawners.base import TransientSpawnerError

log = logging.getLogger("sessions_app.spawners.kube")

T = TypeVar("T")


def retryable(exc: ApiException) -> bool:
    return exc.status in (429, 500, 502, 503, 504) or (exc.status or 0) == 0


class KubeClient:
    """The cluster's API for one namespace, with the back-end's timeouts and retries."""

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
        # The polls' and waits' own state (:mod:`.kube_readiness`), set here so the spawner keeps
        # one typed constructor. The pod's resourceVersion each poll saw: where the next watch
        # starts.
        self._seen_versions: dict[str, str] = {}
        # poll_many's: the version and label selector wait_many's watch starts from, and each
        # pod's latest progress line with the pod's version and when it was read.
        self._watch_from = ("", "")
        self._event_lines: dict[str, tuple[str, float, str]] = {}

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
                if not retryable(exc) or attempt == tries:
                    if retryable(exc):
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
