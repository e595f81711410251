"""Prometheus metrics at ``/metrics``: sessions, the queue, the pool, storage and suspensions.

Everything is read from the database when Prometheus scrapes (a custom collector on a private
registry), so every web process answers the same figures without prometheus_client's
multiprocess mode, and a restart loses nothing. Each scrape costs a fixed handful of aggregate
queries (``QUERIES``) whose results have at most one row per environment and state: nothing is
iterated row by row in Python.

Durations (queue wait, spawn, expiry lag) and the counts of ended sessions cover the sessions of
the last ``METRICS_WINDOW_HOURS``: they describe how the service behaves now, and they can go
down as sessions leave the window, so the ended counts are gauges and the histograms are meant
for ``histogram_quantile`` on their current values, not for ``rate``. Storage removals and
suspensions are all-time counters.

Access: the socket's peer address in ``METRICS_ALLOWED_ADDRESSES`` (a scraper inside the
network; none by default, since the machine's own address would let every local process in),
or the portal token (``Authorization: Bearer jlp_…``) of a staff member with the
``sessions_app.view_metrics`` permission who passes the access policy. Never a redirect: 401
without credentials, 403 otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from accounts_app.access import public_view
from accounts_app.policy import access_refusal
from portal.tokens import TOKEN_PREFIX, token_resolve
from sessions_app.models import Environment, Session
from storage_app.models import RemovalRecord, StorageAccount
from suspension_app.models import Suspension

State = Session.State

# Upper bounds (seconds) of the histograms' buckets; +Inf is added.
# Queue waits: none at all while the pool has room, up to hours when it is full.
QUEUE_WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
# Spawns: seconds for a local server, up to minutes for a pod whose image is pulled or which
# waits for a node (bounded by SPAWN_TIMEOUT_SECONDS).
SPAWN_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Expiry lag: the deadline task runs at once; the sweep (every SESSION_SWEEP_SECONDS) catches
# lost ones, and stopping takes up to SESSION_STOP_GRACE_SECONDS.
EXPIRY_LAG_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800)

ACTIVE_STATES = tuple(str(state) for state in Session.ACTIVE_STATES)
HOLDING_STATES = (State.STARTING, State.RUNNING, State.STOPPING)
ENDED_STATES = (State.STOPPED, State.EXPIRED, State.FAILED)
WAITING = Q(state=State.QUEUED, admitted_at__isnull=True)
# What holds a share of the pool: admitted (still queued until the spawn task claims it) or
# further on, as sessions_app.selectors.queue_holdings counts it.
HOLDING = Q(state__in=HOLDING_STATES) | Q(state=State.QUEUED, admitted_at__isnull=False)

# Session's Meta: the figures describe every user's sessions.
VIEW_METRICS_PERMISSION = "sessions_app.view_metrics"

# The number of database queries one scrape makes (the tests hold the collector to it).
QUERIES = 7

MIB = 2**20


# --- Access -----------------------------------------------------------------------------------

# Headers a reverse proxy adds: a request that carries one came through a proxy, and its
# socket peer is the proxy, not the client, so the address says nothing about who asks.
_PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def address_allowed(request: HttpRequest) -> bool:
    """Whether the socket's peer is in ``METRICS_ALLOWED_ADDRESSES`` (and the request did not
    come through a proxy)."""
    if any(name in request.headers for name in _PROXY_HEADERS):
        return False
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return any(peer in ipaddress.ip_network(entry) for entry in settings.METRICS_ALLOWED_ADDRESSES)


def _refused(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer for a caller who may not read the metrics; None for one who may."""
    if address_allowed(request):
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        return _refused(401, "Metrics need a staff member's portal token (Bearer).")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw.startswith(TOKEN_PREFIX):
        return _refused(401, "Metrics need a staff member's portal token (Bearer).")
    token = token_resolve(raw)
    if token is None or not token.user.is_active:
        return _refused(401, "Invalid or revoked token.")
    if not token.user.is_staff:
        return _refused(403, "Metrics are for the operator's staff.")
    if not token.user.has_perm(VIEW_METRICS_PERMISSION):
        return _refused(403, f"Metrics need the permission '{VIEW_METRICS_PERMISSION}'.")
    refusal = access_refusal(token.user)
    if refusal is not None:
        return _refused(403, refusal.message)
    return None


# --- The collector ----------------------------------------------------------------------------


class _Environment(NamedTuple):
    slug: str
    cpus: int
    memory_mb: int


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value is not None else 0.0


def _duration(end: str, start: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


class PortalCollector:
    """Reads the figures from the database at every scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        since = now - timedelta(hours=settings.METRICS_WINDOW_HOURS)
        environments = {
            pk: _Environment(slug, cpus, memory_mb)
            for pk, slug, cpus, memory_mb in Environment.objects.order_by("slug").values_list(
                "pk", "slug", "cpus", "memory_mb"
            )
        }
        yield from self._active(now, environments)
        yield from self._durations(since, environments)
        yield from self._ended(since)
        yield from self._storage()
        yield from self._suspensions()

    def _active(self, now: datetime, environments: dict[int, _Environment]) -> Iterator[Metric]:
        rows = (
            Session.objects.filter(state__in=ACTIVE_STATES)
            .values("state", "environment_id")
            .annotate(
                sessions=Count("pk"),
                waiting=Count("pk", filter=WAITING),
                oldest=Min("created_at", filter=WAITING),
                holding=Count("pk", filter=HOLDING),
            )
            .order_by()
        )
        slugs = [environment.slug for environment in environments.values()]
        sessions = {(state, slug): 0 for slug in slugs for state in ACTIVE_STATES}
        queue_length = dict.fromkeys(slugs, 0)
        oldest_wait = dict.fromkeys(slugs, 0.0)
        used_cpus = used_memory_mb = 0
        for row in rows:
            environment = environments.get(row["environment_id"])
            if environment is None:
                continue  # created after the first query; the next scrape has it
            slug = environment.slug
            sessions[row["state"], slug] = row["sessions"]
            queue_length[slug] += row["waiting"]
            if row["oldest"] is not None:
                oldest_wait[slug] = max(oldest_wait[slug], _seconds(now - row["oldest"]))
            used_cpus += row["holding"] * environment.cpus
            used_memory_mb += row["holding"] * environment.memory_mb

        family = GaugeMetricFamily(
            "portal_sessions",
            "Active sessions (queued, starting, running, stopping) by state and environment.",
            labels=["state", "environment"],
        )
        for (state, slug), count in sorted(sessions.items()):
            family.add_metric([state, slug], count)
        yield family
        family = GaugeMetricFamily(
            "portal_queue_length",
            "Queued sessions waiting for room in the pool (not yet admitted), by environment.",
            labels=["environment"],
        )
        for slug, count in sorted(queue_length.items()):
            family.add_metric([slug], count)
        yield family
        family = GaugeMetricFamily(
            "portal_queue_oldest_wait_seconds",
            "How long the longest-waiting queued session has waited so far (0: nobody waits).",
            labels=["environment"],
        )
        for slug, seconds in sorted(oldest_wait.items()):
            family.add_metric([slug], seconds)
        yield family
        yield GaugeMetricFamily(
            "portal_pool_cpus",
            "CPUs that sessions may hold at once (SESSION_POOL_CPUS).",
            value=settings.SESSION_POOL_CPUS,
        )
        yield GaugeMetricFamily(
            "portal_pool_memory_bytes",
            "Memory that sessions may hold at once (SESSION_POOL_MEMORY_MB).",
            value=settings.SESSION_POOL_MEMORY_MB * MIB,
        )
        yield GaugeMetricFamily(
            "portal_pool_used_cpus",
            "CPUs held by admitted, starting, running and stopping sessions.",
            value=used_cpus,
        )
        yield GaugeMetricFamily(
            "portal_pool_used_memory_bytes",
            "Memory held by admitted, starting, running and stopping sessions.",
            value=used_memory_mb * MIB,
        )

    def _durations(
        self, since: datetime, environments: dict[int, _Environment]
    ) -> Iterator[Metric]:
        hours = settings.METRICS_WINDOW_HOURS
        histograms: list[tuple[str, str, tuple[int, ...], Q]] = [
            (
                "queue_wait",
                f"Seconds from launch to admission (room in the pool), of sessions admitted in "
                f"the last {hours} hours.",
                QUEUE_WAIT_BUCKETS,
                Q(admitted_at__gte=since),
            ),
            (
                "spawn_duration",
                f"Seconds from admission until the server answered, of sessions whose server "
                f"answered in the last {hours} hours.",
                SPAWN_BUCKETS,
                Q(started_at__gte=since, admitted_at__isnull=False),
            ),
            (
                "expiry_lag",
                f"Seconds from the deadline until the session had ended, of sessions that "
                f"expired in the last {hours} hours.",
                EXPIRY_LAG_BUCKETS,
                Q(state=State.EXPIRED, ended_at__gte=since, expires_at__isnull=False),
            ),
        ]
        aggregates: dict[str, Any] = {}
        for name, _, bounds, within in histograms:
            aggregates[f"{name}_count"] = Count("pk", filter=within)
            aggregates[f"{name}_sum"] = Sum(name, filter=within)
            for index, bound in enumerate(bounds):
                aggregates[f"{name}_le{index}"] = Count(
                    "pk", filter=within & Q(**{f"{name}__lte": timedelta(seconds=bound)})
                )
        any_within = Q()
        for *_, within in histograms:
            any_within |= within
        rows: dict[int, Any] = {
            row["environment_id"]: row
            for row in Session.objects.filter(any_within)
            .annotate(
                queue_wait=_duration("admitted_at", "created_at"),
                spawn_duration=_duration("started_at", "admitted_at"),
                expiry_lag=_duration("ended_at", "expires_at"),
            )
            .values("environment_id")
            .annotate(**aggregates)
            .order_by()
        }
        for name, documentation, bounds, _ in histograms:
            family = HistogramMetricFamily(
                f"portal_{name}_seconds", documentation, labels=["environment"]
            )
            for pk, environment in environments.items():
                row = rows.get(pk, {})
                buckets: list[tuple[str, float]] = [
                    (floatToGoString(bound), row.get(f"{name}_le{index}", 0))
                    for index, bound in enumerate(bounds)
                ]
                buckets.append(("+Inf", row.get(f"{name}_count", 0)))
                family.add_metric([environment.slug], buckets, _seconds(row.get(f"{name}_sum")))
            yield family

    def _ended(self, since: datetime) -> Iterator[Metric]:
        hours = settings.METRICS_WINDOW_HOURS
        rows = (
            Session.objects.filter(state__in=ENDED_STATES, ended_at__gte=since)
            .values("state", "reason")
            .annotate(sessions=Count("pk"))
            .order_by("state", "reason")
        )
        ended = GaugeMetricFamily(
            "portal_sessions_ended_total",
            f"Sessions that ended in the last {hours} hours, by final state and reason (a count "
            f"over a moving window: it falls as sessions leave it).",
            labels=["state", "reason"],
        )
        failed = dict.fromkeys(
            (reason for reason in Session.Reason.values if reason), 0
        )  # every reason, so a failure rate can be watched from zero
        for row in rows:
            ended.add_metric([row["state"], row["reason"]], row["sessions"])
            if row["state"] == State.FAILED:
                failed[row["reason"]] = failed.get(row["reason"], 0) + row["sessions"]
        yield ended
        family = GaugeMetricFamily(
            "portal_sessions_failed_total",
            f"Sessions that failed in the last {hours} hours, by reason.",
            labels=["reason"],
        )
        for reason, count in failed.items():
            family.add_metric([reason], count)
        yield family

    def _storage(self) -> Iterator[Metric]:
        used = StorageAccount.objects.aggregate(
            private=Sum("private_bytes"), scratch=Sum("scratch_bytes")
        )
        family = GaugeMetricFamily(
            "portal_storage_used_bytes",
            "Bytes allocated in all users' private storage and scratch, as last measured.",
            labels=["area"],
        )
        for area in RemovalRecord.Area.values:
            family.add_metric([area], used[area] or 0)
        yield family
        removed = dict.fromkeys(RemovalRecord.Rule.values, 0)
        removed.update(
            RemovalRecord.objects.values("rule")
            .annotate(size=Sum("size"))
            .order_by()
            .values_list("rule", "size")
        )
        counter = CounterMetricFamily(
            "portal_storage_removed_bytes",
            "Bytes of the files that storage cleanups removed, by rule (all time).",
            labels=["rule"],
        )
        for rule, size in removed.items():
            counter.add_metric([rule], size or 0)
        yield counter

    def _suspensions(self) -> Iterator[Metric]:
        counts = Suspension.objects.aggregate(
            active=Count("pk", filter=Q(lifted_at__isnull=True)), total=Count("pk")
        )
        yield GaugeMetricFamily(
            "portal_suspensions_active", "Suspensions in force.", value=counts["active"]
        )
        yield CounterMetricFamily(
            "portal_suspensions", "Suspensions imposed (all time).", value=counts["total"]
        )


registry = CollectorRegistry()
registry.register(PortalCollector())


@public_view
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
