"""The local back-end's isolation, as the admin index shows it to staff."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

register = template.Library()


@register.inclusion_tag("admin/isolation_banner.html")
def isolation_banner() -> dict[str, Any]:
    """Which enforcement is in force; nothing for the Kubernetes back-end (pods isolate)."""
    if settings.SPAWNER != "local":
        return {"status": None}
    from sessions_app.spawners.isolation import isolation_status

    return {"status": isolation_status()}
