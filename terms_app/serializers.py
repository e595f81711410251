"""JSON shapes of the terms of use in REST API v1."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from terms_app.models import TermsAcceptance, TermsVersion
from terms_app.rendering import render_terms_markdown
from terms_app.selectors import terms_has_accepted


class TermsVersionSerializer(serializers.ModelSerializer[TermsVersion]):
    """The current terms; ``accepted`` is about the user in ``context["request"]``."""

    body_html = serializers.SerializerMethodField()
    accepted = serializers.SerializerMethodField()

    class Meta:
        model = TermsVersion
        fields = ["version", "title", "body", "body_html", "published_at", "accepted"]
        read_only_fields = fields

    def get_body_html(self, terms: TermsVersion) -> str:
        # The same sanitised rendering as the web page, so clients show what users accept.
        return str(render_terms_markdown(terms.body))

    def get_accepted(self, terms: TermsVersion) -> bool:
        return terms_has_accepted(self.context["request"].user, terms)


class TermsAcceptSerializer(serializers.Serializer[Any]):
    """The body of ``POST /api/v1/terms/accept/``."""

    # No length limit: an over-long version is just another unknown one (409, not 400).
    version = serializers.CharField(help_text="The version being accepted; it must be current.")


class TermsAcceptanceSerializer(serializers.ModelSerializer[TermsAcceptance]):
    version: serializers.SlugRelatedField[TermsVersion] = serializers.SlugRelatedField(
        slug_field="version", read_only=True
    )

    class Meta:
        model = TermsAcceptance
        fields = ["version", "accepted_at"]
        read_only_fields = fields
