"""Staff's view of identities: users with their second factor, and every reset of one."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.models import OidcIdentity, SecondFactorReset
from accounts_app.second_factor import second_factor_reset_by_staff, totp_device_confirmed

User = get_user_model()

# django-otp's own admin pages show a device's secret key (as a QR code): anyone with admin
# access could copy a user's second factor. Staff reset devices instead of viewing them.
for model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


class PortalUserAdmin(UserAdmin):
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "is_staff",
        "has_second_factor",
        "last_login",
    )
    actions = ["reset_second_factor"]

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


admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)


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
