"""``OpenRouterGenerator``: streamed chat completions from any OpenAI-compatible API.

One class serves OpenRouter (the default), OpenAI, Mistral, a local llama.cpp
``llama-server`` and anything else that speaks ``POST /chat/completions`` with
``stream=true``. It uses the official ``openai`` async client with its own
retries switched off: the core retries (see :mod:`hark.providers.base`), so the
two would multiply.

The model sees images (``image_url`` parts) and may call tools; both, and
streaming itself, are per-server settings (:mod:`hark_llm_openrouter.wire` has
the wire format). When the server says its model takes no tools or images (or
cannot stream tool calls), the request is sent again at once without them (or
unstreamed), and the endpoint's model is remembered as lacking them, so later
requests leave them out from the start. Only a refusal that arrives after part
of the reply was posted is a notice naming the setting to switch off.

Every client error is translated into the core's hierarchy by the core's
:class:`hark.api.ErrorTranslator`; this module adds only what OpenRouter says more
about (a missing model, no credits, a model without tools or images). No message,
log line or traceback it produces carries the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hark import (
    BadOutputError,
    ConfigurationError,
    GenerationRequest,
    Generator,
    PromptMessage,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ToolCall,
    ToolSpec,
    register_secret,
)
from hark.api import ErrorTranslator, HttpFailure, body_message, without_images
from hark_llm_openrouter.settings import (
    API_KEY,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    OPENROUTER_BASE_URL,
    OpenRouterSettings,
)
from hark_llm_openrouter.wire import ToolCallDeltas, has_images, messages_payload, tools_payload

if TYPE_CHECKING:
    # The SDK (~15 MB with its httpx) is imported where the client is made or one of its
    # errors is read, not with the plugin: `bot plugins` and an idle bot never load it.
    import openai

__all__ = ["DEFAULT_MODEL", "OPENROUTER_BASE_URL", "Lack", "OpenRouterGenerator"]

#: Seconds warm() waits for its connection-opening request.
WARM_TIMEOUT = 10.0

# Hosted APIs that refuse every request without a key: a missing key is a setup
# mistake there, reported before any request. Anything else (llama.cpp, vLLM,
# LM Studio on your own machine) may run without one.
KEYED_HOSTS = frozenset({"openrouter.ai", "api.openai.com", "api.mistral.ai"})
# Sent as the bearer token when no key is configured: the client library insists
# on one, and keyless local servers ignore it.
PLACEHOLDER_KEY = "no-key"

# request.options keys passed on to the API (anything else is ignored, so a caller
# written for another generator cannot make this one send an invalid request).
PASSTHROUGH_OPTIONS = frozenset(
    {"top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "user"}
)

# How servers refuse tools or images a model cannot take: the status (OpenRouter
# 404, most 400, FastAPI servers 422, some llama.cpp builds 500) and the words.
REFUSAL_STATUSES = frozenset({400, 404, 422, 500, 501})
TOOL_WORDS = re.compile(r"\b(tools?|tool[ _-]?(use|choice|calls?)|function[ _-]?call(ing|s)?)\b")
IMAGE_WORDS = re.compile(r"\b(images?|image[ _-]?(url|input)s?|vision|multi-?modal|mmproj)\b")
REFUSAL_WORDS = re.compile(
    r"support|requires?\b|enable|jinja|mmproj|not allowed|only allowed|not available|cannot use"
)

# How many (endpoint, model) pairs the generator remembers the lacks of; the oldest
# is forgotten first (and found out again, with one refused request, if still used).
MAX_REMEMBERED = 256


async def _create(client: openai.AsyncOpenAI, call: dict[str, Any], *, stream: bool) -> Any:
    """``POST /chat/completions`` with ``call`` as the body: what
    ``client.chat.completions.create(**call)`` sends, without the client's field-by-field
    transform of the parameters. The body is built here in plain JSON types, so that
    pass changes nothing, and it is most of the client's CPU for a request that carries
    a channel's history (it walks every message)."""
    from openai import AsyncStream
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    return await client.post(
        "/chat/completions",
        body={**call, "stream": stream},
        cast_to=ChatCompletion,
        stream=stream,
        stream_cls=AsyncStream[ChatCompletionChunk],
    )


class Lack(StrEnum):
    """What a model was found not to take (the server refused a request with it)."""

    TOOLS = "tools"  # the tools parameter: it is left out, the model answers in text
    IMAGES = "images"  # image parts: each image becomes the core's note naming it
    STREAMED_TOOLS = "streamed_tools"  # tools in a streamed request: sent unstreamed


# The WARNING logged once when a lack is found: (what, what is done instead, the setting).
LACK_LOG = {
    Lack.TOOLS: (
        "does not support tools",
        "answering without them",
        "`!config llm_openrouter tools off` stops offering them",
    ),
    Lack.IMAGES: (
        "does not support images",
        "sending a note in place of each",
        "`!config llm_openrouter vision off` stops sending them",
    ),
    Lack.STREAMED_TOOLS: (
        "cannot stream tool calls",
        "asking for whole replies when tools are offered",
        "`!config llm_openrouter stream off` asks for whole replies always",
    ),
}


@dataclass(frozen=True, slots=True)
class _Sent:
    """What one request carried that a model may not take."""

    tools: bool = False
    images: bool = False
    stream: bool = True


class _Refused(ConfigurationError):
    """The model refused what the request carried (``lacks``); the message names the
    settings to switch off. ``_impl`` sends the request again without them while
    nothing has been yielded, so this reaches the core only after part of a reply."""

    def __init__(self, message: str, lacks: frozenset[Lack], detail: str = "") -> None:
        super().__init__(message)
        self.lacks = lacks
        self.detail = detail


def is_local_url(url: str) -> bool:
    """True for a server on this machine or a private network (by name or address)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".lan", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


class OpenRouterGenerator(Generator):
    """Replies from OpenRouter or any OpenAI-compatible chat-completions endpoint."""

    supports_model_listing = True
    # Both hold for the class; a server whose model has neither switches them off
    # with its `vision` / `tools` settings, applied in _impl (which also leaves them
    # out by itself for a model the endpoint refused them for).
    supports_vision = True
    supports_tools = True
    # Used outside a bot (tests, scripts); in the bot, the plugin's declaration.
    settings_model = OpenRouterSettings

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        site_url: str | None = None,
        app_name: str | None = None,
        timeout: float | None = None,
        stream: bool | None = None,
        vision: bool | None = None,
        tools: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """The key comes from ``OPENROUTER_API_KEY`` and the rest from the plugin's
        settings (``environ`` is their environment layer); arguments given here win
        over both, in every server (for scripts and tests)."""
        super().__init__()
        self.environ = environ
        self._api_key = (API_KEY.value(environ) if api_key is None else api_key).strip()
        # The bot's log formatter replaces registered secrets with *** (a second line
        # of defence: nothing here logs the key in the first place).
        register_secret(self._api_key)
        given = {"base_url": base_url, "model": model, "site_url": site_url, "app_name": app_name}
        self._fixed: dict[str, Any] = {key: value for key, value in given.items() if value}
        if "base_url" in self._fixed:
            self._fixed["base_url"] = self._fixed["base_url"].rstrip("/")
        switches = {"stream": stream, "vision": vision, "tools": tools}
        self._fixed.update({key: value for key, value in switches.items() if value is not None})
        if timeout is not None:
            self.timeout = timeout
        # (client, the settings it was made for); clients replaced after a settings
        # change, closed by aclose().
        self._client: tuple[openai.AsyncOpenAI, tuple[Any, ...]] | None = None
        self._stale: list[openai.AsyncOpenAI] = []
        # (base_url, model) -> what the endpoint refused for that model; at most
        # MAX_REMEMBERED pairs, in the order they were found.
        self._lacks: dict[tuple[str, str], frozenset[Lack]] = {}

    # -- configuration ---------------------------------------------------

    def bot_wide(self) -> OpenRouterSettings:
        """The bot-wide settings (the endpoint, the default model)."""
        resolved = self.resolve()
        assert resolved is not None
        return self._with_fixed(resolved.values)

    def _with_fixed(self, settings: OpenRouterSettings | None) -> OpenRouterSettings:
        if settings is None:  # a request built by hand, outside generate()
            return self.bot_wide()
        return settings.model_copy(update=self._fixed) if self._fixed else settings

    @property
    def timeout(self) -> float:  # the core's per-delta deadline and the client's read timeout
        return self.bot_wide().timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._fixed["timeout"] = value if value > 0 else DEFAULT_TIMEOUT

    @property
    def base_url(self) -> str:
        return self.bot_wide().base_url

    @property  # type: ignore[override]
    def default_model(self) -> str:
        """The model where no server has chosen one (bot-wide ``model``, ``OPENROUTER_MODEL``)."""
        return self.bot_wide().model

    @property
    def site_url(self) -> str:
        return self.bot_wide().site_url

    @property
    def app_name(self) -> str:
        return self.bot_wide().app_name

    def model_for(self, guild_id: int | None) -> str:
        """The model a server uses, as the core's ``generate()`` and ``!model`` ask."""
        resolved = self.resolve(guild_id)
        return self._with_fixed(resolved.values if resolved else None).model

    async def check_setting(self, key: str, value: Any) -> Any:
        """`!config llm_openrouter model NAME`: only a model the endpoint lists. While the
        list can't be fetched the name is taken unchecked."""
        if key != "model":
            return value
        try:
            known = await self.list_models()
        except ProviderError as exc:
            self.log.warning("%s: took model %r unchecked (%s)", self.id, value, exc)
            return value
        if value not in known:
            raise ValueError(f"{self.host} has no model `{value}`; see `!openrouter models`")
        return value

    @property
    def host(self) -> str:
        """The endpoint's host (and port): how messages name the service."""
        parts = urlsplit(self.base_url)
        return parts.netloc.rsplit("@", 1)[-1] or self.base_url

    @property
    def public_base_url(self) -> str:
        """``base_url`` fit to show or log: without any ``user:password@`` or query string."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{self.host}{parts.path}" if parts.scheme else self.base_url

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    @property
    def needs_key(self) -> bool:
        hostname = (urlsplit(self.base_url).hostname or "").lower()
        return hostname in KEYED_HOSTS

    @property
    def is_openrouter(self) -> bool:
        return (urlsplit(self.base_url).hostname or "").lower() == "openrouter.ai"

    def unavailable_reason(self) -> str | None:
        if self.needs_key and not self.has_key:
            return "OPENROUTER_API_KEY is not set"
        return None

    def headers(self, settings: OpenRouterSettings | None = None) -> dict[str, str]:
        """OpenRouter's attribution headers (harmless to other endpoints)."""
        settings = settings or self.bot_wide()
        return {"HTTP-Referer": settings.site_url, "X-Title": settings.app_name}

    def client(self, settings: OpenRouterSettings | None = None) -> openai.AsyncOpenAI:
        """The shared async client (created on first use, and again after the endpoint's
        settings change)."""
        reason = self.unavailable_reason()
        if reason:
            raise ConfigurationError(reason)
        settings = settings or self.bot_wide()
        made_for = (settings.base_url, settings.timeout, settings.site_url, settings.app_name)
        if self._client is None or self._client[1] != made_for:
            if self._client is not None:
                self._stale.append(self._client[0])
            import openai

            client = openai.AsyncOpenAI(
                base_url=settings.base_url,
                api_key=self._api_key or PLACEHOLDER_KEY,
                max_retries=0,  # the core retries
                timeout=openai.Timeout(settings.timeout, connect=min(10.0, settings.timeout)),
                default_headers=self.headers(settings),
            )
            self._client = (client, made_for)
        return self._client[0]

    async def warm(self) -> None:
        """Open the connection pool with ``GET {base}/models`` (every OpenAI-compatible
        server has it), so the first reply does not pay for the TCP/TLS handshake. Any
        answer, even an error status, leaves a connection open. Never raises: a failure
        is logged at DEBUG."""
        if self.unavailable_reason() is not None:
            return
        try:
            async with asyncio.timeout(WARM_TIMEOUT):
                await self.client().models.list()
        except Exception as exc:
            self.log.debug("warm-up of %s failed (%s)", self.host, type(exc).__name__)
        else:
            self.log.debug("warmed the connection to %s", self.host)

    async def prime(
        self,
        messages: Sequence[PromptMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        guild_id: int | None = None,
    ) -> None:
        """On a server of this machine or network (llama.cpp, vLLM, LM Studio):
        evaluate how this server's turns begin (one token), which it caches, so the
        first voice turn doesn't pay for the persona. A hosted API is not primed: it
        would bill for it, and caches prompts itself."""
        if self.unavailable_reason() is not None or not is_local_url(self.base_url):
            return
        async for _ in self.generate(messages, tools=tools, guild_id=guild_id, max_tokens=1):
            pass

    async def aclose(self) -> None:
        """Close the HTTP connection pool (the next call opens a new one)."""
        current, self._client = self._client, None
        clients, self._stale = self._stale, []
        for client in [*clients, *([current[0]] if current else [])]:
            await client.close()

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.id} {self.public_base_url}>"

    # -- what models were found not to take ------------------------------

    def lacks(self, model: str, base_url: str | None = None) -> frozenset[Lack]:
        """What ``model`` at ``base_url`` (default: this endpoint) was found not to take:
        requests for it leave those out (tools, images) or go unstreamed (tools
        with a stream) from the start. Forgotten when the bot restarts."""
        key = ((base_url or self.base_url).rstrip("/"), model)
        return self._lacks.get(key, frozenset())

    def _learn(self, key: tuple[str, str], lacks: Iterable[Lack], detail: str = "") -> None:
        """Remember that the model ``key`` names lacks ``lacks``, logging each one the
        first time it is found."""
        known = self._lacks.get(key, frozenset())
        new = [lack for lack in Lack if lack in lacks and lack not in known]
        if not new:
            return
        self._lacks.pop(key, None)  # re-inserted last: the newest entry
        self._lacks[key] = known | frozenset(new)
        while len(self._lacks) > MAX_REMEMBERED:
            del self._lacks[next(iter(self._lacks))]
        said = f"; {self.host} said: {detail}" if detail else ""
        for lack in new:
            what, instead, fix = LACK_LOG[lack]
            self.log.warning(
                "model %s at %s %s; %s (%s)%s", key[1], self.host, what, instead, fix, said
            )

    # -- generation ------------------------------------------------------

    def build_params(self, request: GenerationRequest) -> dict[str, Any]:
        """The sampling parameters for ``request``: its own values, else this server's settings."""
        try:
            return self._build_params(request)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"a sampling value is not a number ({exc})") from None

    def _build_params(self, request: GenerationRequest) -> dict[str, Any]:
        settings = self._with_fixed(request.settings)
        params: dict[str, Any] = {}
        temperature = request.temperature
        if temperature is None:
            temperature = settings.temperature
        max_tokens = request.max_tokens
        if max_tokens is None:
            max_tokens = settings.max_tokens
        top_p = request.options.get("top_p", settings.top_p)
        if temperature is not None:
            params["temperature"] = float(temperature)
        if max_tokens is not None:
            params["max_tokens"] = int(max_tokens)
        if top_p is not None:
            params["top_p"] = float(top_p)
        for key, value in request.options.items():
            if key in PASSTHROUGH_OPTIONS and key != "top_p" and value is not None:
                params[key] = value
        return params

    def build_messages(self, request: GenerationRequest) -> list[dict[str, Any]]:
        """``request.messages`` as the API takes them; images become notes where this
        server's ``vision`` setting is off."""
        return messages_payload(self._messages(request))

    def build_tools(self, request: GenerationRequest) -> list[dict[str, Any]]:
        """The ``tools`` parameter: the offered tools, none where this server's
        ``tools`` setting is off."""
        return tools_payload(request.tools) if self._with_fixed(request.settings).tools else []

    def _messages(self, request: GenerationRequest) -> list[PromptMessage]:
        if self._with_fixed(request.settings).vision:
            return request.messages
        # The class says it sees images (the wrapper reads the flag before it knows
        # the server), so this server's switch is applied here, as the core would.
        return without_images(request.messages)

    async def _impl(self, request: GenerationRequest) -> AsyncIterator[str | ToolCall]:
        settings = self._with_fixed(request.settings)
        client = self.client(settings)
        model = request.model or settings.model
        if not model:
            raise ConfigurationError(
                "no model is set: set OPENROUTER_MODEL or `!config llm_openrouter model NAME`"
            )
        params = self.build_params(request)
        messages = self._messages(request)
        tools = self.build_tools(request)
        key = (settings.base_url, model)
        yielded = False
        dropped: set[Lack] = set()  # refused in this call (so each is dropped once)
        while True:
            lacks = self._lacks.get(key, frozenset()) | dropped
            offered = [] if Lack.TOOLS in lacks else tools
            shown = without_images(messages) if Lack.IMAGES in lacks else messages
            stream = settings.stream and not (offered and Lack.STREAMED_TOOLS in lacks)
            sent = _Sent(tools=bool(offered), images=has_images(shown), stream=stream)
            self.log.debug(
                "POST %s/chat/completions model=%s %s tools=%s images=%s stream=%s",
                self.public_base_url,
                model,
                params,
                [t["function"]["name"] for t in offered],
                sent.images,
                sent.stream,
            )
            # An empty tools list is refused ("[] is too short"): left out instead.
            extra = {"tools": offered} if offered else {}
            call = {"model": model, "messages": messages_payload(shown), **params, **extra}
            read = self._streamed if sent.stream else self._whole
            try:
                async with contextlib.aclosing(read(client, call, sent)) as items:
                    async for item in items:
                        yielded = True
                        yield item
                return
            except _Refused as refused:
                # Remembered even when it is too late to ask again: the next turn
                # leaves it out from the start.
                self._learn(key, refused.lacks, refused.detail)
                if yielded or refused.lacks <= dropped:
                    raise
                dropped |= refused.lacks

    async def _streamed(
        self, client: openai.AsyncOpenAI, call: dict[str, Any], sent: _Sent
    ) -> AsyncIterator[str | ToolCall]:
        model = call["model"]
        try:
            stream = await _create(client, call, stream=True)
        except Exception as exc:
            raise self.translate(exc, model=model, sent=sent) from None

        produced = 0  # characters yielded
        called = 0  # tool calls yielded
        events = 0  # server-sent events parsed, of any shape
        chunks = 0  # of which chat completion chunks (with choices)
        finish_reason: str | None = None
        pending = ToolCallDeltas()
        try:
            async for event in stream:
                events += 1
                parts = self._chunk_parts(event)
                if parts is None:  # e.g. a usage-only chunk
                    continue
                chunks += 1
                content, finish, deltas = parts
                if content:
                    produced += len(content)
                    yield content
                if deltas:
                    try:
                        pending.add_all(deltas)
                    except TypeError:
                        raise BadOutputError(
                            f"{self.host} sent a tool call that is not the API's"
                        ) from None
                if finish:
                    finish_reason = finish
                if finish_reason is not None and pending:
                    # A finish reason ends every call begun (their arguments are whole).
                    for tool_call in self._offered(pending, sent):
                        called += 1
                        yield tool_call
        except json.JSONDecodeError:
            raise BadOutputError(f"{self.host} sent a malformed stream (not JSON)") from None
        except UnicodeDecodeError:
            raise BadOutputError(f"{self.host} sent a malformed stream (not UTF-8)") from None
        except Exception as exc:  # openai 1.x/2.x let httpx's own errors out of a stream
            refused = self._refused_mid_stream(exc, model, sent)
            if refused is not None:
                raise refused from None
            raise self.translate(
                exc, model=model, produced=produced, streaming=True, sent=sent
            ) from None
        finally:
            await stream.close()

        if finish_reason is None and not produced:
            # A 200 that is not an event stream at all (a proxy's or captive portal's HTML
            # page, a JSON document) parses to no events: a bad answer, not worth a retry.
            media = stream.response.headers.get("content-type", "").split(";")[0].strip()
            if not chunks and (events or media.lower() != "text/event-stream"):
                what = media or "a body without a Content-Type"
                raise BadOutputError(
                    f"{self.host} answered with {what}, not a stream of chat completion chunks"
                )
            # The stream itself ended early and nothing reached the user (tool calls
            # begun are not yielded before a finish reason): the core may retry.
            raise ProviderConnectionError(f"the stream from {self.host} ended before the reply")
        if finish_reason is None:
            raise BadOutputError(
                f"the reply from {self.host} was cut off: the stream ended without a finish"
                f" reason after {produced} characters"
            )
        self._check_finish(model, finish_reason, produced, called)

    async def _whole(
        self, client: openai.AsyncOpenAI, call: dict[str, Any], sent: _Sent
    ) -> AsyncIterator[str | ToolCall]:
        """The reply as one response (the ``stream`` setting is off)."""
        model = call["model"]
        try:
            completion = await _create(client, call, stream=False)
        except Exception as exc:
            raise self.translate(exc, model=model, sent=sent) from None
        content, finish_reason, calls = self._completion_parts(completion)
        produced = len(content or "")
        if content:
            yield content
        pending = ToolCallDeltas()
        try:
            pending.add_all(calls or [])
        except TypeError:
            raise BadOutputError(f"{self.host} sent a tool call that is not the API's") from None
        called = 0
        for tool_call in self._offered(pending, sent):
            called += 1
            yield tool_call
        self._check_finish(model, finish_reason, produced, called)

    def _offered(self, pending: ToolCallDeltas, sent: _Sent) -> list[ToolCall]:
        calls = pending.take()
        if calls and not sent.tools:
            # No tools were sent, so none can be run: the reply's text is the answer.
            self.log.debug("ignored %d tool call(s): no tools were offered", len(calls))
            return []
        return calls

    def _check_finish(
        self, model: str, finish_reason: str | None, produced: int, called: int
    ) -> None:
        if finish_reason == "error":
            raise BadOutputError(f"the model stopped with an error after {produced} characters")
        if not produced and not called:
            # Silence would leave the user waiting; OpenRouter documents this for cold starts.
            raise BadOutputError(f"the model sent an empty reply (finish_reason {finish_reason})")
        if finish_reason not in ("stop", "tool_calls"):
            self.log.debug(
                "%s finished with %s after %d characters", model, finish_reason, produced
            )

    def _chunk_parts(self, chunk: Any) -> tuple[str | None, str | None, Any] | None:
        """(content, finish_reason, tool call deltas) of a stream chunk's first choice;
        None for a chunk without choices. The client builds chunks without validating
        them, so an event of another shape (``data: [1]``, ``"choices": "x"``) is bad
        output here."""
        try:
            choices = chunk.choices
            if not choices:
                return None
            choice = choices[0]
            delta = choice.delta
            content = delta.content if delta is not None else None
            deltas = delta.tool_calls if delta is not None else None
            finish = choice.finish_reason
        except (AttributeError, TypeError, KeyError, IndexError):
            pass
        else:
            if isinstance(content, str | None) and isinstance(finish, str | None):
                return content, finish, deltas
        raise BadOutputError(f"{self.host} sent a stream event that is not a chat completion chunk")

    def _completion_parts(self, completion: Any) -> tuple[str | None, str | None, Any]:
        """(content, finish_reason, tool_calls) of a whole completion's first choice."""
        error = getattr(completion, "error", None)
        if error is not None:
            # OpenRouter answers 200 with an error object when the model failed after
            # the request was accepted.
            raise self.errors.stream_error({"error": error})
        try:
            choice = completion.choices[0]
            message = choice.message
            content = message.content
            calls = message.tool_calls
            finish = choice.finish_reason
        except (AttributeError, TypeError, KeyError, IndexError):
            pass
        else:
            if isinstance(content, str | None) and isinstance(finish, str | None):
                return content, finish, calls
        raise BadOutputError(f"{self.host} sent a response that is not a chat completion")

    async def _list_models_impl(self) -> list[str]:
        client = self.client()
        try:
            page = await client.models.list()
        except AttributeError:
            # The client builds its page from a 200 that is not JSON (an HTML page) as a
            # str, then fails on it.
            raise BadOutputError(f"{self.host} sent a model list that is not JSON") from None
        except Exception as exc:
            raise self.translate(exc) from None
        data = getattr(page, "data", None)
        if not isinstance(data, list):  # JSON, but not the API's list
            raise BadOutputError(f"{self.host} sent a model list that is not the API's JSON")
        models = sorted({m.id for m in data if getattr(m, "id", None)})
        if not models:
            raise BadOutputError(f"{self.host} listed no models")
        return models

    # -- errors ----------------------------------------------------------

    @property
    def errors(self) -> ErrorTranslator:
        """The core's reading of client errors, for the endpoint and timeout in force
        (both are settings, so it is made on use). Neither the key nor a password in
        the base URL survives in anything the server said."""
        return ErrorTranslator(
            self.host,
            key_env=API_KEY.env,
            secrets=lambda: [self._api_key, urlsplit(self.base_url).password or ""],
            timeout=self.timeout,
        )

    def translate(
        self,
        exc: BaseException,
        *,
        model: str | None = None,
        produced: int = 0,
        streaming: bool = False,
        sent: _Sent | None = None,
    ) -> BaseException:
        """The core's error for a client exception (``exc`` itself when it is none the
        translator knows: the core then reports an internal error, without its text).

        ``streaming``: the reply had begun; ``produced``: characters already yielded;
        ``sent``: what the request carried (tools, images), which a model may refuse.
        """
        return self.errors.translate(
            exc,
            produced=f"after {produced} characters" if produced else "",
            has_key=self.has_key,
            connected=streaming,
            on_status=lambda failure: self._status(failure, model, sent),
        )

    def _status(
        self, failure: HttpFailure, model: str | None, sent: _Sent | None = None
    ) -> ProviderError | None:
        """What this service's statuses mean beyond the usual reading: a model that
        takes no tools or images (OpenRouter says so with a 404, others with a 400),
        a missing model (or model list), an empty OpenRouter account (402)."""
        refused = self._refused(failure, model, sent)
        if refused is not None:
            return refused
        if failure.status == 404 and model is None:
            return ConfigurationError(
                f"{self.host} has no model list at {self.public_base_url}/models;"
                " check OPENROUTER_BASE_URL"
            )
        if failure.status == 404:
            return ConfigurationError(
                f"the model `{model}` was not found at {self.host}. Choose another with"
                " `!model NAME` (see `!openrouter models`), or check OPENROUTER_BASE_URL."
            )
        if failure.status == 402:
            detail = f": {failure.detail}" if failure.detail else ""
            return ProviderStatusError(
                f"{self.host} says the account is out of credits (HTTP 402){detail}", status=402
            )
        return None

    def _refused(
        self, failure: HttpFailure, model: str | None, sent: _Sent | None
    ) -> _Refused | None:
        """The model refused the tools or images the request carried (or tools in a
        streamed request): what it lacks, and the settings that stop sending them.
        Servers say it in words only (OpenRouter: "No endpoints found that support
        tool use" / "... image input"; OpenAI: "image_url is only supported by certain
        models"; Ollama: "... does not support tools"; llama.cpp: "tools param requires
        --jinja flag", "Cannot use tools with stream")."""
        if sent is None or failure.status not in REFUSAL_STATUSES:
            return None
        return self._refusal(f"{failure.detail} {failure.code}", failure.detail, model, sent)

    def _refused_mid_stream(self, exc: BaseException, model: str, sent: _Sent) -> _Refused | None:
        """An error event inside a 200 stream that says the same (OpenRouter sends one
        when the provider it routed to refuses after the stream began)."""
        import openai

        if not isinstance(exc, openai.APIError) or isinstance(exc, openai.APIStatusError):
            return None
        code, message = body_message(exc.body)
        if code.isdigit() and int(code) not in REFUSAL_STATUSES:
            return None  # e.g. OpenRouter's 502: the upstream model failed
        detail = self.errors.scrub(message)
        return self._refusal(f"{detail} {self.errors.scrub(code)}", detail, model, sent)

    def _refusal(self, words: str, detail: str, model: str | None, sent: _Sent) -> _Refused | None:
        # Quoted words are left out: OpenRouter quotes the tool names ('Try disabling
        # "image_search"'), which must not read as words about images.
        said = re.sub(r'"[^"]*"', '""', words.lower())
        lacks: set[Lack] = set()
        refusals: list[tuple[str, str]] = []  # (what the model does not take, the fix)
        if sent.tools and TOOL_WORDS.search(said) and REFUSAL_WORDS.search(said):
            if sent.stream and "stream" in said:
                # A server that runs tools only unstreamed (llama.cpp before mid-2025).
                lacks.add(Lack.STREAMED_TOOLS)
                refusals.append(
                    (
                        "streamed tool calls",
                        "`!config llm_openrouter stream off` (or `tools off`)",
                    )
                )
            else:
                lacks.add(Lack.TOOLS)
                refusals.append(("tool calls", "`!config llm_openrouter tools off`"))
        if sent.images and IMAGE_WORDS.search(said) and REFUSAL_WORDS.search(said):
            lacks.add(Lack.IMAGES)
            refusals.append(("images", "`!config llm_openrouter vision off`"))
        if not refusals:
            return None
        what = " or ".join(what for what, _ in refusals)
        fixes = " and ".join(fix for _, fix in refusals)
        said_so = f" ({self.host} said: {detail})" if detail else ""
        return _Refused(
            f"the model `{model}` at {self.host} does not take {what}. A server admin can"
            f" switch that off with {fixes}, or choose another model with `!model NAME`."
            f"{said_so}",
            frozenset(lacks),
            detail,
        )
