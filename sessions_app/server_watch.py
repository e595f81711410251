"""The server watch: a running session whose server dies ends within a second or two.

Each worker of the spawn queue runs this loop beside the start watcher
(``sessions_app.worker_steps``). It keeps the running sessions' server states
(:class:`RunningServers`), waits for a sign that one of the servers ended
(``Spawner.wait_for_changes``: a pidfd per server on one machine, a watch of the pods on
Kubernetes), polls the sessions named, and ends those whose server is gone as the reconcile
sweep does (:func:`sessions_app.reconcile.session_server_gone`: failed with the back-end's
reason, or expired when the back-end ended it at its deadline). Nothing here needs beat; the
reconcile sweep stays the backstop for a worker that was down.

The set is read again every ``REFRESH_SECONDS`` (the ids of the running sessions, one query,
and the states of the new ones only), so a session that started meanwhile, in this worker or
another, is watched within that time; a server that died before it was watched is seen at
the first wait, which names it at once. Several spawn workers watch the same sessions: the
change to failed is a conditional UPDATE, so one of them makes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sessions_app.models import Session
from sessions_app.reconcile import session_server_gone
from sessions_app.spawners.base import ServerStatus, Spawner
from sessions_app.spawners.base import State as ServerState

# How often the set of running sessions is read again, and the longest wait for a death.
REFRESH_SECONDS = 1.0
# The states of this many new sessions are read in one query.
READ_BATCH = 500


class RunningServers:
    """The running sessions one loop watches, by id, with their servers' states."""

    def __init__(self) -> None:
        self.states: dict[str, ServerState] = {}

    def refresh(self) -> None:
        """Read the set again: drop the sessions no longer running, add the new ones."""
        running = {
            str(pk)
            for pk in Session.objects.filter(state=Session.State.RUNNING).values_list(
                "pk", flat=True
            )
        }
        for key in self.states.keys() - running:
            del self.states[key]
        new = sorted(running - self.states.keys())
        for start in range(0, len(new), READ_BATCH):
            rows = Session.objects.filter(
                pk__in=new[start : start + READ_BATCH], state=Session.State.RUNNING
            ).values_list("pk", "spawner_state")
            self.states.update((str(pk), state) for pk, state in rows)

    def check(self, spawner: Spawner, keys: Iterable[str]) -> int:
        """Poll the servers of these sessions; end those that are gone. Returns how many."""
        ended = 0
        for key in sorted(set(keys) & self.states.keys()):
            state = self.states[key]
            result = spawner.poll(state)
            if result.status != ServerStatus.GONE:
                continue
            if session_server_gone(spawner, key, state, result):
                ended += 1
            del self.states[key]  # ended here or by someone else: a stop, another worker
        return ended


def watch_once(spawner: Spawner, servers: RunningServers, timeout: float) -> int:
    """One round of the loop: read the set again, wait up to ``timeout`` for a death, end the
    sessions whose server is gone. Returns how many ended."""
    servers.refresh()
    if not servers.states:
        return 0
    changed = spawner.wait_for_changes(servers.states, timeout)
    return servers.check(spawner, changed)
