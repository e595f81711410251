"""Staff's view of identities: users with their second factor, and every reset of one.

Staff grant nothing they do not hold: a staff member who is not a superuser cannot make anyone
staff or superuser, cannot give a user a group or permission (nor a group a permission) that
carries a permission they lack, and cannot change, delete or reset the second factor of an
account that holds more than they do (a superuser's above all): a new password or second factor
on such an account would be a way into it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.access_grants import has_portal_access
from accounts_app.admin_access import ADD_USER_HELP, PortalAccessActions, PortalAccessFilter
from accounts_app.models import OidcIdentity, SecondFactorReset
from accounts_app.ranks import outranks, permissions_not_held
from accounts_app.second_factor import second_factor_reset_by_staff, totp_device_confirmed

User = get_user_model()

# django-otp's own admin pages show a device's secret key (as a QR code): anyone with admin
# access could copy a user's second factor. Staff reset devices instead of viewing them.
for model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


def _added(form: forms.ModelForm, name: str) -> list[Any]:
    """What the form's many-to-many field ``name`` adds to the instance's current choice."""
    chosen = form.cleaned_data.get(name)
    if chosen is None:
        return []
    current = set(getattr(form.instance, name).all()) if form.instance.pk else set()
    return [item for item in chosen if item not in current]


def _grant_guard(form: type[forms.ModelForm], editor: Any) -> type[forms.ModelForm]:
    """``form`` refusing to add a group or permission that carries a permission ``editor``
    does not hold (fields ``groups``, ``user_permissions``, ``permissions``, where present)."""

    class GrantGuardForm(form):  # type: ignore[valid-type,misc]
        def clean(self) -> dict[str, Any] | None:
            cleaned = super().clean()
            for name in ("user_permissions", "permissions"):
                missing = permissions_not_held(editor, _added(self, name))
                if missing:
                    self.add_error(
                        name, "You cannot grant what you do not hold: " + ", ".join(missing)
                    )
            groups = _added(self, "groups")
            if groups:
                carried = Permission.objects.filter(group__in=groups).select_related("content_type")
                missing = permissions_not_held(editor, carried)
                if missing:
                    self.add_error(
                        "groups",
                        "You cannot grant what you do not hold: these groups carry "
                        + ", ".join(missing),
                    )
            return cleaned

    return GrantGuardForm


class PortalUserAdmin(PortalAccessActions, UserAdmin):
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "portal_access",
        "is_staff",
        "has_second_factor",
        "last_login",
    )
    # "Portal access" first: who may use the portal is what the operator looks for; the
    # group filter ("By groups") is UserAdmin's own.
    list_filter = (PortalAccessFilter, *UserAdmin.list_filter)
    actions = ["grant_portal_access", "revoke_portal_access", "reset_second_factor"]
    add_fieldsets = ((None, {**UserAdmin.add_fieldsets[0][1], "description": ADD_USER_HELP}),)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .annotate(_portal_access=ExpressionWrapper(has_portal_access(), BooleanField()))
        )

    @admin.display(boolean=True, description="portal access", ordering="_portal_access")
    def portal_access(self, user: Any) -> bool:
        return bool(user._portal_access)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not request.user.is_superuser:
            # Staff status opens the admin; superuser status is every permission at once.
            fields += ["is_staff", "is_superuser"]
        return fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return form if obj is None else _grant_guard(form, request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and outranks(obj, request.user):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and outranks(obj, request.user):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The list's "delete" action asks has_delete_permission without an object.
        kept = [user.pk for user in queryset if outranks(user, request.user)]
        if kept:
            self.message_user(
                request,
                f"{len(kept)} account(s) hold more than you do and were kept.",
                messages.WARNING,
            )
        super().delete_queryset(request, queryset.exclude(pk__in=kept))

    @admin.display(boolean=True, description="second factor")
    def has_second_factor(self, user: object) -> bool:
        return totp_device_confirmed(user) is not None  # type: ignore[arg-type]

    @admin.action(
        description="Reset the second factor (the user sets up a new one)",
        permissions=["change"],
    )
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        if (
            not getattr(request.user, "is_superuser", False)
            and queryset.filter(is_superuser=True).exists()
        ):
            self.message_user(
                request, "Only a superuser can reset a superuser's second factor.", messages.ERROR
            )
            return
        if any(outranks(user, request.user) for user in queryset):
            self.message_user(
                request,
                "You cannot reset the second factor of an account that holds permissions you "
                "do not hold.",
                messages.ERROR,
            )
            return
        if queryset.filter(pk=request.user.pk).exists():
            # The reset ends the account's browser sessions, this request's among them; a
            # person resets their own second factor from their account page.
            self.message_user(
                request,
                "You cannot reset your own second factor here: another staff member can.",
                messages.ERROR,
            )
            return
        for user in queryset:
            second_factor_reset_by_staff(
                user=user,
                reset_by=request.user,  # type: ignore[arg-type]
                note="Reset from the admin's user list.",
            )
        self.message_user(
            request,
            f"Second factor reset for {queryset.count()} user(s); recorded.",
            messages.SUCCESS,
        )


class PortalGroupAdmin(GroupAdmin):
    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        return _grant_guard(super().get_form(request, obj, change=change, **kwargs), request.user)


admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)
if admin.site.is_registered(Group):
    admin.site.unregister(Group)
admin.site.register(Group, PortalGroupAdmin)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SecondFactorReset)
class SecondFactorResetAdmin(ReadOnlyAdmin):
    list_display = ("user", "method", "reset_by", "reset_at", "note")
    list_filter = ("method",)
    search_fields = ("user__username", "reset_by__username")
    date_hierarchy = "reset_at"


@admin.register(OidcIdentity)
class OidcIdentityAdmin(ReadOnlyAdmin):
    list_display = ("user", "subject", "created_at", "last_login_at")
    search_fields = ("user__username", "subject")
