"""The admission policy on its own, with a fixed clock: order, aging, fit, reservation and
the wait estimates (service rule 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.admission import (
    AdmissionPolicy,
    Capacity,
    Holding,
    QueueEntry,
    capacity_free,
    estimate_waits,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
POLICY = AdmissionPolicy(aging_minutes=10, reserve_after_minutes=30)


def entry(
    key: str,
    *,
    size: str = "small",
    waited_minutes: float = 0,
    boost: int = 0,
    hours: float = 5,
) -> QueueEntry:
    cpus, memory, priority = {"small": (2, 4096, 10), "large": (16, 65536, 0)}[size]
    return QueueEntry(
        key=key,
        environment=size,
        cpus=cpus,
        memory_mb=memory,
        priority=priority,
        queued_at=NOW - timedelta(minutes=waited_minutes),
        boost=boost,
        duration_seconds=int(hours * 3600),
    )


def keys(entries: list[QueueEntry]) -> list[str]:
    return [e.key for e in entries]


def test_small_sessions_go_first_then_the_longest_waiting() -> None:
    queue = [
        entry("large-early", size="large", waited_minutes=5),
        entry("small-late", waited_minutes=1),
        entry("small-early", waited_minutes=3),
    ]

    assert keys(POLICY.order(queue, NOW)) == ["small-early", "small-late", "large-early"]


def test_waiting_raises_a_large_sessions_priority_until_it_is_first() -> None:
    # Ten priority steps separate them: at one step per 10 minutes, 100 minutes' wait.
    large = entry("large", size="large", waited_minutes=101)
    small = entry("small", waited_minutes=0)

    assert keys(POLICY.order([small, large], NOW)) == ["large", "small"]
    assert keys(POLICY.order([small, large], NOW - timedelta(minutes=2))) == ["small", "large"]


def test_staff_can_move_an_entry_with_a_boost() -> None:
    queue = [entry("a", waited_minutes=5), entry("b", waited_minutes=1, boost=1)]

    assert keys(POLICY.order(queue, NOW)) == ["b", "a"]


def test_first_come_first_served_ignores_priorities() -> None:
    queue = [entry("small", waited_minutes=1), entry("large", size="large", waited_minutes=2)]

    assert keys(AdmissionPolicy(fcfs=True).order(queue, NOW)) == ["large", "small"]


def test_admits_in_order_while_they_fit() -> None:
    capacity = Capacity(cpus=5, memory_mb=100_000)
    queue = [entry("a", waited_minutes=3), entry("b", waited_minutes=2), entry("c")]

    chosen = POLICY.select(queue, capacity, NOW)

    assert keys(chosen) == ["a", "b"]
    assert (capacity.cpus, capacity.memory_mb) == (1, 100_000 - 2 * 4096)


def test_smaller_ones_start_past_a_large_one_until_it_has_waited_its_reserve() -> None:
    queue = [entry("large", size="large", waited_minutes=0, boost=20), entry("small")]
    fresh = POLICY.select(queue, Capacity(cpus=8, memory_mb=100_000), NOW)

    queue[0] = entry("large", size="large", waited_minutes=31, boost=20)
    reserved = POLICY.select(queue, Capacity(cpus=8, memory_mb=100_000), NOW)

    assert keys(fresh) == ["small"]  # backfill: the large one does not fit anyway
    assert reserved == []  # the room that frees up is kept for the large one


def test_an_environment_at_its_limit_holds_nobody_else_back() -> None:
    capacity = Capacity(cpus=100, memory_mb=1_000_000, per_environment={"large": 0})
    queue = [
        entry("large", size="large", waited_minutes=60, boost=20),
        entry("small"),
    ]

    assert keys(POLICY.select(queue, capacity, NOW)) == ["small"]


def test_capacity_free_takes_out_what_is_held_and_counts_per_environment() -> None:
    held = [Holding("small", 2, 4096, NOW), Holding("small", 2, 4096, NOW)]

    capacity = capacity_free(10, 20_000, {"small": 3, "large": None}, held)

    assert (capacity.cpus, capacity.memory_mb) == (6, 20_000 - 8192)
    assert capacity.per_environment == {"small": 1, "large": None}


def test_estimates_follow_the_releases_in_time() -> None:
    holdings = [
        Holding("small", 2, 4096, NOW + timedelta(minutes=10)),
        Holding("small", 2, 4096, NOW + timedelta(minutes=40)),
    ]
    queue = [entry("first", waited_minutes=2, hours=1), entry("second", waited_minutes=1)]

    waits = estimate_waits(POLICY, queue, holdings, 4, 100_000, {}, NOW)

    assert waits == {"first": 600.0, "second": 2400.0}


def test_an_entry_that_never_fits_has_no_estimate() -> None:
    waits = estimate_waits(POLICY, [entry("large", size="large")], [], 8, 1_000_000, {}, NOW)

    assert waits == {"large": None}


def test_an_empty_pool_admits_at_once() -> None:
    assert estimate_waits(POLICY, [entry("a")], [], 8, 100_000, {}, NOW) == {"a": 0.0}


sizes = st.sampled_from(["small", "large"])


@given(
    st.lists(st.tuples(sizes, st.integers(0, 300), st.integers(-3, 3)), max_size=30),
    st.integers(0, 64),
    st.integers(0, 300_000),
)
def test_select_never_overcommits(
    queue: list[tuple[str, int, int]], cpus: int, memory: int
) -> None:
    entries = [
        entry(f"e{i}", size=size, waited_minutes=waited, boost=boost)
        for i, (size, waited, boost) in enumerate(queue)
    ]
    capacity = Capacity(cpus, memory, {"small": 5, "large": 1})

    chosen = POLICY.select(entries, capacity, NOW)

    assert sum(e.cpus for e in chosen) <= cpus
    assert sum(e.memory_mb for e in chosen) <= memory
    assert sum(e.environment == "small" for e in chosen) <= 5
    assert sum(e.environment == "large" for e in chosen) <= 1
    assert len({e.key for e in chosen}) == len(chosen)


@pytest.mark.parametrize("aging", [0.5, 10, 60])
def test_aging_is_one_step_per_period(aging: float) -> None:
    policy = AdmissionPolicy(aging_minutes=aging)
    waited = entry("a", waited_minutes=aging * 3)

    assert policy.effective_priority(waited, NOW) == pytest.approx(10 + 3)
