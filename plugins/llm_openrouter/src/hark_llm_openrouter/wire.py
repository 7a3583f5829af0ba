"""Hark's prompt in the chat-completions wire format, and tool calls read back.

Requests: user messages with images become a list of content parts (a ``text``
part, then one ``image_url`` part per image, as a ``data:`` URL); an assistant
message that called tools carries ``tool_calls`` (arguments as a JSON string);
a tool result is ``{"role": "tool", "tool_call_id", "content"}``; tools are sent
as ``{"type": "function", "function": {name, description, parameters}}``.

Responses: a streamed reply sends each tool call in pieces
(``choices[0].delta.tool_calls``: the first piece with its ``index``, ``id`` and
name, then fragments of its arguments text); :class:`ToolCallDeltas` puts them
together. A whole message (``message.tool_calls``) goes through the same class.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hark import PromptMessage, ToolCall, ToolSpec
from hark.api import without_images

__all__ = [
    "ToolCallDeltas",
    "has_images",
    "message_payload",
    "messages_payload",
    "tools_payload",
]


def has_images(messages: Iterable[PromptMessage]) -> bool:
    """Whether a request built from ``messages`` carries an image."""
    return any(m.images for m in messages if m.role == "user")


def _history_arguments(arguments: str) -> str:
    """A call's arguments as sent back in a later round.

    The model's own text when it is a JSON object. Anything else (the model wrote
    broken JSON, and the core told it so in the tool's result) is wrapped in an
    object: llama.cpp and vLLM parse the arguments of earlier calls and refuse the
    whole request when they are not an object."""
    if not arguments.strip():
        return "{}"  # a call without arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return arguments
    return json.dumps({"invalid_arguments": arguments})


def message_payload(message: PromptMessage) -> dict[str, Any]:
    """One message as the API takes it."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            # The API's own form for "no text, only calls".
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": _history_arguments(call.arguments),
                    },
                }
                for call in message.tool_calls
            ],
        }
    if message.images and message.role != "user":
        # The API takes images from the user only; an earlier bot message's image (in
        # a reply chain) is named, as for a model without vision.
        (message,) = without_images([message])
    # text() puts the speaker's name in front of user turns; the API's `name` field
    # is left out because many compatible servers reject or ignore it.
    text = message.text()
    if not message.images:
        return {"role": message.role, "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts += [
        {"type": "image_url", "image_url": {"url": image.data_url()}} for image in message.images
    ]
    return {"role": message.role, "content": parts}


def messages_payload(messages: Sequence[PromptMessage]) -> list[dict[str, Any]]:
    return [message_payload(m) for m in messages]


def tools_payload(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """The ``tools`` parameter for ``tools``."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
            },
        }
        for spec in tools
    ]


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


@dataclass(slots=True)
class _Partial:
    id: str = ""
    name: str = ""
    arguments: str = ""


class ToolCallDeltas:
    """Tool calls put together from a stream's pieces, in the order they began.

    A piece names its call by ``index``. A piece with a new ``id`` at an index
    already in use starts another call (some servers number every call 0), and one
    without an index continues the latest call. Arguments are kept as written: the
    core parses them, and a call without a name or with broken JSON becomes an
    error result the model reads, not a failed turn.
    """

    def __init__(self) -> None:
        self._calls: list[_Partial] = []
        self._by_index: dict[int, _Partial] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, delta: Any) -> None:
        """One piece (``choices[0].delta.tool_calls[i]``, or a whole message's call).

        Raises TypeError for an item that is no tool call at all."""
        if not isinstance(delta, Mapping) and not hasattr(delta, "function"):
            raise TypeError(f"a tool call delta that is a {type(delta).__name__}")
        index = _field(delta, "index")
        ident = _field(delta, "id")
        ident = str(ident) if ident not in (None, "") else ""
        function = _field(delta, "function")
        name = _field(function, "name") if function is not None else None
        arguments = _field(function, "arguments") if function is not None else None

        call = self._by_index.get(index) if isinstance(index, int) else None
        if call is None and not isinstance(index, int) and not ident and self._calls:
            call = self._calls[-1]
        if call is not None and ident and call.id and ident != call.id:
            call = None
        if call is None:
            call = _Partial()
            self._calls.append(call)
        if isinstance(index, int):
            self._by_index[index] = call
        if ident:
            call.id = ident
        if isinstance(name, str) and name and name != call.name:
            # Some servers repeat the whole name in every piece; others might split it.
            call.name = name if not call.name else call.name + name
        if isinstance(arguments, str):
            call.arguments += arguments
        elif arguments is not None:
            # Not the API's string (a few servers send the object itself).
            call.arguments = json.dumps(arguments)

    def add_all(self, deltas: Any) -> None:
        if not isinstance(deltas, list | tuple):
            raise TypeError(f"tool_calls is a {type(deltas).__name__}, not a list")
        for delta in deltas:
            self.add(delta)

    def take(self) -> list[ToolCall]:
        """The calls so far (now complete), forgetting them; pieces that named
        nothing (no id, name or arguments) are dropped."""
        calls = [
            ToolCall(id=c.id, name=c.name, arguments=c.arguments)
            for c in self._calls
            if c.id or c.name or c.arguments
        ]
        self._calls.clear()
        self._by_index.clear()
        return calls
