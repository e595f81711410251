"""Staff suspend and reinstate users here; the record itself is never edited or deleted.

Suspending goes through ``suspension_impose`` (the session stops and the user is mailed);
reinstating has its own page, whose investigation note is required, and goes through
``suspension_lift``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts_app.ranks import outranks
from portal.json_values import has_nul
from suspension_app.mail import format_utc
from suspension_app.models import LIFT_PERMISSION, RuleEvent, Suspension
from suspension_app.selectors import suspension_active_for
from suspension_app.services import SuspensionError, suspension_impose, suspension_lift


class SuspendForm(forms.ModelForm):
    """The add form: whom to suspend, why (the user reads it), and optional evidence."""

    # Set by SuspensionAdmin.get_form: the staff member filling in the form.
    staff_member: Any = None

    class Meta:
        model = Suspension
        fields = ["user", "reason", "evidence"]

    def clean_user(self) -> Any:
        user = self.cleaned_data["user"]
        if self.staff_member is not None and user.pk == self.staff_member.pk:
            raise ValidationError("You cannot suspend yourself.")
        if user.is_superuser and not getattr(self.staff_member, "is_superuser", False):
            # A suspended superuser cannot reach the admin: only a peer may lock them out.
            raise ValidationError("Only a superuser can suspend a superuser.")
        if self.staff_member is not None and outranks(user, self.staff_member):
            # Nor may staff lock out a colleague who holds more than they do.
            raise ValidationError(
                "You cannot suspend an account that holds permissions you do not hold."
            )
        active = suspension_active_for(user)
        if active is not None:
            raise ValidationError(
                f"{user} is already suspended (since {format_utc(active.created_at)})."
            )
        return user

    def clean_evidence(self) -> Any:
        evidence = self.cleaned_data.get("evidence")
        if evidence in (None, ""):
            return {}
        if not isinstance(evidence, dict):
            raise ValidationError('Give the evidence as a JSON object, e.g. {"ticket": "123"}.')
        if has_nul(evidence):
            raise ValidationError("The evidence must not contain NUL characters (\\u0000).")
        return evidence


class ReinstateForm(forms.Form):
    note = forms.CharField(
        label="Investigation note",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="What the investigation found and why the user is reinstated. Kept for the "
        "record; not sent to the user.",
        error_messages={
            "required": "Write an investigation note: a suspension is lifted only after staff "
            "have investigated."
        },
    )


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "in force"), ("lifted", "lifted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


class OriginFilter(admin.SimpleListFilter):
    title = "imposed by"
    parameter_name = "origin"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rules = Suspension.objects.exclude(rule="").values_list("rule", flat=True).distinct()
        return [("staff", "staff")] + [(rule, f"rule {rule}") for rule in sorted(rules)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "staff":
            return queryset.filter(imposed_by__isnull=False)
        if value:
            return queryset.filter(rule=value)
        return queryset


class RuleEventInline(admin.TabularInline):
    """The events a suspension rests on, or that happened while it was in force."""

    model = RuleEvent
    fk_name = "suspension"
    extra = 0
    fields = ["occurred_at", "kind", "details"]
    readonly_fields = ["occurred_at", "kind", "details"]
    ordering = ["occurred_at", "pk"]
    verbose_name_plural = "rule events (evidence)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Suspension)
class SuspensionAdmin(admin.ModelAdmin):
    form = SuspendForm
    change_form_template = "suspension_app/admin/change_form.html"
    list_display = [
        "created_at",
        "user_history",
        "origin",
        "short_reason",
        "in_force",
        "lifted_at",
        "lifted_by",
    ]
    list_display_links = ["created_at"]
    list_filter = [StatusFilter, OriginFilter, "created_at"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user", "imposed_by", "lifted_by"]
    date_hierarchy = "created_at"
    raw_id_fields = ["user"]
    inlines = [RuleEventInline]

    @admin.display(description="user", ordering="user__username")
    def user_history(self, suspension: Suspension) -> SafeString:
        """The user's name, linking to all of their suspensions."""
        url = reverse("admin:suspension_app_suspension_changelist")
        return format_html(
            '<a href="{}?user__id__exact={}">{}</a>', url, suspension.user_id, suspension.user
        )

    @admin.display(description="by")
    def origin(self, suspension: Suspension) -> str:
        return suspension.imposed_by_display

    @admin.display(description="reason")
    def short_reason(self, suspension: Suspension) -> str:
        reason = suspension.reason
        return reason if len(reason) <= 80 else reason[:79] + "…"

    @admin.display(description="in force", boolean=True)
    def in_force(self, suspension: Suspension) -> bool:
        return suspension.is_active

    @admin.display(description="history")
    def history(self, suspension: Suspension) -> SafeString:
        user = suspension.user
        return format_html(
            '<a href="{}?user__id__exact={}">all suspensions of {}</a> · '
            '<a href="{}?user__id__exact={}">all rule events of {}</a>',
            reverse("admin:suspension_app_suspension_changelist"),
            user.pk,
            user,
            reverse("admin:suspension_app_ruleevent_changelist"),
            user.pk,
            user,
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["user", "reason", "evidence"]})]
        return [
            (None, {"fields": ["user", "history", "created_at", "origin", "reason", "evidence"]}),
            ("Reinstatement", {"fields": ["lifted_at", "lifted_by", "investigation_note"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["history", "origin"]

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[Any]]:
        return list(self.inlines) if obj is not None else []

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if issubclass(form, SuspendForm):
            # modelform_factory made a new class for this request: setting it here is safe.
            form.staff_member = request.user
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The record is never edited: staff reinstate through the "Reinstate" page.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.has_perm(LIFT_PERMISSION))

    def save_model(self, request: HttpRequest, obj: Suspension, form: Any, change: bool) -> None:
        # Never a plain save: the service stops the session and mails the user on commit.
        suspension = suspension_impose(
            user=form.cleaned_data["user"],
            reason=form.cleaned_data["reason"],
            imposed_by=request.user,  # type: ignore[arg-type]
            evidence=form.cleaned_data.get("evidence") or {},
        )
        obj.pk = suspension.pk
        obj.refresh_from_db()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_lift": self.has_lift_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        reinstate = path(
            "<path:object_id>/reinstate/",
            self.admin_site.admin_view(self.reinstate_view),
            name="suspension_app_suspension_reinstate",
        )
        # Before the defaults: their "<path:object_id>/" catch-all would take it otherwise.
        return [reinstate, *super().get_urls()]

    def reinstate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Lift one suspension, with the investigation note (required)."""
        suspension = self.get_object(request, unquote(object_id))
        if suspension is None:
            raise Http404(f"There is no suspension {object_id}.")
        if not self.has_lift_permission(request):
            raise PermissionDenied
        change_url = reverse("admin:suspension_app_suspension_change", args=[suspension.pk])
        if not suspension.is_active:
            self.message_user(request, "This suspension was already lifted.", messages.WARNING)
            return HttpResponseRedirect(change_url)
        form = ReinstateForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                suspension_lift(
                    suspension=suspension,
                    lifted_by=request.user,  # type: ignore[arg-type]
                    note=form.cleaned_data["note"],
                )
            except SuspensionError as exc:
                form.add_error("note" if exc.code == "note_required" else None, str(exc))
            else:
                self.log_change(request, suspension, "Reinstated.")
                self.message_user(
                    request,
                    f"{suspension.user} is reinstated and has been told by e-mail.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reinstate {suspension.user}",
            "subtitle": None,
            "opts": self.opts,
            "original": suspension,
            "suspension": suspension,
            "since": format_utc(suspension.created_at),
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "suspension_app/admin/reinstate.html", context)


@admin.register(RuleEvent)
class RuleEventAdmin(admin.ModelAdmin):
    """What other parts of the portal reported: read-only, never deleted."""

    list_display = ["occurred_at", "user", "kind", "suspension"]
    list_filter = ["kind", "occurred_at"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user", "suspension"]
    date_hierarchy = "occurred_at"
    fields = ["user", "kind", "occurred_at", "details", "suspension"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
