"""JSON shapes of users in the staff part of REST API v1 (``/api/v1/admin/users/``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sessions_app.models import Session
from sessions_app.usage import DEFAULT_DAYS, MAX_DAYS


class UserQuerySerializer(serializers.Serializer[Any]):
    """The query of ``GET /api/v1/admin/users/``."""

    suspended = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only users with a suspension in force; false: only the others.",
    )
    search = serializers.CharField(
        required=False,
        max_length=150,
        help_text="Only users whose username or e-mail address contains this (any case).",
    )
    days = serializers.IntegerField(
        required=False,
        default=DEFAULT_DAYS,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"The usage figures cover the last this many UTC days (default {DEFAULT_DAYS}).",
    )


class UserSuspensionSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="suspension_id", read_only=True)
    reason = serializers.CharField(source="suspension_reason", read_only=True)
    since = serializers.DateTimeField(source="suspended_since", read_only=True)


class UserActiveSessionSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField(source="active_session_id", read_only=True)
    state = serializers.ChoiceField(
        source="active_session_state", choices=Session.State.choices, read_only=True
    )


class UserUsageSerializer(serializers.Serializer[Any]):
    days = serializers.IntegerField(read_only=True, help_text="The range of the figures, in days.")
    sessions_in_range = serializers.IntegerField(
        read_only=True, help_text="Sessions launched in the range."
    )
    sessions_total = serializers.IntegerField(read_only=True, help_text="Sessions ever launched.")
    cpu_hours = serializers.FloatField(read_only=True, help_text="CPU-hours used in the range.")
    memory_gb_hours = serializers.FloatField(
        read_only=True, help_text="Memory-GB-hours used in the range."
    )
    private_bytes = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Private storage at the latest measurement."
    )
    scratch_bytes = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Scratch storage at the latest measurement."
    )


class AdminUserSerializer(serializers.Serializer[Any]):
    """A user as staff see them: who, whether suspended (and why), their session now and their
    use of the service. The view passes ``days`` and ``hours`` (by user id) in the context."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)
    first_name = serializers.CharField(read_only=True)
    last_name = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    is_staff = serializers.BooleanField(read_only=True)
    is_superuser = serializers.BooleanField(read_only=True)
    date_joined = serializers.DateTimeField(read_only=True)
    last_login = serializers.DateTimeField(read_only=True, allow_null=True)
    suspended = serializers.BooleanField(read_only=True)
    suspension = serializers.SerializerMethodField(help_text="The suspension in force, or null.")
    active_session = serializers.SerializerMethodField(
        help_text="The user's active session, or null."
    )
    usage = serializers.SerializerMethodField()

    @extend_schema_field(UserSuspensionSerializer(allow_null=True))
    def get_suspension(self, user: Any) -> dict[str, Any] | None:
        return UserSuspensionSerializer(user).data if user.suspended else None

    @extend_schema_field(UserActiveSessionSerializer(allow_null=True))
    def get_active_session(self, user: Any) -> dict[str, Any] | None:
        if user.active_session_id is None:
            return None
        return UserActiveSessionSerializer(user).data

    @extend_schema_field(UserUsageSerializer)
    def get_usage(self, user: Any) -> dict[str, Any]:
        hours = self.context["hours"][user.pk]
        account = getattr(user, "storage_account", None)
        return UserUsageSerializer(
            {
                "days": self.context["days"],
                "sessions_in_range": user.sessions_in_range,
                "sessions_total": user.sessions_total,
                "cpu_hours": hours.cpu_hours,
                "memory_gb_hours": hours.memory_gb_hours,
                "private_bytes": account.private_bytes if account else None,
                "scratch_bytes": account.scratch_bytes if account else None,
            }
        ).data
