"""Queue simulation: a busy morning replayed through the admission policy, priority vs FCFS.

The same launches go through ``AdmissionPolicy.select`` (``sessions_app/admission.py``, the code
the admission service runs) twice: with the priority policy (aging, then reservation) and with
plain first come, first served. No database and no real time: an event loop over arrivals and
session ends on a simulated clock, admitting at each of them as the portal does on every launch,
stop and expiry.

The morning (seeded): ``--users`` launches between 8:00 and 10:00, ever more of them until 9:00
and fewer after; 70% pick the small environment (2 CPUs, 4 GB, priority 10), 20% the medium one
(4 CPUs, 16 GB, priority 5), 10% the large one (16 CPUs, 64 GB, priority 0). Users stop early:
each keeps a session for a lognormal time, capped by the environment's maximum duration. The
pool is ten nodes of 64 CPUs and 256 GB, about 60% of what the morning asks for at its peak.

It reports the waits per environment and the pool's utilisation, checks the targets on every
seed (small sessions' 95th-percentile wait at most half of what FCFS gives them; no large session
waiting longer than ``--large-bound-minutes``), sweeps ``aging_minutes`` and
``reserve_after_minutes``, shows how the waits depend on the pool's size, times one simulation
and compares what ``estimate_waits`` tells each newcomer with the wait that followed.

Usage: ``.venv/bin/python bench/queue_sim.py [--seeds 5] [--users 500] [--pool-cpus 640]
[--pool-memory-gb 2560] [--aging 10] [--reserve 30] [--large-bound-minutes 120]
[--limit large=8]``. Writes the "Queue simulation" section of ``docs/benchmarks.md`` and raw
JSON under ``bench/results/``; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# isort: split
# The scripts' shared helpers, bench/common.py (bench/ is on sys.path: the script's folder).
from common import ROOT, add_output_arguments, command_line, machine_basics, publish, spread

sys.path.insert(0, str(ROOT))

# isort: split
from sessions_app.admission import (  # noqa: E402 (after the path: run as a script)
    AdmissionPolicy,
    Holding,
    QueueEntry,
    capacity_free,
    estimate_waits,
)

MORNING = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday, 8:00
END, ARRIVE = 0, 1  # a session that ends as another user arrives frees its room first
SWEEP_AGING = (5.0, 10.0, 20.0)
SWEEP_RESERVE = (15.0, 30.0, 60.0)
POOL_SIZES = (64, 320, 480, 640, 960)  # CPUs, 4 GB each: how the waits depend on capacity
TIMING_RUNS = 7
HISTORY = 5000  # past sessions per environment that the "typical" and "sampled" estimates use
SAMPLES = 7  # replays per "sampled" estimate
LARGE_BOUND_MINUTES = 120.0  # see "The large bound" in the report
TIE_MINUTES = 2.0  # sweep scores this close count as equal
PORTAL_DEFAULTS = (AdmissionPolicy().aging_minutes, AdmissionPolicy().reserve_after_minutes)
ESTIMATORS = {
    "deadline": "as documented: every session holds its room until its deadline, a queued one "
    "for its environment's maximum duration",
    "typical": "with typical lengths: a queued session for its environment's mean length, a "
    "running one for the mean time past sessions that ran as long went on (learnt from "
    f"{HISTORY:,} earlier sessions per environment)",
    "sampled": "with lengths drawn from the history: the median of "
    f"{SAMPLES} replays, each drawing every queued session's length from past sessions and every "
    "running one's remaining time from past sessions that ran as long",
    "true": "with every session's true length (as if the portal knew when each user will stop): "
    "only the launches still to come are unknown",
}


@dataclass(frozen=True)
class Environment:
    """An environment of the simulated portal, and how long its users keep a session."""

    name: str
    cpus: int
    memory_mb: int
    priority: int
    share: float  # of the launches
    median_minutes: float  # of a session's length (lognormal), before the cap
    sigma: float
    max_minutes: int  # the environment's maximum duration: the cap, and each session's deadline

    def length_minutes(self, rng: random.Random) -> float:
        drawn = rng.lognormvariate(math.log(self.median_minutes), self.sigma)
        return min(drawn, float(self.max_minutes))


ENVIRONMENTS = (
    Environment("small", 2, 4096, 10, 0.70, 40, 0.8, 120),
    Environment("medium", 4, 16384, 5, 0.20, 60, 0.8, 240),
    Environment("large", 16, 65536, 0, 0.10, 75, 0.8, 240),
)


@dataclass(frozen=True)
class Arrival:
    key: str
    environment: Environment
    at: datetime
    seconds: int  # how long the user keeps the session once it starts


@dataclass(frozen=True)
class Pool:
    cpus: int
    memory_mb: int
    limits: Mapping[str, int | None]


def launch_minute(rng: random.Random, hours: float) -> float:
    """A minute after 8:00 from the morning's curve: the rate ramps up from a fifth of its peak
    at 8:00 to the peak at 9:00, then falls to two fifths of the peak by the end."""
    span = hours * 60
    while True:
        minute, height = rng.uniform(0, span), rng.random()
        if minute < 60:
            rate = 0.2 + 0.8 * minute / 60
        else:
            rate = 1.0 - 0.6 * (minute - 60) / max(span - 60, 1.0)
        if height < rate:
            return minute


def morning(seed: int, users: int, hours: float) -> list[Arrival]:
    rng = random.Random(seed)
    weights = [env.share for env in ENVIRONMENTS]
    arrivals = []
    for i in range(users):
        env = rng.choices(ENVIRONMENTS, weights)[0]
        at = MORNING + timedelta(minutes=launch_minute(rng, hours))
        arrivals.append(Arrival(f"u{i:04d}", env, at, round(env.length_minutes(rng) * 60)))
    return sorted(arrivals, key=lambda a: (a.at, a.key))


def peak_demand(arrivals: Iterable[Arrival]) -> int:
    """The most CPUs the morning's sessions would hold at once if none had to wait."""
    changes = []
    for a in arrivals:
        changes += [
            (a.at, a.environment.cpus),
            (a.at + timedelta(seconds=a.seconds), -a.environment.cpus),
        ]
    held = peak = 0
    for _, change in sorted(changes, key=lambda c: (c[0], c[1])):
        held += change
        peak = max(peak, held)
    return peak


class Estimator:
    """What a newcomer is told at its launch: ``estimate_waits`` fed as in ``ESTIMATORS``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.rng = random.Random(0)  # the history: other mornings than the simulated ones
        self.history: dict[str, list[float]] = {}
        self.tail_sums: dict[str, list[float]] = {}
        for env in ENVIRONMENTS:
            lengths = sorted(env.length_minutes(self.rng) * 60 for _ in range(HISTORY))
            self.history[env.name] = lengths
            self.tail_sums[env.name] = list(itertools.accumulate(reversed(lengths)))[::-1]

    def mean_left(self, environment: str, elapsed: float) -> float:
        """Seconds a session that has run ``elapsed`` seconds has left: the mean of the past
        sessions that ran at least as long."""
        lengths, sums = self.history[environment], self.tail_sums[environment]
        i = bisect.bisect_right(lengths, elapsed)
        return 0.0 if i == len(lengths) else sums[i] / (len(lengths) - i) - elapsed

    def drawn_left(self, environment: str, elapsed: float) -> float:
        """Seconds a session that has run ``elapsed`` seconds has left: that of one past session
        that ran at least as long, drawn at random."""
        lengths = self.history[environment]
        i = bisect.bisect_right(lengths, elapsed)
        return 0.0 if i == len(lengths) else lengths[self.rng.randrange(i, len(lengths))] - elapsed

    def wait(
        self,
        policy: AdmissionPolicy,
        pool: Pool,
        entries: Sequence[QueueEntry],
        running: Mapping[str, Holding],
        started: Mapping[str, datetime],
        arrivals: Mapping[str, Arrival],
        now: datetime,
    ) -> float | None:
        """Seconds until ``entries[-1]`` (the newcomer) is admitted, by ``estimate_waits``."""
        if self.mode == "deadline":
            return self.replay(policy, pool, entries, list(running.values()), now)
        if self.mode == "true":
            left = {k: arrivals[k].seconds - (now - started[k]).total_seconds() for k in running}
            lengths = {e.key: float(arrivals[e.key].seconds) for e in entries}
            return self.replay_with(policy, pool, entries, running, left, lengths, arrivals, now)
        if self.mode == "typical":
            left = {k: self.mean_left(h.environment, (now - started[k]).total_seconds())
                    for k, h in running.items()}  # fmt: skip
            lengths = {e.key: self.mean_left(e.environment, 0.0) for e in entries}
            return self.replay_with(policy, pool, entries, running, left, lengths, arrivals, now)
        # sampled: the median of replays with lengths drawn from the history
        waits = []
        for _ in range(SAMPLES):
            left = {k: self.drawn_left(h.environment, (now - started[k]).total_seconds())
                    for k, h in running.items()}  # fmt: skip
            lengths = {e.key: self.drawn_left(e.environment, 0.0) for e in entries}
            wait = self.replay_with(policy, pool, entries, running, left, lengths, arrivals, now)
            waits.append(math.inf if wait is None else wait)
        middle = statistics.median(waits)
        return None if math.isinf(middle) else middle

    def replay_with(
        self,
        policy: AdmissionPolicy,
        pool: Pool,
        entries: Sequence[QueueEntry],
        running: Mapping[str, Holding],
        left: Mapping[str, float],
        lengths: Mapping[str, float],
        arrivals: Mapping[str, Arrival],
        now: datetime,
    ) -> float | None:
        """The replay with each running session ending after ``left`` seconds and each queued
        one lasting ``lengths`` seconds."""
        holdings = [holding(arrivals[k], now + timedelta(seconds=left[k])) for k in running]
        queued = [entry_for(arrivals[e.key], e.queued_at, round(lengths[e.key])) for e in entries]
        return self.replay(policy, pool, queued, holdings, now)

    @staticmethod
    def replay(
        policy: AdmissionPolicy,
        pool: Pool,
        entries: Sequence[QueueEntry],
        holdings: Sequence[Holding],
        now: datetime,
    ) -> float | None:
        waits = estimate_waits(
            policy, entries, holdings, pool.cpus, pool.memory_mb, pool.limits, now
        )
        return waits[entries[-1].key]


def entry_for(arrival: Arrival, queued_at: datetime, duration_seconds: int) -> QueueEntry:
    env = arrival.environment
    return QueueEntry(
        arrival.key, env.name, env.cpus, env.memory_mb, env.priority, queued_at,
        duration_seconds=duration_seconds,
    )  # fmt: skip


def holding(arrival: Arrival, release_at: datetime) -> Holding:
    env = arrival.environment
    return Holding(env.name, env.cpus, env.memory_mb, release_at)


@dataclass
class Run:
    """One simulated morning under one policy."""

    waits: dict[str, list[float]] = field(default_factory=dict)  # minutes, per environment
    used_cpu_seconds: float = 0.0  # from 8:00 until the queue last emptied
    idle_cpu_seconds: float = 0.0  # of the pool, while someone waited
    drained: datetime = MORNING  # the last admission
    peak_queue: int = 0
    peak_state: tuple[datetime, list[QueueEntry], list[Holding]] | None = None  # at peak_queue
    estimates: list[tuple[str, float | None, float]] = field(default_factory=list)
    estimate_seconds: list[float] = field(default_factory=list)  # of each estimate_waits call

    def utilisation(self, pool: Pool) -> float:
        window = (self.drained - MORNING).total_seconds()
        return self.used_cpu_seconds / (pool.cpus * window) if window > 0 else 0.0


def simulate(
    policy: AdmissionPolicy,
    arrivals: Sequence[Arrival],
    pool: Pool,
    estimator: Estimator | None = None,
) -> Run:
    """Replay ``arrivals``: admission at every launch and every session end."""
    by_key = {a.key: a for a in arrivals}
    events = [(a.at, ARRIVE, a.key) for a in arrivals]
    heapq.heapify(events)
    queue: dict[str, QueueEntry] = {}  # in launch order, as the service reads the queue
    running: dict[str, Holding] = {}  # until their deadlines: what the service knows
    started: dict[str, datetime] = {}
    guesses: dict[str, float | None] = {}
    run, then, busy, used, idle = Run(), MORNING, 0, 0.0, 0.0
    while events:
        now, kind, key = heapq.heappop(events)
        seconds = (now - then).total_seconds()
        used += busy * seconds
        idle += (pool.cpus - busy) * seconds if queue else 0.0
        then = now
        arrival = by_key[key]
        if kind == END:
            busy -= running.pop(key).cpus
        else:
            entry = entry_for(arrival, now, arrival.environment.max_minutes * 60)
            if estimator is not None:
                t0 = time.perf_counter()
                guesses[key] = estimator.wait(
                    policy, pool, [*queue.values(), entry], running, started, by_key, now
                )
                run.estimate_seconds.append(time.perf_counter() - t0)
            queue[key] = entry
        capacity = capacity_free(pool.cpus, pool.memory_mb, pool.limits, running.values())
        for chosen in policy.select(queue.values(), capacity, now):
            admitted = by_key[chosen.key]
            del queue[chosen.key]
            deadline = now + timedelta(minutes=admitted.environment.max_minutes)
            running[chosen.key], started[chosen.key] = holding(admitted, deadline), now
            busy += chosen.cpus
            heapq.heappush(events, (now + timedelta(seconds=admitted.seconds), END, chosen.key))
            wait = (now - chosen.queued_at).total_seconds()
            run.waits.setdefault(chosen.environment, []).append(wait / 60)
            if estimator is not None:
                run.estimates.append((chosen.environment, guesses[chosen.key], wait))
            run.drained, run.used_cpu_seconds, run.idle_cpu_seconds = now, used, idle
        left = [
            capacity.cpus,
            capacity.memory_mb,
            *(n for n in capacity.per_environment.values() if n is not None),
        ]
        if min(left) < 0:  # select used up more than was free
            raise RuntimeError(f"overcommitted at {now}: {capacity}")
        if len(queue) > run.peak_queue:
            run.peak_queue = len(queue)
            run.peak_state = (now, list(queue.values()), list(running.values()))
    if queue:
        raise RuntimeError(f"{len(queue)} sessions never admitted")
    return run


# --- Figures -----------------------------------------------------------------------------------


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def small_ratio(priority: Run, fcfs: Run) -> float:
    """Small sessions' p95 wait with priorities over FCFS's (0 when both are 0)."""
    mine, theirs = p95(priority.waits.get("small", [])), p95(fcfs.waits.get("small", []))
    if theirs == 0:
        return 0.0 if mine == 0 else math.inf
    return mine / theirs


def large_max(run: Run) -> float:
    return max(run.waits.get("large", [0.0]))


def summary(runs: Sequence[Run], fcfs: Sequence[Run], pool: Pool) -> dict[str, Any]:
    """The worst case over the seeds of what the targets and the sweep look at."""
    return {
        "small_p95": max(p95(r.waits.get("small", [])) for r in runs),
        "medium_p95": max(p95(r.waits.get("medium", [])) for r in runs),
        "large_max": max(large_max(r) for r in runs),
        "small_ratio": max(small_ratio(r, f) for r, f in zip(runs, fcfs, strict=True)),
        "utilisation": statistics.mean(r.utilisation(pool) for r in runs),
        "drained": max(r.drained for r in runs).isoformat(),
    }


def accuracy(pairs: Sequence[tuple[float | None, float]]) -> dict[str, Any]:
    """How the estimates of the newcomers that had to wait compare with their waits: within
    ``max(50%, 1 min)`` of the wait, too high or too low by more."""
    known = [(guess, actual) for guess, actual in pairs if guess is not None]
    tolerance = [max(0.5 * actual, 60.0) for _, actual in known]
    high = sum(g - a > t for (g, a), t in zip(known, tolerance, strict=True))
    low = sum(a - g > t for (g, a), t in zip(known, tolerance, strict=True))
    n = len(known) or 1
    return {
        "queued": len(pairs),
        "never": len(pairs) - len(known),
        "mae_minutes": statistics.median(abs(g - a) / 60 for g, a in known) if known else 0.0,
        "within": (len(known) - high - low) / n,
        "high": high / n,
        "low": low / n,
        "median_estimate": statistics.median(g / 60 for g, _ in known) if known else 0.0,
        "median_actual": statistics.median(a / 60 for _, a in known) if known else 0.0,
    }


def clock(moment: datetime | str) -> str:
    """The time of day, and how many days after the morning's: ``03:15 (+1 day)``."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    days = (moment.date() - MORNING.date()).days
    return f"{moment:%H:%M}" + (f" (+{days} day{'s' if days > 1 else ''})" if days else "")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"| {' | '.join('---' for _ in header)} |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


# --- The benchmark -----------------------------------------------------------------------------


def time_estimate(policy: AdmissionPolicy, pool: Pool, run: Run) -> dict[str, Any]:
    """How long one ``estimate_waits`` call for the whole queue takes at the run's longest queue,
    fed as the portal feeds it (deadlines, maximum durations): median of 3."""
    assert run.peak_state is not None
    now, entries, holdings = run.peak_state
    seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        estimate_waits(policy, entries, holdings, pool.cpus, pool.memory_mb, pool.limits, now)
        seconds.append(time.perf_counter() - t0)
    return {"pool_cpus": pool.cpus, "queued": len(entries), "running": len(holdings),
            "seconds": statistics.median(seconds)}  # fmt: skip


def parse_limits(values: Sequence[str]) -> dict[str, int | None]:
    names = {env.name for env in ENVIRONMENTS}
    limits: dict[str, int | None] = {}
    for value in values:
        name, _, count = value.partition("=")
        if name not in names or not count.isdigit():
            sys.exit(f"--limit {value}: expected ENV=N with ENV one of {', '.join(sorted(names))}")
        limits[name] = int(count)
    return limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="mornings to replay (5)")
    parser.add_argument("--users", type=int, default=500, help="launches in the morning (500)")
    parser.add_argument("--hours", type=float, default=2.0, help="from 8:00, when they come (2)")
    parser.add_argument("--pool-cpus", type=int, default=640)
    parser.add_argument("--pool-memory-gb", type=int, default=2560)
    parser.add_argument(
        "--aging",
        type=float,
        default=PORTAL_DEFAULTS[0],
        help="aging_minutes (the portal's default)",
    )
    parser.add_argument("--reserve", type=float, default=PORTAL_DEFAULTS[1],
                        help="reserve_after_minutes (the portal's default)")  # fmt: skip
    parser.add_argument("--large-bound-minutes", type=float, default=LARGE_BOUND_MINUTES)
    parser.add_argument("--limit", action="append", default=[], metavar="ENV=N",
                        help="at most N sessions of ENV at once (repeatable)")  # fmt: skip
    add_output_arguments(parser)
    args = parser.parse_args()
    limits = parse_limits(args.limit)
    pool = Pool(args.pool_cpus, args.pool_memory_gb * 1024, limits)
    priority = AdmissionPolicy(aging_minutes=args.aging, reserve_after_minutes=args.reserve)
    fcfs = AdmissionPolicy(fcfs=True)
    seeds = list(range(1, args.seeds + 1))
    mornings = [morning(seed, args.users, args.hours) for seed in seeds]

    fcfs_runs = [simulate(fcfs, arrivals, pool) for arrivals in mornings]
    priority_runs = [simulate(priority, arrivals, pool) for arrivals in mornings]

    sweep = []
    for aging, reserve in itertools.product(SWEEP_AGING, SWEEP_RESERVE):
        policy = AdmissionPolicy(aging_minutes=aging, reserve_after_minutes=reserve)
        runs = [simulate(policy, arrivals, pool) for arrivals in mornings]
        sweep.append({"aging": aging, "reserve": reserve, **summary(runs, fcfs_runs, pool)})

    capacity, longest = [], []
    for cpus in sorted({*POOL_SIZES, pool.cpus}):
        sized = pool if cpus == pool.cpus else Pool(cpus, cpus * 4096, limits)
        fcfs_sized = [simulate(fcfs, arrivals, sized) for arrivals in mornings]
        sized_runs = [simulate(priority, arrivals, sized) for arrivals in mornings]
        capacity.append({
            "cpus": cpus,
            "priority": summary(sized_runs, fcfs_sized, sized),
            "fcfs": summary(fcfs_sized, fcfs_sized, sized),
        })  # fmt: skip
        if cpus in (min(POOL_SIZES), pool.cpus):
            longest.append(time_estimate(priority, sized, sized_runs[0]))

    timing: dict[str, list[float]] = {"priority": [], "fcfs": []}
    for _ in range(TIMING_RUNS):
        for name, policy in (("priority", priority), ("fcfs", fcfs)):
            t0 = time.perf_counter()
            simulate(policy, mornings[0], pool)
            timing[name].append(time.perf_counter() - t0)

    estimates: dict[str, dict[str, Any]] = {}
    estimate_cost: dict[str, Any] = {}
    consistent = True
    for mode in ESTIMATORS:
        estimator = Estimator(mode)
        pairs: dict[str, list[tuple[float | None, float]]] = {}
        seconds: list[float] = []
        for arrivals in mornings:
            run = simulate(priority, arrivals, pool, estimator)
            for environment, guess, actual in run.estimates:
                # told 0 exactly when admitted at once: the estimate replays the same select
                consistent &= (guess == 0) == (actual == 0)
                if actual > 0:
                    pairs.setdefault(environment, []).append((guess, actual))
                    pairs.setdefault("all", []).append((guess, actual))
            seconds += run.estimate_seconds
        estimate_cost[mode] = {"median": statistics.median(seconds), "max": max(seconds)}
        estimates[mode] = {name: accuracy(values) for name, values in pairs.items()}

    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "date": f"{now:%Y-%m-%d %H:%M} UTC",
        "command": command_line(),
        "machine": machine_basics(),
        "config": {
            "seeds": seeds,
            "users": args.users,
            "hours": args.hours,
            "pool_cpus": pool.cpus,
            "pool_memory_mb": pool.memory_mb,
            "limits": limits,
            "aging": args.aging,
            "reserve": args.reserve,
            "large_bound_minutes": args.large_bound_minutes,
            "environments": [vars(env) for env in ENVIRONMENTS],
        },  # fmt: skip
        "demand": [
            {
                "cpu_hours": sum(a.environment.cpus * a.seconds for a in arrivals) / 3600,
                "peak_cpus": peak_demand(arrivals),
                "large_share": sum(
                    a.environment.cpus * a.seconds
                    for a in arrivals
                    if a.environment.name == "large"
                )
                / sum(a.environment.cpus * a.seconds for a in arrivals),
            }
            for arrivals in mornings
        ],
        "runs": {
            name: [
                {
                    "waits": r.waits,
                    "utilisation": r.utilisation(pool),
                    "idle_cpu_hours": r.idle_cpu_seconds / 3600,
                    "drained": r.drained.isoformat(),
                    "peak_queue": r.peak_queue,
                }  # fmt: skip
                for r in runs
            ]
            for name, runs in (("priority", priority_runs), ("fcfs", fcfs_runs))
        },
        "sweep": sweep,
        "capacity": capacity,
        "timing": timing,
        "estimates": estimates,
        "estimate_cost": estimate_cost,
        "estimate_longest": longest,
        "estimates_consistent": consistent,
    }
    section, verdicts = report(results, priority_runs, fcfs_runs, pool)
    publish(args, "Queue simulation", section, "queue-sim", now, results)
    for line in verdicts:
        print(line)
    if any(line.startswith("FAIL") for line in verdicts):
        sys.exit(1)


# --- The report --------------------------------------------------------------------------------


def recommend(
    sweep: Sequence[dict[str, Any]], bound: float, current: tuple[float, float]
) -> dict[str, Any] | None:
    """The sweep's pair to use: of those meeting both targets on every seed, the lowest sum of
    the two targets' worst cases (small p95 + large maximum, in minutes); within TIE_MINUTES of
    that, the portal's current defaults (no change without a measured gain), else the lowest."""
    passing = [r for r in sweep if r["small_ratio"] <= 0.5 and r["large_max"] <= bound]
    if not passing:
        return None
    score = {id(r): r["small_p95"] + r["large_max"] for r in passing}
    best = min(score.values())
    tied = [r for r in passing if score[id(r)] <= best + TIE_MINUTES]
    for row in tied:
        if (row["aging"], row["reserve"]) == current:
            return row
    return min(tied, key=lambda r: score[id(r)])


def report(
    results: dict[str, Any], priority_runs: Sequence[Run], fcfs_runs: Sequence[Run], pool: Pool
) -> tuple[str, list[str]]:
    config, machine = results["config"], results["machine"]
    bound, aging, reserve = config["large_bound_minutes"], config["aging"], config["reserve"]
    seeds = config["seeds"]
    gap = max(e.priority for e in ENVIRONMENTS) - min(e.priority for e in ENVIRONMENTS)

    environments = table(
        ["environment", "CPUs", "memory", "priority", "share", "session length: median, cap",
         "limit"],
        [
            [e.name, str(e.cpus), f"{e.memory_mb // 1024} GB", str(e.priority), f"{e.share:.0%}",
             f"{e.median_minutes:.0f} min (lognormal, σ {e.sigma}), {e.max_minutes} min",
             str(pool.limits.get(e.name) or "–")]
            for e in ENVIRONMENTS
        ],
    )  # fmt: skip
    demand = results["demand"]
    memory_gb = pool.memory_mb // 1024
    last_launch = clock(MORNING + timedelta(hours=config["hours"]))
    cpu_hours = statistics.mean(d["cpu_hours"] for d in demand)
    peak_low, peak_high = min(d["peak_cpus"] for d in demand), max(d["peak_cpus"] for d in demand)
    fits = pool.cpus / statistics.mean(d["peak_cpus"] for d in demand)

    def wait_cells(waits: Sequence[float]) -> list[str]:
        if not waits:
            return ["0", "–", "–", "–"]
        return [str(len(waits)), f"{statistics.median(waits):.1f}", f"{p95(waits):.1f}",
                f"{max(waits):.1f}"]  # fmt: skip

    rows = []
    for label, runs in ((f"priority (aging {aging:g}, reserve {reserve:g})", priority_runs),
                        ("FCFS", fcfs_runs)):  # fmt: skip
        for env in ENVIRONMENTS:
            rows.append(
                [label, env.name, *wait_cells([w for r in runs for w in r.waits.get(env.name, [])])]
            )
        every = [w for r in runs for waits in r.waits.values() for w in waits]
        rows.append([label, "all", *wait_cells(every)])
    waits_table = table(["policy", "environment", "sessions", "median wait (min)",
                         "p95 (min)", "max (min)"], rows)  # fmt: skip

    def use(runs: Sequence[Run]) -> str:
        share = statistics.mean(r.utilisation(pool) for r in runs)
        idle = statistics.mean(r.idle_cpu_seconds for r in runs) / 3600
        last = max(r.drained for r in runs)
        return (
            f"{share:.1%} of the pool's CPU-hours from 8:00 until the queue last emptied "
            f"(latest {clock(last)}); {idle:.0f} CPU-hours idle while someone waited"
        )

    seed_rows, ratios, larges = [], [], []
    for seed, mine, theirs in zip(seeds, priority_runs, fcfs_runs, strict=True):
        ratio = small_ratio(mine, theirs)
        ratios.append(ratio)
        larges.append(large_max(mine))
        seed_rows.append([
            str(seed), f"{p95(mine.waits.get('small', [])):.1f}",
            f"{p95(theirs.waits.get('small', [])):.1f}", f"{ratio:.2f}",
            f"{large_max(mine):.0f}", f"{large_max(theirs):.0f}",
            f"{mine.utilisation(pool):.1%} / {theirs.utilisation(pool):.1%}",
            str(mine.peak_queue), str(theirs.peak_queue),
        ])  # fmt: skip
    seeds_table = table(
        ["seed", "small p95, priority", "small p95, FCFS", "ratio", "large max, priority",
         "large max, FCFS", "utilisation, priority / FCFS", "longest queue, priority",
         "longest queue, FCFS"],
        seed_rows,
    )  # fmt: skip
    worst_ratio, worst_large = max(ratios), max(larges)
    small_ok, large_ok = worst_ratio <= 0.5, worst_large <= bound
    verdicts = [
        f"{'PASS' if small_ok else 'FAIL'}: small sessions' p95 wait ≤ half of FCFS's on every "
        f"seed (worst ratio {worst_ratio:.2f})",
        f"{'PASS' if large_ok else 'FAIL'}: no large session waits more than {bound:g} min "
        f"(worst {worst_large:.0f} min)",
    ]

    sweep = results["sweep"]
    chosen = recommend(sweep, bound, PORTAL_DEFAULTS)
    sweep_rows = []
    for r in sweep:
        met = r["small_ratio"] <= 0.5 and r["large_max"] <= bound
        mark = " ←" if chosen is r else ""
        sweep_rows.append([
            f"{r['aging']:g}{mark}", f"{r['reserve']:g}", f"{r['small_p95']:.1f}",
            f"{r['small_ratio']:.2f}", f"{r['medium_p95']:.0f}", f"{r['large_max']:.0f}",
            f"{r['utilisation']:.1%}", "both" if met else "**no**",
        ])  # fmt: skip
    sweep_table = table(
        ["aging (min)", "reserve after (min)", "small p95, worst (min)", "vs FCFS, worst",
         "medium p95, worst", "large max, worst", "utilisation, mean", "targets met"],
        sweep_rows,
    )  # fmt: skip

    def moved(key: str, at: float) -> float:
        values = [r[key] for r in sweep if r["aging"] == at]
        return max(values) - min(values)

    reserve_moves = {a: (moved("large_max", a), moved("small_p95", a)) for a in SWEEP_AGING}
    most = max(reserve_moves, key=lambda a: reserve_moves[a][1])
    at_reserve = [r for r in sweep if r["reserve"] == reserve] or [
        r for r in sweep if r["reserve"] == SWEEP_RESERVE[len(SWEEP_RESERVE) // 2]
    ]
    by_aging = "; ".join(
        f"aging {r['aging']:g}: small p95 {r['small_p95']:.0f} min, medium p95 "
        f"{r['medium_p95']:.0f}, large max {r['large_max']:.0f}"
        for r in at_reserve
    )
    fcfs_large = max(large_max(r) for r in fcfs_runs)
    large_share = statistics.mean(d["large_share"] for d in demand)
    large_env = next(e for e in ENVIRONMENTS if e.name == "large")
    missed = {
        name: ", ".join(str(c["cpus"]) for c in results["capacity"] if c[name]["large_max"] > bound)
        or "none"
        for name in ("priority", "fcfs")
    }
    capacity_note = (
        f"Of the capacity table's pools, the bound is missed at these CPU counts: with "
        f"priorities {missed['priority']}; with FCFS {missed['fcfs']}."
    )
    smallest = results["capacity"][0]
    large_move = max(m[0] for m in reserve_moves.values())
    small_move = reserve_moves[most][1]
    top_aging = max(SWEEP_AGING)
    top_row = next((r for r in at_reserve if r["aging"] == top_aging), None)
    here = next((r for r in at_reserve if r["aging"] == aging), None)
    top_gain = top_row["small_p95"] - here["small_p95"] if top_row and here else 0.0
    told_zero = "exactly those" if results["estimates_consistent"] else "**not exactly those**"
    if chosen is None:
        advice = "No pair of the sweep meets both targets on every seed: see the capacity table."
    else:
        same = (chosen["aging"], chosen["reserve"]) == PORTAL_DEFAULTS
        advice = (
            f"Recommended: aging {chosen['aging']:g} min, reserve after {chosen['reserve']:g} min"
            f"{' (the current defaults)' if same else ''}: of the pairs that meet both targets "
            f"on every seed, the lowest sum of the two worst cases (small p95 "
            f"{chosen['small_p95']:.0f} + large max {chosen['large_max']:.0f} min); pairs within "
            f"{TIE_MINUTES:g} min of the best count as equal and the current defaults win a tie."
        )

    cap_rows = []
    for c in results["capacity"]:
        mine, theirs = c["priority"], c["fcfs"]
        cap_rows.append([
            f"{c['cpus']}{' (this run)' if c['cpus'] == pool.cpus else ''}",
            f"{c['cpus'] * 4} GB" if c["cpus"] != pool.cpus else f"{pool.memory_mb // 1024} GB",
            f"{mine['small_p95']:.0f} / {theirs['small_p95']:.0f}",
            f"{mine['large_max']:.0f} / {theirs['large_max']:.0f}",
            f"{mine['utilisation']:.0%} / {theirs['utilisation']:.0%}",
            f"{clock(mine['drained'])} / {clock(theirs['drained'])}",
        ])  # fmt: skip
    cap_table = table(
        ["pool CPUs", "memory", "small p95, worst: priority / FCFS (min)",
         "large max, worst: priority / FCFS (min)", "utilisation, mean: priority / FCFS",
         "queue last empty, latest: priority / FCFS"],
        cap_rows,
    )  # fmt: skip

    est_rows = []
    for mode, figures in results["estimates"].items():
        for name in ["all", *(e.name for e in ENVIRONMENTS)]:
            f = figures.get(name)
            if f is None:
                continue
            cost = results["estimate_cost"][mode]
            est_rows.append([
                mode if name == "all" else "", name, str(f["queued"]),
                f"{f['median_estimate']:.0f} / {f['median_actual']:.0f}",
                f"{f['mae_minutes']:.1f}", f"{f['within']:.0%}", f"{f['high']:.0%}",
                f"{f['low']:.0%}", str(f["never"]),
                f"{cost['median'] * 1e3:.1f} / {cost['max'] * 1e3:.0f}" if name == "all" else "",
            ])  # fmt: skip
    est_table = table(
        ["estimate_waits fed", "environment", "newcomers who waited", "median estimate / wait "
         "(min)", "median abs. error (min)", "within ±50% (≥ 1 min)", "too high", "too low",
         "\"never\"", "ms per estimate: median / max"],
        est_rows,
    )  # fmt: skip
    modes = "\n".join(f"- *{mode}*: {text}." for mode, text in ESTIMATORS.items())
    timing = results["timing"]
    longest = "; ".join(
        f"{c['seconds'] * 1e3:.0f} ms with {c['queued']} queued and {c['running']} running "
        f"({c['pool_cpus']}-CPU pool)"
        for c in results["estimate_longest"]
    )

    section = f"""## Queue simulation

Measured {results["date"]} with `{results["command"]}` on {machine["nproc"]} CPUs
({machine["cpu"]}), {machine["ram_gib"]} GiB RAM, Linux {machine["kernel"]}, Python
{machine["python"]}.

A busy morning replayed through `AdmissionPolicy.select` (`sessions_app/admission.py`, the code
the admission service runs) on a simulated clock: admission at every launch and every session
end, as the portal admits on launch, stop and expiry. The same launches for both policies, on
{len(seeds)} mornings (seeds {seeds[0]}–{seeds[-1]}): {config["users"]} launches between 8:00
and {last_launch}, the rate ramping up from a fifth of its peak at 8:00 to the
peak at 9:00, then falling to two fifths of it. Users stop early: a session lasts a lognormal
time, capped by the environment's maximum duration, and holds its CPUs and memory from its
admission to its end. Not modelled: start-up time, users who give up waiting, and nodes (the
pool is one bin of CPUs and memory, as admission sees it, whereas a 16-CPU session must also
fit on one node).

The pool: {pool.cpus} CPUs and {memory_gb} GB. The morning asks for {cpu_hours:,.0f} CPU-hours
(mean of the seeds); with no queue its sessions would hold up to {peak_low:,}–{peak_high:,} CPUs
at once, so the pool fits about {fits:.0%} of the peak.

{environments}

Waits in minutes from launch to admission, all {len(seeds)} seeds together:

{waits_table}

Utilisation, priority: {use(priority_runs)}. FCFS: {use(fcfs_runs)}.

Targets, checked on every seed (worst case):

- {verdicts[0]}.
- {verdicts[1]}.

{seeds_table}

*The large bound* ({bound:g} min, `--large-bound-minutes`) is not a figure any policy can
promise on its own: under a backlog somebody waits while the pool works through it, and large
sessions are whom the priority policy serves last. What the policy guarantees is an order. A
large session (priority {gap} below the small one) lets later launches pass it for at most
{gap} × aging minutes ({gap * aging:g} min at aging {aging:g}); from then on it ranks ahead of
every later launch, and once it has also waited the reserve time and does not fit, nothing
ranked behind it starts until it has room. Its wait is therefore at most max({gap} × aging,
reserve), plus the time the pool needs for what was queued ahead of it at that point (other
large sessions first: the same priority ages alike, so they go in launch order), plus the time
for {large_env.cpus} CPUs to come free. How long that is depends on the load, not on the policy
alone: large sessions are {large_env.share:.0%} of the launches but {large_share:.0%} of the
CPU-hours here, and FCFS, which takes everyone in launch order, makes the worst of them wait
{fcfs_large:.0f} min on the same mornings. The default bound, {LARGE_BOUND_MINUTES:g} min, is
that order of wait with a margin (the priority policy's worst here: {worst_large:.0f} min).
{capacity_note}

Sweep (same mornings; worst case over the seeds):

{sweep_table}

{advice}

At reserve {at_reserve[0]["reserve"]:g}: {by_aging}.
A lower aging lets medium and large sessions pass small ones sooner, which the small sessions'
p95 pays for; a higher one ({top_aging:g} against {aging:g}) changes the small sessions' worst
p95 by {top_gain:+.1f} min here, and lengthens how long a large session lets a sustained stream
of small launches pass it ({gap} × aging). A waiting session's reservation holds back only what
ranks behind it, and every new launch of an environment p priority steps higher ranks ahead of
it for p × aging minutes, so the reserve time changes little unless it is longer than that.
Across the reserve times swept, the worst large wait moved by at most {large_move:.0f} min at
any aging, the worst small p95 by at most {small_move:.0f} min (at aging {most:g}).

Pool size (priority with aging {aging:g}, reserve {reserve:g}, against FCFS; memory 4 GB per
CPU; worst case over the seeds):

{cap_table}

With a pool far below the demand ({smallest["cpus"]} CPUs), the queue lasts until
{clock(smallest["fcfs"]["drained"])} with FCFS and {clock(smallest["priority"]["drained"])}
with priorities: waits grow with the backlog under every policy, and priorities only choose
who waits.

*Run time* of one simulated morning ({config["users"]} launches, seed {seeds[0]}, no
estimates), median (min–max) of {TIMING_RUNS}: priority {spread(timing["priority"])}, FCFS
{spread(timing["fcfs"])}. One `estimate_waits` call for the whole queue, fed as documented, at
the longest queue of seed {seeds[0]}'s morning: {longest}.

*Estimates* (priority policy, aging {aging:g}, reserve {reserve:g}, all seeds): at each launch,
`estimate_waits` for the newcomer against the wait that followed, for the newcomers that were
not admitted at once (those were told 0: {told_zero}). `estimate_waits` assumes no further
launches, so later launches of higher priority make it optimistic. It was fed
{len(ESTIMATORS)} ways:

{modes}

{est_table}

Raw figures: `bench/results/` (not in git).
"""
    return section, verdicts


if __name__ == "__main__":
    main()
