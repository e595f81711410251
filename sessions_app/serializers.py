"""JSON shapes of environments and sessions in REST API v1."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.api_serializers import FieldsBuiltOnce
from sessions_app import history
from sessions_app.models import Environment, EnvironmentOption, Session
from sessions_app.options import OptionError, OptionValue, parse_option_value
from sessions_app.queue_changes import QUEUE_MOVE_MAX_STEPS
from sessions_app.selectors import (
    QueuePlace,
    session_phase,
    session_queue_estimate,
    session_remaining_seconds,
)
from sessions_app.usage import (
    DEFAULT_DAYS,
    MAX_DAYS,
    TOP_USERS,
    DayRow,
    StorageTotals,
    UsageReport,
    UserHours,
    WaitRow,
)

# A waiting request holds a web worker thread; half a minute keeps that bounded.
MAX_WAIT_SECONDS = 30

_OPTION_VALUE_SCHEMA: dict[str, Any] = {
    "oneOf": [{"type": "boolean"}, {"type": "integer"}, {"type": "string"}]
}


@extend_schema_field({"type": "object", "additionalProperties": _OPTION_VALUE_SCHEMA})
class OptionsField(serializers.JSONField):
    """Option values by name. Any JSON on input: the launch service checks it against the
    environment's schema, so every option error (also "not an object") has the one code
    ``invalid_options``."""


class EnvironmentOptionSerializer(FieldsBuiltOnce, serializers.ModelSerializer[EnvironmentOption]):
    """An option the caller may set when launching the environment, with its type and
    bounds."""

    type = serializers.CharField(
        source="kind", read_only=True, help_text="choice, boolean, integer or text."
    )
    choices = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The allowed values of a choice."
    )
    # Not get_default: that name is Field.get_default, which DRF calls for a missing input.
    default = serializers.SerializerMethodField(method_name="get_typed_default")
    min = serializers.IntegerField(source="min_value", read_only=True, allow_null=True)
    max = serializers.IntegerField(source="max_value", read_only=True, allow_null=True)

    class Meta:
        model = EnvironmentOption
        fields = ["name", "label", "type", "choices", "default", "min", "max", "help_text"]
        read_only_fields = fields

    @extend_schema_field({**_OPTION_VALUE_SCHEMA, "nullable": True})
    def get_typed_default(self, option: EnvironmentOption) -> OptionValue | None:
        # Stored as text; clients want the value in the option's type. A default that staff
        # saved without model validation and that does not fit is reported as null rather than
        # failing the whole list: launching without that option then says what is wrong.
        try:
            return parse_option_value(option, option.default)
        except OptionError:
            return None


class EnvironmentSerializer(FieldsBuiltOnce, serializers.ModelSerializer[Environment]):
    """An environment the caller may launch: its resources, time limit and options."""

    options = EnvironmentOptionSerializer(many=True, read_only=True)

    class Meta:
        model = Environment
        fields = [
            "slug",
            "name",
            "use_case",
            "memory_mb",
            "cpus",
            "max_duration_minutes",
            "priority",
            "options",
        ]
        read_only_fields = fields


class SessionSerializer(FieldsBuiltOnce, serializers.ModelSerializer[Session]):
    """One of the caller's sessions: where it stands (``state``, progress in ``message``),
    its place in the queue, its time left and, once ended, how (``state``), why (``reason``,
    and ``message`` in words) and when (``ended_at``)."""

    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    options = OptionsField(read_only=True)
    state = serializers.ChoiceField(
        choices=Session.State.choices,
        read_only=True,
        help_text="Where the session stands in the portal's records. ``queued`` covers both a "
        "session that waits for room and one already admitted (``admitted_at``) that waits "
        "for a worker to start it: ``phase`` tells them apart.",
    )
    phase = serializers.SerializerMethodField(
        help_text="The state as the session page shows it: ``state``, except that a queued "
        "session that does not wait for room is ``starting`` (admitted, or fitting now: the "
        "next admission pass takes it). One of ``state``'s values; only a ``queued`` phase "
        "has a place in the queue on the page."
    )
    state_label = serializers.SerializerMethodField(
        help_text="``phase`` in the words the session page uses."
    )
    admitted_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When admission gave the session its room; null while it waits (or if it "
        "ended before).",
    )
    remaining_seconds = serializers.SerializerMethodField(
        help_text="Whole seconds until the time limit while the session is active and its "
        "server has started (0 once passed); null otherwise."
    )
    queue_position = serializers.SerializerMethodField(
        help_text="A session's place in the admission order (1: the next admitted) until "
        "admission gives it room; null once admitted or when it is not queued. With ``phase`` "
        "``starting`` (it fits now) the place is a formality the page does not show: the next "
        "admission pass takes it."
    )
    queue_wait_seconds = serializers.SerializerMethodField(
        help_text="Estimated seconds until a queued session is admitted (0: it fits now): "
        "the admission policy replayed over the coming session ends, each running or "
        "admitted session taken to end when sessions of its environment usually end (the "
        "median length of its environment's last 200 sessions that ran, counted from its "
        "start; at most its time limit, which stands in until there are any), each waiting "
        "one to last that long once admitted, nobody else launching (a later launch of "
        "higher priority makes it longer). The page shows it rounded up to whole minutes. "
        "Null when the session is not queued, or could never fit."
    )
    url = serializers.SerializerMethodField(
        help_text="Where the owner opens the server (with its access token): only while it is "
        "running; null otherwise."
    )

    class Meta:
        model = Session
        fields = [
            "id",
            "state",
            "phase",
            "state_label",
            "environment",
            "options",
            "created_at",
            "admitted_at",
            "started_at",
            "expires_at",
            "ended_at",
            "remaining_seconds",
            "queue_position",
            "queue_wait_seconds",
            "url",
            "message",
            "reason",
            "library_status",
        ]
        read_only_fields = fields

    # A plain string in the document: an enum of the same values as ``state`` would be a
    # second component for one choice set. Its values are ``state``'s.
    @extend_schema_field({"type": "string"})
    def get_phase(self, session: Session) -> str:
        return session_phase(session, self._estimate(session))

    def get_state_label(self, session: Session) -> str:
        return str(Session.State(self.get_phase(session)).label)

    def get_remaining_seconds(self, session: Session) -> int | None:
        return session_remaining_seconds(session)

    def get_queue_position(self, session: Session) -> int | None:
        estimate = self._estimate(session)
        return estimate[0] if estimate else None

    def get_queue_wait_seconds(self, session: Session) -> int | None:
        estimate = self._estimate(session)
        return round(estimate[1]) if estimate and estimate[1] is not None else None

    def _estimate(self, session: Session) -> tuple[int, float | None] | None:
        # Both fields come from one estimate (it replays the queue).
        cache: dict[Any, tuple[int, float | None] | None] = self.__dict__.setdefault(
            "_queue_estimates", {}
        )
        if session.pk not in cache:
            cache[session.pk] = session_queue_estimate(session)
        return cache[session.pk]

    def get_url(self, session: Session) -> str | None:
        # The row keeps the last URL while the server stops; only a running server answers.
        return session.open_url or None


class SessionQuerySerializer(serializers.Serializer[Any]):
    """The query of ``GET /api/v1/session/``."""

    wait = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        help_text="Wait up to this many seconds for a queued or starting session to be running "
        "(or to end) before answering.",
    )


class LaunchSerializer(serializers.Serializer[Any]):
    """The body of ``POST /api/v1/session/``."""

    # A blank slug is refused (allow_blank=False); min_length puts it in the document too,
    # which drf-spectacular leaves out for shared request and response components.
    environment = serializers.CharField(
        min_length=1, max_length=64, help_text="The environment's slug."
    )
    options = OptionsField(
        required=False,
        allow_null=True,
        help_text="Option values by name; omitted options take their defaults.",
    )


class QueuePlaceSerializer(serializers.Serializer[QueuePlace]):
    """A waiting session as staff see it (``GET /api/v1/admin/queue/``)."""

    id = serializers.UUIDField(source="session.pk", read_only=True)
    user = serializers.CharField(source="session.user.get_username", read_only=True)
    environment = serializers.CharField(source="session.environment.slug", read_only=True)
    position = serializers.IntegerField(read_only=True, help_text="1: the next to be admitted.")
    queued_at = serializers.DateTimeField(source="session.created_at", read_only=True)
    waited_seconds = serializers.SerializerMethodField()
    effective_priority = serializers.FloatField(
        read_only=True,
        help_text="The environment's priority + boost + one step per QUEUE_AGING_MINUTES "
        "waited; the higher, the sooner.",
    )
    boost = serializers.IntegerField(
        source="session.queue_boost", read_only=True, help_text="Staff's moves so far."
    )
    estimated_wait_seconds = serializers.SerializerMethodField(
        help_text="Estimated wait from now, as the owner is told; null when it cannot be told."
    )

    def get_waited_seconds(self, place: QueuePlace) -> int:
        return int(place.waited_seconds)

    def get_estimated_wait_seconds(self, place: QueuePlace) -> int | None:
        wait = place.estimated_wait_seconds
        return None if wait is None else round(wait)


class QueueMoveSerializer(serializers.Serializer[Any]):
    """The body of ``POST /api/v1/admin/queue/<id>/move/``."""

    steps = serializers.IntegerField(
        min_value=-QUEUE_MOVE_MAX_STEPS,
        max_value=QUEUE_MOVE_MAX_STEPS,
        help_text="Priority steps to move the session forward (negative: back), not 0; each "
        "step is worth QUEUE_AGING_MINUTES of waiting.",
    )

    def validate_steps(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("Give a number of steps other than 0.")
        return value


class SessionListQuerySerializer(serializers.Serializer[Any]):
    """The query of ``GET /api/v1/sessions/``."""

    state = serializers.ChoiceField(
        choices=Session.State.choices,
        required=False,
        help_text="Only sessions in this state; another value is a 400.",
    )


class AdminSessionQuerySerializer(SessionListQuerySerializer):
    """The query of ``GET /api/v1/admin/sessions/``."""

    active = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only active sessions (queued, starting, running, stopping); false: "
        "only ended ones.",
    )
    user = serializers.CharField(
        required=False, max_length=150, help_text="Only this user's sessions (username)."
    )
    environment = serializers.CharField(
        required=False, max_length=64, help_text="Only sessions of this environment (slug)."
    )


class AdminSessionSerializer(FieldsBuiltOnce, serializers.ModelSerializer[Session]):
    """A session as staff see it: whose, where it stands and how it ended. Never its server's
    address or back-end state (they carry the owner's Jupyter token)."""

    user: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    options = OptionsField(read_only=True)

    class Meta:
        model = Session
        fields = [
            "id",
            "user",
            "environment",
            "state",
            "reason",
            "message",
            "options",
            "created_at",
            "admitted_at",
            "started_at",
            "expires_at",
            "ended_at",
        ]
        read_only_fields = fields


class UsageQuerySerializer(serializers.Serializer[Any]):
    """The query of ``GET /api/v1/admin/usage/``."""

    days = serializers.IntegerField(
        required=False,
        default=DEFAULT_DAYS,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"The last this many UTC days, today included (default {DEFAULT_DAYS}).",
    )


class UsageDaySerializer(serializers.Serializer[DayRow]):
    day = serializers.DateField(read_only=True)
    environment = serializers.CharField(read_only=True, help_text="The environment's slug.")
    sessions_started = serializers.IntegerField(read_only=True)
    cpu_hours = serializers.FloatField(read_only=True)
    memory_gb_hours = serializers.FloatField(read_only=True)


class UsageWaitSerializer(serializers.Serializer[WaitRow]):
    environment = serializers.CharField(read_only=True)
    admitted = serializers.IntegerField(
        read_only=True, help_text="Sessions admitted in the range (queued before or in it)."
    )
    median_seconds = serializers.FloatField(read_only=True, help_text="From launch to admission.")
    p95_seconds = serializers.FloatField(read_only=True, help_text="The 95th percentile.")


class UsageFailureSerializer(serializers.Serializer[Any]):
    reason = serializers.ChoiceField(choices=Session.Reason.choices, read_only=True)
    reason_label = serializers.CharField(read_only=True, help_text="The reason, for people.")
    count = serializers.IntegerField(read_only=True)


class UsageUserSerializer(serializers.Serializer[UserHours]):
    username = serializers.CharField(read_only=True)
    cpu_hours = serializers.FloatField(read_only=True)
    memory_gb_hours = serializers.FloatField(read_only=True)


class StorageTotalsSerializer(serializers.Serializer[StorageTotals]):
    accounts_measured = serializers.IntegerField(
        read_only=True, help_text="Accounts whose storage was measured at least once."
    )
    private_bytes = serializers.IntegerField(read_only=True)
    scratch_bytes = serializers.IntegerField(read_only=True)


class UsageSerializer(serializers.Serializer[UsageReport]):
    """What the admin's usage page shows (``sessions_app.usage``), as JSON."""

    first = serializers.DateField(source="range.first", read_only=True, help_text="First day.")
    last = serializers.DateField(source="range.last", read_only=True, help_text="Today (UTC).")
    environments = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="The slugs of the environments with any figure, in the environments' order.",
    )
    rows = UsageDaySerializer(
        many=True,
        read_only=True,
        help_text="Every day × every listed environment (zeros included): sessions started "
        "and resource-hours used that day (a session's hours split across the days it spans).",
    )
    waits = UsageWaitSerializer(many=True, read_only=True, help_text="Queue waits by environment.")
    failures = serializers.SerializerMethodField(
        help_text="Failed sessions launched in the range, by reason, most first."
    )
    top_users = UsageUserSerializer(
        many=True, read_only=True, help_text=f"The {TOP_USERS} users with most CPU-hours."
    )
    storage = StorageTotalsSerializer(
        read_only=True, help_text="The latest measurement of every account, summed."
    )

    @extend_schema_field(UsageFailureSerializer(many=True))
    def get_failures(self, report: UsageReport) -> list[dict[str, Any]]:
        # The report counts by label (what the page shows); programs want the stable code too.
        codes = {str(label): value for value, label in Session.Reason.choices}
        return [
            {"reason": codes.get(label, ""), "reason_label": label, "count": count}
            for label, count in report.failures
        ]


class SessionHistorySerializer(SessionSerializer):
    """A session as the history tells it (``GET /api/v1/sessions/`` and ``…/sessions/<id>/``):
    every field of the active session's answer, and how it ended in words, why a failure
    failed, the last lines of its server's log and how long it ran; the history page
    (``/sessions/``) says the same (``sessions_app/history.py``)."""

    reason_label = serializers.SerializerMethodField(
        help_text='``reason`` in words ("time limit reached"); empty while there is none.'
    )
    ended_how = serializers.SerializerMethodField(
        help_text="How the session ended, in the history page's words (\"Time limit "
        'reached"); for an active one, where it stands ("Still running").'
    )
    failure_detail = serializers.SerializerMethodField(
        help_text="Why a failed session failed (the start-up's last progress line, or the "
        "back-end's message), without the log's lines (``log_tail``); null unless failed."
    )
    log_tail = serializers.SerializerMethodField(
        help_text="The last lines (at most 20) of the server's log when the session ended, as "
        "its owner may read them: local paths cut to the file name, URLs to their path, "
        "secrets and control characters removed. Empty when the server left none (never "
        "started, or a back-end that keeps no log)."
    )
    duration_seconds = serializers.SerializerMethodField(
        help_text="Whole seconds its server ran, from ``started_at`` to ``ended_at`` (to now "
        "while it runs); null when it never started."
    )

    class Meta(SessionSerializer.Meta):
        fields = [
            *SessionSerializer.Meta.fields,
            "reason_label",
            "ended_how",
            "failure_detail",
            "log_tail",
            "duration_seconds",
        ]
        read_only_fields = fields

    def get_reason_label(self, session: Session) -> str:
        return history.reason_label(session)

    def get_ended_how(self, session: Session) -> str:
        return history.ended_how(session)

    def get_failure_detail(self, session: Session) -> str | None:
        return history.failure_detail(session) or None

    def get_log_tail(self, session: Session) -> list[str]:
        return history.log_lines(session)

    def get_duration_seconds(self, session: Session) -> int | None:
        return history.duration_seconds(session)
