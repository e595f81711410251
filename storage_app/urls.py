"""URLs of the storage page, included at ``/storage/``."""

from __future__ import annotations

from django.urls import path

from storage_app import views

urlpatterns = [
    path("", views.storage_page, name="storage"),
]
