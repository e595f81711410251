"""URLs of the terms pages, included at ``/terms/``."""

from __future__ import annotations

from django.urls import path

from terms_app import views

urlpatterns = [
    path("", views.terms_page, name="terms"),
]
