"""JSON shapes of ``GET /api/v1/storage/`` and its cleanup history."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from storage_app.models import RemovalRecord


class AreaSerializer(serializers.Serializer[Any]):
    used_bytes = serializers.IntegerField(
        allow_null=True, help_text="Bytes allocated on disk at the latest scan; null: never."
    )
    files = serializers.IntegerField(allow_null=True)
    quota_bytes = serializers.IntegerField()
    measured_at = serializers.DateTimeField(allow_null=True)
    over_quota = serializers.BooleanField()


class RemovalSerializer(serializers.ModelSerializer[RemovalRecord]):
    path = serializers.CharField(
        read_only=True,
        help_text="Relative to the area's folder. Bytes that are not UTF-8, control characters "
        "and the backslash are written \\xNN; other invisible characters \\uXXXX. For a "
        'private storage deleted for lack of use: ".".',
    )
    size = serializers.IntegerField(read_only=True, help_text="Bytes.")

    class Meta:
        model = RemovalRecord
        fields = ["area", "path", "size", "mtime", "rule", "removed_at"]
        read_only_fields = fields


class StorageSerializer(serializers.Serializer[Any]):
    private = AreaSerializer(help_text="The private home (service rule 7).")
    scratch = AreaSerializer(help_text="Scratch (service rule 8).")
    delete_after = serializers.DateTimeField(
        allow_null=True,
        help_text="The private storage is deleted after this moment unless a session is "
        "started before; null: no deadline yet.",
    )
    last_session_at = serializers.DateTimeField(allow_null=True)
    retention_exempt = serializers.BooleanField(
        help_text="Staff exempted this account: its private storage is never deleted for lack "
        "of use."
    )
    private_deleted_at = serializers.DateTimeField(allow_null=True)
    retention_days = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField())
    removals_count = serializers.IntegerField(help_text="Entries in the cleanup history.")
    recent_removals = RemovalSerializer(
        many=True, help_text="The newest entries of the cleanup history (at most 20)."
    )
    removals = serializers.URLField(help_text="The whole cleanup history, newest first, paginated.")
