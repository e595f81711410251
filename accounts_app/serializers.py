"""JSON shapes of API tokens in REST API v1."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from portal.models import ApiToken


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    lifetime_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="How many days the token works: API_TOKEN_DAYS (90) unless given, at most "
        "API_TOKEN_MAX_DAYS (365).",
    )

    def validate_lifetime_days(self, value: int | None) -> int | None:
        # The maximum is the deployment's, read per request (never at import).
        if value is not None and value > settings.API_TOKEN_MAX_DAYS:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {settings.API_TOKEN_MAX_DAYS}."
            )
        return value


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The token itself: shown once, never again.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields
