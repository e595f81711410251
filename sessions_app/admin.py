from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from sessions_app.models import Environment, EnvironmentOption, Session
from sessions_app.services import session_request_stop


class EnvironmentOptionInline(admin.TabularInline):
    model = EnvironmentOption
    extra = 0
    fields = ["order", "name", "label", "kind", "choices", "default", "min_value", "max_value"]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "memory_mb",
        "cpus",
        "max_duration_minutes",
        "priority",
        "enabled",
        "order",
    ]
    list_editable = ["enabled", "order"]
    list_filter = ["enabled"]
    search_fields = ["name", "slug", "use_case"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [EnvironmentOptionInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "use_case", "enabled", "order"]}),
        (
            "Resources",
            {"fields": ["memory_mb", "cpus", "max_duration_minutes", "priority", "max_concurrent"]},
        ),
        ("Who may launch it", {"fields": ["allowed_groups"]}),
        ("Back-end", {"fields": ["image", "priority_class_name", "command"]}),
    ]


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "environment",
        "state",
        "reason",
        "created_at",
        "started_at",
        "expires_at",
        "ended_at",
    ]
    list_filter = ["state", "environment", "reason"]
    search_fields = ["user__username", "user__email", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "environment"]
    actions = ["stop_sessions"]
    readonly_fields = [
        "id",
        "user",
        "environment",
        "options",
        "state",
        "reason",
        "message",
        "created_at",
        "started_at",
        "expires_at",
        "ended_at",
        "updated_at",
        "spawner_state",
    ]
    exclude = ["url"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Sessions are created by launching, never by hand.
        return False

    @admin.action(description="Stop the selected sessions")
    def stop_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        stopped = sum(
            session_request_stop(str(pk), Session.Reason.STAFF_STOPPED)
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"Asked {stopped} session(s) to stop.", level=messages.SUCCESS)
