"""The canonical JSON of a `ChatRequest`, as `canonical_json(request.model_dump(mode="json"))` writes it,
without paying for a full dump and a key sort on every call.

A request is rebuilt per call, but its expensive parts are not new: the sampling parameters are
equal from call to call, and a stage passes the same schema dict on every call (pydantic copies
the top-level dict into the request, but keeps its values). So both are serialised once and
remembered; only the messages, which really differ, are serialised per call.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from typing import Any

from opencharacter.hashing import canonical_json
from opencharacter.records import ChatRequest, Sampling

_SCHEMAS_KEPT = 64
# id-fingerprint of a schema's top-level values → (the values, kept alive so no id is reused; JSON)
_schemas: OrderedDict[tuple[tuple[str, int], ...], tuple[list[Any], str]] = OrderedDict()
_messages = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


@functools.lru_cache(maxsize=256)
def _sampling_json(sampling: Sampling) -> str:
    return canonical_json(sampling.model_dump(mode="json"))


def _schema_json(schema: dict[str, Any] | None) -> str:
    """Schemas are constants by convention (never mutated once built), which is what makes this
    identity memo sound; a schema built per call (rewrite's) simply misses and is serialised."""
    if schema is None:
        return "null"
    fingerprint = tuple((key, id(value)) for key, value in schema.items())
    hit = _schemas.get(fingerprint)
    if hit is not None:
        _schemas.move_to_end(fingerprint)
        return hit[1]
    text = canonical_json(schema)
    _schemas[fingerprint] = (list(schema.values()), text)
    if len(_schemas) > _SCHEMAS_KEPT:
        _schemas.popitem(last=False)
    return text


def request_json(request: ChatRequest) -> str:
    # Keys in sorted order, as canonical_json sorts them: messages, response_schema, sampling, schema_name;
    # and within a message: content, role.
    messages = _messages.encode([{"content": m.content, "role": m.role} for m in request.messages])
    return (
        f'{{"messages":{messages},"response_schema":{_schema_json(request.response_schema)},'
        f'"sampling":{_sampling_json(request.sampling)},"schema_name":{canonical_json(request.schema_name)}}}'
    )
