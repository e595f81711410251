"""Admission: which queued sessions may start now, in what order, and how long the rest wait.

The policy is a small pure object, :class:`AdmissionPolicy`, over plain values
(:class:`QueueEntry`, :class:`Capacity`): the service (:func:`sessions_admit`), the wait
estimates and the queue simulation (``bench/queue_sim.py``) all use the same code.

Order (service rule 5, "small sessions go first"): by *effective priority*, the environment's
priority (staff give small environments higher ones) plus staff's boost of the entry plus one
step for every ``aging_minutes`` waited, so a large session's priority grows until it is first
and nothing starves; then the longest waiting. Entries are admitted in that order as long as they
fit the free CPUs and memory of the pool and their environment's concurrency limit. One that does
not fit lets smaller ones behind it start (backfill), until it has waited ``reserve_after_minutes``:
from then on nothing ranked *behind* it starts before it, so it gets the room it needs as sessions
end. A session ranks behind newer ones of higher priority until aging has closed the gap (the
priority difference × ``aging_minutes``), so its reservation holds from
max(gap × aging, reserve) on: that, plus the time its own backlog takes to clear, bounds its wait
(``bench/queue_sim.py`` measures it). An entry bigger than the whole pool never reserves anything:
the service ends it (``too_large``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class QueueEntry:
    """A queued session as admission sees it."""

    key: str
    environment: str
    cpus: int
    memory_mb: int
    priority: int
    queued_at: datetime
    boost: int = 0
    duration_seconds: int = 0  # how long it holds its resources once admitted (for estimates)


@dataclass(frozen=True)
class Holding:
    """Resources held by an admitted or running session, until ``release_at``."""

    environment: str
    cpus: int
    memory_mb: int
    release_at: datetime


@dataclass
class Capacity:
    """What is free: CPUs, memory, and per environment how many more may run (None: no limit)."""

    cpus: float
    memory_mb: float
    per_environment: dict[str, int | None] = field(default_factory=dict)
    # The whole pool: an entry bigger than it can never start, and must not hold others back.
    pool_cpus: float = math.inf
    pool_memory_mb: float = math.inf

    def pool_fits(self, entry: QueueEntry) -> bool:
        return entry.cpus <= self.cpus and entry.memory_mb <= self.memory_mb

    def environment_fits(self, entry: QueueEntry) -> bool:
        left = self.per_environment.get(entry.environment)
        return left is None or left > 0

    def take(self, cpus: float, memory_mb: float, environment: str) -> None:
        self.cpus -= cpus
        self.memory_mb -= memory_mb
        left = self.per_environment.get(environment)
        if left is not None:
            self.per_environment[environment] = left - 1

    def give(self, cpus: float, memory_mb: float, environment: str) -> None:
        self.cpus += cpus
        self.memory_mb += memory_mb
        left = self.per_environment.get(environment)
        if left is not None:
            self.per_environment[environment] = left + 1


@dataclass(frozen=True)
class AdmissionPolicy:
    """Ordering, aging and fit. ``fcfs=True``: plain first come, first served (no priorities,
    no backfill), the baseline the simulation compares with."""

    aging_minutes: float = 10.0
    reserve_after_minutes: float = 30.0
    fcfs: bool = False

    def __post_init__(self) -> None:
        if self.aging_minutes <= 0 or self.reserve_after_minutes < 0:
            raise ValueError(
                "aging_minutes must be positive and reserve_after_minutes not negative"
            )

    def effective_priority(self, entry: QueueEntry, now: datetime) -> float:
        waited = max(0.0, (now - entry.queued_at).total_seconds())
        return entry.priority + entry.boost + waited / 60.0 / self.aging_minutes

    def order(self, entries: Iterable[QueueEntry], now: datetime) -> list[QueueEntry]:
        """The queue in admission order."""
        if self.fcfs:
            return sorted(entries, key=lambda e: (e.queued_at, e.key))
        return sorted(entries, key=lambda e: (-self.effective_priority(e, now), e.queued_at, e.key))

    def select(
        self, entries: Iterable[QueueEntry], capacity: Capacity, now: datetime
    ) -> list[QueueEntry]:
        """The entries to admit now, in order; ``capacity`` is used up by them."""
        chosen: list[QueueEntry] = []
        reserved = False  # an entry that waited long enough holds the pool for itself
        for entry in self.order(entries, now):
            if too_large(entry, capacity.pool_cpus, capacity.pool_memory_mb):
                continue  # never fits: it must not hold the pool for nothing
            if not capacity.environment_fits(entry):
                continue  # its environment is at its limit: no reason to hold others back
            if not reserved and capacity.pool_fits(entry):
                capacity.take(entry.cpus, entry.memory_mb, entry.environment)
                chosen.append(entry)
                continue
            waited = (now - entry.queued_at).total_seconds() / 60.0
            if self.fcfs or waited >= self.reserve_after_minutes:
                reserved = True
        return chosen


def capacity_free(
    pool_cpus: float,
    pool_memory_mb: float,
    limits: Mapping[str, int | None],
    holdings: Iterable[Holding],
) -> Capacity:
    """What the pool has free once ``holdings`` are taken out."""
    capacity = Capacity(pool_cpus, pool_memory_mb, dict(limits), pool_cpus, pool_memory_mb)
    for held in holdings:
        capacity.take(held.cpus, held.memory_mb, held.environment)
    return capacity


def estimate_waits(
    policy: AdmissionPolicy,
    entries: Sequence[QueueEntry],
    holdings: Sequence[Holding],
    pool_cpus: float,
    pool_memory_mb: float,
    limits: Mapping[str, int | None],
    now: datetime,
) -> dict[str, float | None]:
    """Seconds until each entry is admitted, if nobody else launches and sessions end when
    ``holdings`` say (``release_at``) and last ``duration_seconds`` once admitted. None: it never
    fits. Fed with typical lengths of past sessions rather than time limits, it is close for
    most (``bench/queue_sim.py`` measures it); later launches of higher priority make it
    optimistic.

    Replays the policy over the coming releases: at each moment a session ends, what would be
    admitted then, and when that one would end in turn.
    """
    capacity = capacity_free(pool_cpus, pool_memory_mb, limits, holdings)
    releases = [(h.release_at, i, h) for i, h in enumerate(holdings)]
    heapq.heapify(releases)
    waiting = list(entries)
    waits: dict[str, float | None] = {e.key: None for e in entries}
    moment = now
    counter = len(holdings)
    while waiting:
        for entry in policy.select(waiting, capacity, moment):
            waits[entry.key] = (moment - now).total_seconds()
            waiting.remove(entry)
            end = moment + timedelta(seconds=entry.duration_seconds)
            heapq.heappush(
                releases,
                (end, counter, Holding(entry.environment, entry.cpus, entry.memory_mb, end)),
            )
            counter += 1
        if not waiting or not releases:
            break
        moment, _, released = heapq.heappop(releases)
        moment = max(moment, now)
        capacity.give(released.cpus, released.memory_mb, released.environment)
    return waits


def too_large(entry: QueueEntry, pool_cpus: float, pool_memory_mb: float) -> bool:
    """Whether an entry could never fit, even in an empty pool."""
    return entry.cpus > pool_cpus or entry.memory_mb > pool_memory_mb


def round_up_minutes(seconds: float | None) -> int | None:
    """A wait for people: whole minutes, at least 1 when there is any wait."""
    if seconds is None:
        return None
    return 0 if seconds <= 0 else max(1, math.ceil(seconds / 60))
