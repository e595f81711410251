"""JSON shapes of suspensions in the staff part of REST API v1."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from portal.json_values import has_nul
from suspension_app.models import Suspension


class SuspensionSerializer(serializers.ModelSerializer[Suspension]):
    """A suspension as staff see it (the investigation note included)."""

    user = serializers.CharField(source="user.get_username", read_only=True)
    imposed_by = serializers.SerializerMethodField(
        help_text="The staff member's username, or null when a rule imposed it."
    )
    lifted_by = serializers.SerializerMethodField()
    active = serializers.BooleanField(source="is_active", read_only=True)
    evidence = serializers.DictField(read_only=True)

    class Meta:
        model = Suspension
        fields = [
            "id",
            "user",
            "created_at",
            "imposed_by",
            "rule",
            "reason",
            "evidence",
            "active",
            "lifted_at",
            "lifted_by",
            "investigation_note",
        ]
        read_only_fields = fields

    def get_imposed_by(self, suspension: Suspension) -> str | None:
        return suspension.imposed_by.get_username() if suspension.imposed_by else None

    def get_lifted_by(self, suspension: Suspension) -> str | None:
        return suspension.lifted_by.get_username() if suspension.lifted_by else None


class SuspensionQuerySerializer(serializers.Serializer[Any]):
    """The query of ``GET /api/v1/admin/suspensions/``."""

    active = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="1: only suspensions in force; 0: only lifted ones.",
    )
    user = serializers.CharField(required=False, help_text="Only this user's (username).")


class SuspendSerializer(serializers.Serializer[Any]):
    """The body of ``POST /api/v1/admin/suspensions/``."""

    user = serializers.CharField(help_text="The username of the user to suspend.")
    reason = serializers.CharField(help_text="Why; shown to the user and sent to them by e-mail.")
    evidence = serializers.DictField(
        required=False, default=dict, help_text="Any JSON object, kept for the investigation."
    )

    def validate_evidence(self, value: dict[str, Any]) -> dict[str, Any]:
        if has_nul(value):
            raise serializers.ValidationError("must not contain NUL characters (\\u0000).")
        return value


class LiftSerializer(serializers.Serializer[Any]):
    """The body of ``POST /api/v1/admin/suspensions/<id>/lift/``."""

    # Blank passes here: the service refuses it with the stable code ``note_required``.
    note = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text="The investigation note (required, internal: not sent to the user).",
    )
