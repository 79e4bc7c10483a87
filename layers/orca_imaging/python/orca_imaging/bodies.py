"""Base models of the API's request and response bodies.

Schemas are built on first use (`defer_build`), not at import: a cold start then pays only
for the models of the route it serves (~40 ms less import for the API function).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    """What a caller sends: unknown fields are refused; camelCase or snake_case accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class ResponseBody(BaseModel):
    """What the API returns, serialized by its camelCase aliases."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, defer_build=True)
