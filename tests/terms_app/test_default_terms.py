"""The default terms are terms of use, not a note to the operator; the note is the admin's help
text (issue 15)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import User
from django.test import Client

from terms_app.models import TermsVersion
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("terms_app.migrations.0003_default_terms_text")


def test_a_new_installation_publishes_terms_that_speak_to_users(terms: TermsVersion) -> None:
    assert terms.version == "1"
    assert terms.body == MIGRATION.BODY
    assert "operator" not in terms.body.lower()
    assert "By launching a session you agree to them." in terms.body


def test_the_placeholder_of_an_existing_installation_is_replaced(terms: TermsVersion) -> None:
    # Given version 1 as the first migration published it,
    TermsVersion.objects.filter(pk=terms.pk).update(body=MIGRATION.PLACEHOLDER)

    # when the migration runs,
    MIGRATION.replace_placeholder(django_apps, None)

    # then it holds the terms.
    terms.refresh_from_db()
    assert terms.body == MIGRATION.BODY


def test_terms_the_operator_wrote_are_left_alone(terms: TermsVersion) -> None:
    # Given version 1 edited by the operator (a single changed character counts),
    edited = MIGRATION.PLACEHOLDER.replace("its own.", "its own!")
    TermsVersion.objects.filter(pk=terms.pk).update(body=edited)

    MIGRATION.replace_placeholder(django_apps, None)

    terms.refresh_from_db()
    assert terms.body == edited


def test_the_operator_reads_how_to_replace_the_terms_in_the_admin(
    client: Client, staff: User
) -> None:
    login_verified(client, staff)

    page = client.get("/admin/terms_app/termsversion/add/").content.decode()

    assert "A new installation publishes a default text" in page
    assert "set its publication time" in page
