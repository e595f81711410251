"""Staff run environments and sessions here, and watch the queue: its own page lists the
waiting sessions in admission order, where staff move one up or down (its boost) or remove it
(through ``queue_move`` and ``queue_remove``). The usage page shows the figures of
``sessions_app.usage`` as charts and tables, and exports them as CSV."""

from __future__ import annotations

import csv
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from portal.admin_secrets import SecretFieldsAdmin
from sessions_app.admission import round_up_minutes
from sessions_app.charts import stacked_bar_chart
from sessions_app.models import Environment, EnvironmentOption, Session
from sessions_app.queue_changes import QueueError, queue_move, queue_remove
from sessions_app.selectors import queue_overview
from sessions_app.staff_stop import StaffStopError, session_stop_by_staff
from sessions_app.usage import DEFAULT_DAYS, usage_range, usage_report

# What of a session's spawner state the admin shows: where the server runs, never how to reach
# it (the state's ``token``, ``url`` and socket are the server's credentials and address).
BACK_END_SHOWN = ("backend", "namespace", "pod", "pid", "uid", "cgroup", "memory_mb")


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
        (
            "Kubernetes extras",
            {
                "classes": ["collapse"],
                "description": "Added to every pod of this environment, checked against the "
                "Kubernetes API schemas (docs/deployment.md: a GPU node pool, a data share).",
                "fields": [
                    "kube_node_selector",
                    "kube_tolerations",
                    "kube_extended_resources",
                    "kube_image_pull_secrets",
                    "kube_volumes",
                    "kube_volume_mounts",
                    "kube_env",
                ],
            },
        ),
    ]


@admin.register(Session)
class SessionAdmin(SecretFieldsAdmin):
    secret_fields = ("spawner_state",)
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
    # Everything the page shows, read-only. Never ``url`` or ``spawner_state``: they carry the
    # server's Jupyter token; ``back_end`` shows what of the state is safe to read.
    readonly_fields = [
        "id",
        "user",
        "environment",
        "options",
        "state",
        "reason",
        "message",
        "created_at",
        "admitted_at",
        "queue_boost",
        "start_requested_at",
        "started_at",
        "expires_at",
        "ended_at",
        "updated_at",
        "spawn_owner",
        "back_end",
        "library_status",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Sessions are created by launching, never by hand.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        # Sessions are records (usage and metrics count them); deleting an active one would
        # also free its share of the pool while its server still runs. Staff stop sessions.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        # ``change_session`` lets staff stop sessions and move or remove them in the queue,
        # through the services that keep the pool's admission honest; a session's row itself
        # is never edited by hand (an edited ``admitted_at`` or ``queue_boost`` would start a
        # session beyond the free capacity or jump the queue past the queue's bounds).
        if obj is not None:
            return False
        return super().has_change_permission(request)

    @admin.display(description="back-end")
    def back_end(self, session: Session) -> str:
        state = session.spawner_state if isinstance(session.spawner_state, dict) else {}
        shown = [
            f"{key}: {state[key]}" for key in BACK_END_SHOWN if state.get(key) not in (None, "")
        ]
        return ", ".join(shown) or "—"

    @admin.action(description="Stop the selected sessions", permissions=["change"])
    def stop_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        stopped = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                # The staff API's stop: the same reason, and who did it in the history.
                session_stop_by_staff(str(pk), by=request.user)  # type: ignore[arg-type]
            except StaffStopError:
                continue  # already ended
            stopped += 1
        self.message_user(request, f"Asked {stopped} session(s) to stop.", level=messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        queue = [
            path(
                "queue/",
                self.admin_site.admin_view(self.queue_view),
                name="sessions_app_session_queue",
            ),
            path(
                "queue/<uuid:session_id>/move/",
                self.admin_site.admin_view(self.queue_move_view),
                name="sessions_app_session_queue_move",
            ),
            path(
                "queue/<uuid:session_id>/remove/",
                self.admin_site.admin_view(self.queue_remove_view),
                name="sessions_app_session_queue_remove",
            ),
            path(
                "usage/",
                self.admin_site.admin_view(self.usage_view),
                name="sessions_app_session_usage",
            ),
        ]
        # Before the defaults: their "<path:object_id>/" catch-all would take them otherwise.
        return [*queue, *super().get_urls()]

    def _queue_url(self) -> str:
        return reverse("admin:sessions_app_session_queue", current_app=self.admin_site.name)

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "queue_url": self._queue_url(),
            **extra,
        }

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        """The waiting sessions in the order admission takes them."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        rows = [
            {"place": place, "estimated_minutes": round_up_minutes(place.estimated_wait_seconds)}
            for place in queue_overview(now)
        ]
        context = self._context(
            request,
            "Queue",
            rows=rows,
            now=now,
            can_change=self.has_change_permission(request),
            pool_cpus=settings.SESSION_POOL_CPUS,
            pool_memory_gb=round(settings.SESSION_POOL_MEMORY_MB / 1024, 1),
            aging_minutes=settings.QUEUE_AGING_MINUTES,
        )
        return TemplateResponse(request, "admin/sessions_app/session/queue.html", context)

    def queue_move_view(self, request: HttpRequest, session_id: UUID) -> HttpResponse:
        """Move one waiting session: ``steps`` 1 (up) or -1 (down)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            steps = int(request.POST.get("steps", ""))
            session = queue_move(str(session_id), steps, by=request.user)  # type: ignore[arg-type]
        except ValueError:
            self.message_user(request, "Say how many steps to move it.", messages.ERROR)
        except QueueError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            direction = "up" if steps > 0 else "down"
            self.message_user(
                request,
                f"Moved {session.user}'s session {direction} (boost {session.queue_boost:+d}).",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._queue_url())

    def queue_remove_view(self, request: HttpRequest, session_id: UUID) -> HttpResponse:
        """Remove one waiting session, after a confirmation page."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                session = queue_remove(str(session_id), by=request.user)  # type: ignore[arg-type]
            except QueueError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(
                    request,
                    f"Removed {session.user}'s session from the queue.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(self._queue_url())
        waiting = (
            Session.objects.select_related("user", "environment")
            .filter(pk=session_id, state=Session.State.QUEUED, admitted_at__isnull=True)
            .first()
        )
        if waiting is None:
            self.message_user(
                request, f"Session {session_id} is not waiting in the queue.", messages.WARNING
            )
            return HttpResponseRedirect(self._queue_url())
        context = self._context(request, "Remove from the queue", session=waiting)
        return TemplateResponse(request, "admin/sessions_app/session/queue_remove.html", context)

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Usage over the last ``days`` UTC days (default 30) as charts and tables; with
        ``?format=csv`` the per-day, per-environment table as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            days = int(request.GET.get("days", DEFAULT_DAYS))
        except ValueError:
            days = DEFAULT_DAYS
        report = usage_report(usage_range(timezone.now(), days))
        span = report.range
        if request.GET.get("format") == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = (
                f'attachment; filename="usage-{span.first:%Y%m%d}-{span.last:%Y%m%d}.csv"'
            )
            writer = csv.writer(response)
            writer.writerow(
                ["date", "environment", "sessions_started", "cpu_hours", "memory_gb_hours"]
            )
            for row in report.rows:
                writer.writerow(
                    [
                        row.day.isoformat(),
                        row.environment,
                        row.sessions_started,
                        f"{row.cpu_hours:.2f}",
                        f"{row.memory_gb_hours:.2f}",
                    ]
                )
            return response
        labels = [f"{day:%d %b}" for day in span.days]
        context = self._context(
            request,
            "Usage",
            report=report,
            days=len(span.days),
            sessions_chart=stacked_bar_chart(
                labels, report.series("sessions_started"), "Sessions started per day", "sessions"
            ),
            cpu_chart=stacked_bar_chart(
                labels, report.series("cpu_hours"), "CPU-hours per day", "CPU-hours"
            ),
            memory_chart=stacked_bar_chart(
                labels, report.series("memory_gb_hours"), "Memory-GB-hours per day", "GB-hours"
            ),
            busy_rows=[row for row in report.rows if row.sessions_started or row.cpu_hours],
            usage_url=reverse("admin:sessions_app_session_usage", current_app=self.admin_site.name),
        )
        return TemplateResponse(request, "admin/sessions_app/session/usage.html", context)
