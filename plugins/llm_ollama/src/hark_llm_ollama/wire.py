"""Hark's prompt, tools and tool calls in Ollama's ``/api/chat`` format, and back.

- Images go in a message's ``images`` as raw bytes (the ``ollama`` client sends them
  base64-encoded).
- An assistant message that called tools carries ``tool_calls``
  (``[{"function": {"name", "arguments": {...}}}]``, arguments an object); each result
  is a ``tool`` message naming the tool (``tool_name``): Ollama has no call ids.
- Tools are ``{"type": "function", "function": {name, description, parameters}}``.
  The client's ``Tool`` model keeps only ``type``, ``required``, ``$defs``, ``items``
  and ``properties`` of the schema, and per property ``type``, ``items``,
  ``description`` and ``enum``; :func:`ollama_tool` rewrites what pydantic generates
  (``anyOf`` for ``Optional``, ``$ref`` for enums, ``const``, bounds, defaults) into
  those, so the model still learns each argument's type, choices and limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hark import PromptMessage, ToolCall, ToolSpec

__all__ = ["ollama_messages", "ollama_tool", "tool_call_of"]

_REF = "#/$defs/"
# Constraints the client drops, said in the description instead ("1 to 7"): the
# keywords of the lower and upper bound, and what the bound counts.
_BOUNDS = (
    ("minimum", "maximum", ""),
    ("minLength", "maxLength", " characters"),
    ("minItems", "maxItems", " items"),
)


def ollama_messages(messages: Sequence[PromptMessage]) -> list[dict[str, Any]]:
    """Chat messages as Ollama takes them (user turns keep the speaker's name in the text)."""
    # A result names its tool; a hand-built one may give only the id of the call.
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            entry: dict[str, Any] = {"role": "tool", "content": message.content}
            name = message.name or names.get(message.tool_call_id or "")
            if name:
                entry["tool_name"] = name
            out.append(entry)
            continue
        entry = {"role": message.role, "content": message.text()}
        if message.images:
            entry["images"] = [image.data for image in message.images]
        if message.tool_calls:
            calls, unreadable = [], []
            for call in message.tool_calls:
                arguments = _object(call.arguments)
                if arguments is None:
                    unreadable.append(f"[called {call.name} with {call.arguments}]")
                else:
                    calls.append({"function": {"name": call.name, "arguments": arguments}})
            if calls:
                entry["tool_calls"] = calls
            if unreadable:
                # Ollama wants arguments as an object: text that is none stays readable.
                entry["content"] = "\n".join([entry["content"], *unreadable]).strip()
        out.append(entry)
    return out


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def tool_call_of(name: str, arguments: Mapping[str, Any]) -> ToolCall:
    """A call as Ollama reports it (whole, arguments already an object, no id: the
    core numbers the calls)."""
    return ToolCall("", name, json.dumps(dict(arguments), ensure_ascii=False))


# -- tools ---------------------------------------------------------------------


def ollama_tool(spec: ToolSpec) -> dict[str, Any]:
    """``spec`` in Ollama's tool format, its schema in the shape the client keeps."""
    schema = spec.parameters
    defs = schema.get("$defs") or {}
    properties = {
        name: _property(prop, defs) for name, prop in (schema.get("properties") or {}).items()
    }
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        parameters["required"] = list(schema["required"])
    if defs:  # an array's ``items`` (kept as it is) may refer to them
        parameters["$defs"] = defs
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": parameters},
    }


def _resolve(schema: Any, defs: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with a local ``$ref`` replaced by what it names (its own keys win)."""
    if not isinstance(schema, Mapping):
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        target = _resolve(defs.get(ref.removeprefix(_REF)), defs)
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        return {**target, **rest}
    return dict(schema)


def _types(schema: Mapping[str, Any]) -> list[str] | None:
    """The JSON types ``schema`` allows, or None when it does not say."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        return list(kind)
    if "properties" in schema:
        return ["object"]
    return None


def _property(raw: Any, defs: Mapping[str, Any]) -> dict[str, Any]:
    schema = _resolve(raw, defs)
    variants = schema.get("anyOf") or schema.get("oneOf")
    parts = [_resolve(v, defs) for v in variants] if isinstance(variants, list) else [schema]

    types: list[str] | None = []
    choices: list[Any] = []
    items: Any = schema.get("items")
    hints: list[str] = []
    for part in parts:
        found = _types(part)
        if found is None or types is None:
            types = None  # one variant of any type: the whole property is untyped
        else:
            types += [t for t in found if t not in types]
        if isinstance(part.get("enum"), list):
            choices += [c for c in part["enum"] if c not in choices]
        if "const" in part and part["const"] not in choices:
            choices.append(part["const"])
        if items is None and "items" in part:
            items = part["items"]
        hints += _bounds(part)
        if part is not schema and part.get("description") and not schema.get("description"):
            schema["description"] = part["description"]

    out: dict[str, Any] = {}
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    if items is not None:
        out["items"] = items
    if choices:
        if types and "null" in types and None not in choices:
            choices.append(None)
        out["enum"] = choices
    if "default" in schema and schema["default"] is not None:
        hints.append(f"default {json.dumps(schema['default'], ensure_ascii=False)}")
    description = str(schema.get("description") or "").strip()
    if hints:
        said = "; ".join(dict.fromkeys(hints))
        description = f"{description} ({said})" if description else said
    if description:
        out["description"] = description
    return out


def _bounds(schema: Mapping[str, Any]) -> list[str]:
    hints = []
    for low, high, unit in _BOUNDS:
        lo, hi = schema.get(low), schema.get(high)
        if lo is not None and hi is not None:
            hints.append(f"{lo} to {hi}{unit}")
        elif lo is not None:
            hints.append(f"at least {lo}{unit}")
        elif hi is not None:
            hints.append(f"at most {hi}{unit}")
    if schema.get("exclusiveMinimum") is not None:
        hints.append(f"more than {schema['exclusiveMinimum']}")
    if schema.get("exclusiveMaximum") is not None:
        hints.append(f"less than {schema['exclusiveMaximum']}")
    if schema.get("pattern"):
        hints.append(f"matching {schema['pattern']}")
    return hints
