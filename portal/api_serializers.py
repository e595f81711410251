"""What the API's serializers share."""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers


class FieldsBuiltOnce(serializers.ModelSerializer):
    """A ModelSerializer that builds its fields from the model once per class, not once per
    instance: DRF inspects the model anew for every object it serializes, and deep-copies
    every field, most of the CPU of an API read's answer (``docs/benchmarks.md``, "Web
    reads"). Each instance still gets fields of its own to bind: a shallow copy of each (binding
    sets the copy's attributes only), a deep copy of a nested serializer (binding it binds its
    child too)."""

    def get_fields(self) -> dict[str, Any]:
        built: dict[str, Any] | None = type(self).__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()
            type(self)._fields_built_once = built  # type: ignore[attr-defined]
        return {
            name: copy.deepcopy(field)
            if isinstance(field, serializers.BaseSerializer)
            else copy.copy(field)
            for name, field in built.items()
        }
