"""Small data types passed between the core and providers."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

# "tool": the result of a tool call, answering the assistant message that made it.
Role = Literal["system", "user", "assistant", "tool"]


class Capability(StrEnum):
    """What a provider does. All but CONTEXT have exactly one provider per server."""

    TRANSCRIBE = "transcribe"
    GENERATE = "generate"
    SYNTHESIZE = "synthesize"
    CONTEXT = "context"
    TURN = "turn"  # turn detection in voice (hark.providers.turns)

    @classmethod
    def selectable(cls) -> tuple[Capability, ...]:
        return (cls.TRANSCRIBE, cls.GENERATE, cls.SYNTHESIZE, cls.TURN)


@dataclass(frozen=True, slots=True)
class AudioClip:
    """Signed 16-bit little-endian PCM. Also the unit a synthesizer streams."""

    pcm: bytes
    sample_rate: int
    channels: int = 1

    SAMPLE_WIDTH = 2

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ValueError("sample_rate and channels must be positive")
        if len(self.pcm) % (self.SAMPLE_WIDTH * self.channels):
            raise ValueError("PCM length is not a whole number of frames")

    @property
    def frames(self) -> int:
        return len(self.pcm) // (self.SAMPLE_WIDTH * self.channels)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


# A synthesizer's stream is a sequence of clips; the alias reads better there.
AudioChunk = AudioClip


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None = None
    confidence: float | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image shown to a vision model: its bytes, as downloaded, and MIME type."""

    data: bytes
    mime_type: str  # image/png, image/jpeg, image/webp, image/gif
    # Where it came from (a file name or URL), for the note a model without vision gets.
    name: str = ""

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{self.base64()}"

    def __repr__(self) -> str:  # never the bytes
        return f"ImagePart({self.name!r}, {self.mime_type}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to run a tool. ``arguments`` is the JSON text the model wrote,
    unchecked: the core parses and validates it (bad JSON becomes an error result)."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as a generator sends it to the model: name, description, and the JSON
    schema of its arguments object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Role
    content: str
    # The speaker's display name, so a multi-user channel stays legible to the model.
    name: str | None = None
    # Images attached to this message (generators without vision get a note instead).
    images: tuple[ImagePart, ...] = ()
    # An assistant message that called tools (its content may be empty).
    tool_calls: tuple[ToolCall, ...] = ()
    # A "tool" message: the id of the call it answers.
    tool_call_id: str | None = None

    def text(self) -> str:
        """Content with the speaker's name in front (``"alice: hi"``) for user turns.

        Few chat APIs accept a per-message name reliably, so generators send this."""
        if self.role == "user" and self.name:
            return f"{self.name}: {self.content}"
        return self.content


@dataclass(slots=True)
class ContextRequest:
    """What a context provider knows about the turn being answered."""

    text: str
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    user_name: str | None = None
    bot_name: str | None = None
    # "text", "voice", "event" (e.g. a Twitch raid) or "console".
    kind: str = "text"
    # False for one-off questions (`!ask`): history is neither read nor written.
    use_history: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    # The Discord permissions (flag names: "manage_messages"...) the member holds in
    # the channel; tools that need one check it. None: unknown (refused).
    permissions: frozenset[str] | None = None
    # The triggering message's images (attachments, embeds), sent with it.
    images: tuple[ImagePart, ...] = ()
    # Text added to the triggering message in the prompt only, never to history:
    # included text files, notes on files that were not read.
    attachments: str = ""
    # Earlier messages of the reply chain the message answers, oldest first; they go
    # right before it in the prompt.
    reply_chain: list[PromptMessage] = field(default_factory=list)


@dataclass(slots=True)
class ContextPart:
    """A contribution to the prompt. Parts are ordered by ``order`` (lower first).

    Conventional orders: persona/system 0, memory 20, live events 40, history 50.
    The triggering message itself always comes last, after every part.
    """

    messages: list[PromptMessage]
    order: int = 50
    source: str = ""
