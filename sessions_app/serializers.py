"""JSON shapes of environments and sessions in REST API v1."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.api_serializers import FieldsBuiltOnce
from sessions_app.models import Environment, EnvironmentOption, Session
from sessions_app.options import OptionError, OptionValue, parse_option_value
from sessions_app.queue_changes import QUEUE_MOVE_MAX_STEPS
from sessions_app.selectors import (
    QueuePlace,
    session_queue_estimate,
    session_remaining_seconds,
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
    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    options = OptionsField(read_only=True)
    remaining_seconds = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField()
    queue_wait_seconds = serializers.SerializerMethodField(
        help_text="Estimated wait of a queued session, if every session ran to its time limit "
        "and nobody else launched; null when it cannot be told."
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "id",
            "state",
            "environment",
            "options",
            "created_at",
            "started_at",
            "expires_at",
            "remaining_seconds",
            "queue_position",
            "queue_wait_seconds",
            "url",
            "message",
            "reason",
            "library_status",
        ]
        read_only_fields = fields

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

    environment = serializers.CharField(max_length=64, help_text="The environment's slug.")
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
