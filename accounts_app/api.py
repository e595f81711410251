"""REST API v1: the caller's portal tokens."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts_app.permissions import BrowserSessionOnly, PortalAccess
from accounts_app.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
)
from portal.api_errors import ApiError, ApiErrorSerializer
from portal.models import ApiToken
from portal.tokens import token_create, token_revoke, tokens_live_for


@extend_schema_view(
    get=extend_schema(
        responses={
            200: ApiTokenSerializer(many=True),
            400: OpenApiResponse(
                ApiErrorSerializer, description="``invalid``: a ``page_size`` out of range."
            ),
            404: OpenApiResponse(ApiErrorSerializer, description="``not_found``: no such page."),
        }
    )
)
class TokenListView(generics.ListAPIView[ApiToken]):
    """The caller's live tokens (never the tokens themselves), paginated; POST makes a new
    one."""

    serializer_class = ApiTokenSerializer
    permission_classes = [PortalAccess, BrowserSessionOnly]

    def get_queryset(self) -> QuerySet[ApiToken]:
        return tokens_live_for(cast(AbstractBaseUser, self.request.user))

    @extend_schema(
        request=ApiTokenCreateSerializer,
        responses={
            201: ApiTokenCreatedSerializer,
            400: ApiErrorSerializer,
            403: ApiErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        """201 with the token, shown once, and when it expires (``lifetime_days`` after now;
        the deployment's default unless given). Only a browser session that passed the second
        factor may do this (403 ``session_required`` with a token)."""
        body = ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        raw, token = token_create(
            user=cast(AbstractBaseUser, request.user),
            name=body.validated_data["name"],
            days=body.validated_data["lifetime_days"],
        )
        data = {**ApiTokenSerializer(token).data, "token": raw}
        location = request.build_absolute_uri(reverse("api-token", args=[token.pk]))
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})


class TokenDetailView(generics.GenericAPIView[ApiToken]):
    serializer_class = ApiTokenSerializer

    @extend_schema(responses={204: None, 404: ApiErrorSerializer})
    def delete(self, request: Request, token_id: int) -> Response:
        """Revoke one of the caller's tokens: 204; 404 ``not_found`` if it isn't theirs."""
        token = tokens_live_for(cast(AbstractBaseUser, request.user)).filter(pk=token_id).first()
        if token is None:
            raise ApiError(status.HTTP_404_NOT_FOUND, "You have no such token.", "not_found")
        token_revoke(token)
        return Response(status=status.HTTP_204_NO_CONTENT)
