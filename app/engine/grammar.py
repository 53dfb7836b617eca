"""Structured output: OpenAI's ``response_format`` as a grammar for llama.cpp's grammar sampler.

llama-cpp-python turns a JSON schema into GBNF (``json_schema_to_gbnf``, a port of llama.cpp's
own converter) and carries a grammar for any JSON value; the sampler then allows only tokens that
keep the reply inside the grammar, so the reply parses. Runs in the engine process (it imports
llama_cpp).
"""

from __future__ import annotations

import json
from typing import Any

from app.engine.types import EngineError


class InvalidRequest(EngineError):
    """The request asks for something that cannot be done (a schema the converter rejects): the
    asker's mistake, not the engine's (an API server answers 400)."""


def response_format_error(fmt: Any) -> str:
    """Why ``fmt`` is not a response_format this engine can follow ("" when it is)."""
    if fmt is None:
        return ""
    if not isinstance(fmt, dict):
        return "response_format must be an object"
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ""
    if kind != "json_schema":
        return "response_format.type must be 'text', 'json_object' or 'json_schema'"
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        return "response_format.json_schema.schema must be a JSON schema object"
    return ""


def grammar_for(fmt: dict[str, Any] | None) -> str:
    """The GBNF grammar for a response_format ("" for plain text)."""
    problem = response_format_error(fmt)
    if problem:
        raise InvalidRequest(problem)
    if not fmt or fmt.get("type") == "text":
        return ""
    from llama_cpp import llama_grammar

    if fmt["type"] == "json_object":
        schema = fmt.get("schema")  # some servers (llama.cpp's) accept one here too
        if not isinstance(schema, dict):
            return str(llama_grammar.JSON_GBNF)
    else:
        schema = fmt["json_schema"].get("schema") or {}
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception as e:  # the converter raises plain exceptions of several kinds
        raise InvalidRequest(f"the JSON schema cannot be followed: {e}") from None
