"""REST API v1: the terms of use."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ApiError, ApiErrorSerializer
from portal.client_ip import client_ip
from terms_app.selectors import terms_current
from terms_app.serializers import (
    TermsAcceptanceSerializer,
    TermsAcceptSerializer,
    TermsVersionSerializer,
)
from terms_app.services import terms_accept


class CurrentTermsView(APIView):
    """The current terms of use, and whether the caller has accepted them."""

    @extend_schema(responses={200: TermsVersionSerializer, 404: ApiErrorSerializer})
    def get(self, request: Request) -> Response:
        """The latest published version; 404 ``terms_not_published`` if there is none."""
        terms = terms_current()
        if terms is None:
            raise ApiError(
                status.HTTP_404_NOT_FOUND,
                "No terms of use have been published yet.",
                "terms_not_published",
            )
        return Response(TermsVersionSerializer(terms, context={"request": request}).data)


class AcceptTermsView(APIView):
    """Accept the current terms of use, recording the client's address and user agent."""

    @extend_schema(
        request=TermsAcceptSerializer,
        responses={
            201: TermsAcceptanceSerializer,
            400: ApiErrorSerializer,
            404: ApiErrorSerializer,
            409: ApiErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        """201 with the acceptance; 409 ``terms_version_stale`` unless ``version`` is current.

        Accepting a version twice answers with the first acceptance.
        """
        serializer = TermsAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        acceptance = terms_accept(
            # IsAuthenticated (the default permission) has let only real users in.
            user=cast(AbstractBaseUser, request.user),
            version=serializer.validated_data["version"],
            ip_address=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        # The acceptance has no address of its own: the current terms show it (``accepted``).
        location = request.build_absolute_uri(reverse("api-terms-current"))
        return Response(
            TermsAcceptanceSerializer(acceptance).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )
