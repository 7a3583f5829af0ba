"""``OllamaGenerator``: streamed chat replies from an Ollama server.

It talks to Ollama through the official ``ollama`` async client (httpx underneath).
The core's :class:`hark.api.ErrorTranslator` turns what can go wrong into Hark's
provider errors; this module only adds what is Ollama's own (``ollama.ResponseError``,
a model that is not pulled, a model that takes no tools or no images).

Images and tools (the formats are in :mod:`hark_llm_ollama.wire`): the class says it
supports both, so the core hands them on; each server can switch either off
(``!config llm_ollama vision off`` / ``tools off``), and ``_impl`` then replaces the
images with the core's notes or offers no tools. A model that turns out not to take
them (Ollama refuses the request) gets the same request again without them, once,
before anything was handed on; the generator remembers that per Ollama server and
model (:meth:`OllamaGenerator.lacks`), so later requests leave them out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from hark import (
    BadOutputError,
    ConfigurationError,
    GenerationRequest,
    Generator,
    PromptMessage,
    ProviderError,
    ToolCall,
    ToolSpec,
    register_secret,
)
from hark.api import ErrorTranslator, HttpFailure, without_images
from hark_llm_ollama.settings import (
    DEFAULT_HOST,
    DEFAULT_MODEL,
    OLLAMA_KEY,
    OllamaSettings,
    keep_alive_value,
    options_of,
)
from hark_llm_ollama.wire import ollama_messages, ollama_tool, tool_call_of

if TYPE_CHECKING:
    import ollama

# The ``ollama`` client (and httpx with it, ~10 MB) is imported where a client is made
# or one of its answers or errors is read, not with the plugin: `bot plugins` and a bot
# whose servers use another LLM never load it.

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "TOOLS",
    "VISION",
    "OllamaGenerator",
    "OllamaModel",
    "public_url",
    "same_model",
]

DEFAULT_PORT = 11434


@functools.cache
def option_names() -> frozenset[str]:
    """Ollama's model options (``num_ctx``, ``top_p``, ``stop``...): request options with
    these names are passed through; anything else is not Ollama's and is ignored."""
    import ollama

    return frozenset(ollama.Options.model_fields)


_NOT_FOUND = re.compile(r"model\s+['\"]?(?P<name>[^'\"]*?)['\"]?\s+not found", re.IGNORECASE)
# Ollama's 400 for tools sent to a model without the capability ("<model> does not
# support tools"), and what a model without a vision projector answers to images (a
# 400 from the capability check, or the runner's 500 / mid-stream error).
_NO_TOOLS = re.compile(r"does not support tools", re.IGNORECASE)
_NO_IMAGES = re.compile(
    r"does not support (vision|images?\b)|does not support image input"
    r"|missing data required for image input|vision model not found",
    re.IGNORECASE,
)
#: What a model can lack, as Ollama's ``/api/show`` names the capabilities.
TOOLS, VISION = "tools", "vision"
#: How many (server, model) pairs the generator remembers a missing capability for.
LACKING_SIZE = 256
# What the log says once per server and model, and what the request does instead.
_DEGRADED = {
    TOOLS: (
        "does not support tools; answering without them (set `!config llm_ollama tools off`"
        " to stop offering them)"
    ),
    VISION: (
        "cannot read images; sending notes in their place (set `!config llm_ollama vision"
        " off` to stop sending them)"
    ),
}


def _model_name(name: str) -> str:
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def same_model(a: str | None, b: str | None) -> bool:
    """Ollama names: ``llama3.2`` and ``llama3.2:latest`` are the same model."""
    if not a or not b:
        return False
    return _model_name(a) == _model_name(b)


def public_url(host: str) -> str:
    """``host`` as the client will use it, fit to show: scheme, host, port and path only.

    Credentials (``user:pass@``), query and fragment are dropped so that an
    ``OLLAMA_HOST`` with secrets in it never reaches a message or a log line.
    Like the ``ollama`` client, a host without a scheme means ``http://`` and a
    host without a port means Ollama's port 11434."""
    text = host.strip() or DEFAULT_HOST
    has_scheme = "://" in text
    parts = urlsplit(text if has_scheme else f"http://{text}")
    scheme = parts.scheme or "http"
    hostname = parts.hostname or "localhost"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = DEFAULT_PORT if not has_scheme else (443 if scheme == "https" else 80)
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, f"{hostname}:{port}", path, "", ""))


def _password(host: str) -> str | None:
    with contextlib.suppress(ValueError):
        return urlsplit(host if "://" in host else f"http://{host}").password
    return None


@dataclass(frozen=True, slots=True)
class OllamaModel:
    """A model on the Ollama server, as ``/api/tags`` lists it."""

    name: str
    size: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    family: str | None = None

    def describe(self) -> str:
        bits = [b for b in (self.parameter_size, self.quantization) if b]
        if self.size:
            bits.append(f"{self.size / 1e9:.1f} GB")
        return ", ".join(bits)


class OllamaGenerator(Generator):
    """Replies from an Ollama server, streamed token by token.

    Configured by the plugin's settings (:class:`OllamaSettings`, ``!config
    llm_ollama``): ``host`` (``OLLAMA_HOST``, default ``http://localhost:11434``) and
    ``timeout`` (``OLLAMA_TIMEOUT``, seconds to wait for each piece of the reply,
    default 120: the first one includes loading the model into memory) bot-wide,
    ``model`` (``OLLAMA_MODEL``, default ``llama3.2``) and the model's options per
    server. ``host``, ``model`` and ``timeout`` given to the constructor win over
    the settings (for scripts and tests).
    """

    supports_model_listing = True
    # Class-wide, as the core reads them before a server is known; the per-server
    # ``vision`` / ``tools`` settings switch them off in ``_impl``.
    supports_vision = True
    supports_tools = True
    # Used outside a bot (tests, scripts); in the bot, the plugin's declaration.
    settings_model = OllamaSettings

    def __init__(
        self,
        *,
        host: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        retry: Any = None,
        connect_timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.environ = environ  # the settings' environment layer (None: os.environ)
        given = {"host": host or None, "model": model or None, "timeout": timeout}
        self._fixed = {key: value for key, value in given.items() if value is not None}
        if retry is not None:
            self.retry = retry
        self.connect_timeout = connect_timeout
        self._cached: tuple[asyncio.AbstractEventLoop, str, ollama.AsyncClient] | None = None
        self._errors: tuple[str, ErrorTranslator] | None = None
        # (server, model) -> what Ollama refused for that model ("tools", "vision"),
        # oldest first, at most LACKING_SIZE pairs.
        self._lacking: dict[tuple[str, str], frozenset[str]] = {}

    # -- configuration ---------------------------------------------------

    def bot_wide(self) -> OllamaSettings:
        """The bot-wide settings (where the server is, the default model)."""
        resolved = self.resolve()
        assert resolved is not None
        return self._with_fixed(resolved.values)

    def _with_fixed(self, settings: OllamaSettings | None) -> OllamaSettings:
        if settings is None:  # a request built by hand, outside generate()
            return self.bot_wide()
        return settings.model_copy(update=self._fixed) if self._fixed else settings

    @property
    def timeout(self) -> float:  # the core's per-piece deadline
        return self.bot_wide().timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._fixed["timeout"] = value

    @property
    def host(self) -> str:
        """The Ollama server's address (``host`` setting, ``OLLAMA_HOST``, localhost)."""
        return self.bot_wide().host

    @property
    def public_host(self) -> str:
        """:attr:`host` without credentials, for messages and logs."""
        return public_url(self.host)

    @property  # type: ignore[override]
    def default_model(self) -> str:
        """The model where no server has chosen one (bot-wide ``model``, ``OLLAMA_MODEL``)."""
        return self.bot_wide().model

    def model_for(self, guild_id: int | None) -> str:
        """The model a server uses, as the core's ``generate()`` and ``!model`` ask."""
        resolved = self.resolve(guild_id)
        return self._with_fixed(resolved.values if resolved else None).model

    def match_model(self, name: str, models: list[str]) -> str | None:
        """``llama3.2`` means ``llama3.2:latest`` (for the core's ``!model``)."""
        return next((m for m in models if same_model(m, name)), None)

    async def check_setting(self, key: str, value: Any) -> Any:
        """`!config llm_ollama model NAME`: only a model pulled on the server, stored as
        the server lists it. While the server is unreachable the name is taken unchecked."""
        if key != "model":
            return value
        try:
            async with asyncio.timeout(self.connect_timeout):
                models = await self.fetch_models()
        except (TimeoutError, ProviderError) as exc:
            self.log.warning("%s: took model %r unchecked (%s)", self.id, value, exc)
            return value
        match = self.match_model(value, [m.name for m in models])
        if match is None:
            raise ValueError(
                f"`{value}` is not on the Ollama server; pull it there with `ollama pull"
                f" {value}`, or pick one from `!ollama models`"
            )
        return match

    def unavailable_reason(self) -> str | None:
        parts = urlsplit(self.host if "://" in self.host else f"http://{self.host}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"OLLAMA_HOST `{public_url(self.host)}` is not an http(s) address"
        return None

    # -- what a model was found to lack -----------------------------------

    def lacks(self, model: str | None, host: str | None = None) -> frozenset[str]:
        """What ``model`` on the Ollama server at ``host`` (default :attr:`host`) was
        found not to take since the bot started: ``"tools"``, ``"vision"``, or neither.
        Requests to it leave those out, whatever the server's settings say."""
        if not model:
            return frozenset()
        return self._lacking.get(_lacking_key(host or self.host, model), frozenset())

    def _learn(self, host: str, model: str, capability: str) -> None:
        """Remember that ``model`` on ``host`` lacks ``capability`` (logged once)."""
        key = _lacking_key(host, model)
        known = self._lacking.pop(key, frozenset())
        self._lacking[key] = known | {capability}
        while len(self._lacking) > LACKING_SIZE:
            del self._lacking[next(iter(self._lacking))]
        if capability not in known:
            self.log.warning("model `%s` at %s %s", model, public_url(host), _DEGRADED[capability])

    def forget_lacking(self, host: str | None = None, keep: Iterable[str] | None = None) -> None:
        """Forget what models on ``host`` (default: every server) were found to lack;
        with ``keep``, only for the models not named in it (those no longer pulled)."""
        server = None if host is None else public_url(host)
        kept = None if keep is None else {_model_name(name) for name in keep}
        for key in list(self._lacking):
            if server is not None and key[0] != server:
                continue
            if kept is None or key[1] not in kept:
                del self._lacking[key]

    # -- the client --------------------------------------------------------

    def _client(self, host: str | None = None) -> ollama.AsyncClient:
        """One client (one connection pool) per event loop and host."""
        loop = asyncio.get_running_loop()
        host = host or self.host
        cached = self._cached
        if cached is None or cached[0] is not loop or cached[1] != host:
            OLLAMA_KEY.value(self.environ)  # registered for redaction; the client sends it
            # A password in OLLAMA_HOST (behind a proxy) is redacted from every log line.
            register_secret(_password(host))
            import httpx
            import ollama

            try:
                client = ollama.AsyncClient(
                    host=host, timeout=httpx.Timeout(None, connect=self.connect_timeout)
                )
            except (ValueError, httpx.InvalidURL) as exc:
                raise ConfigurationError(
                    f"OLLAMA_HOST `{public_url(host)}` is not a valid address"
                ) from exc
            self._cached = cached = (loop, host, client)
        return cached[2]

    async def warm(self) -> None:
        """Open the connection pool with ``GET /api/ps`` (cheap: it lists the loaded
        models), so the first reply does not pay for the TCP/TLS handshake. The model
        itself is not loaded here. Never raises: a failure is logged at DEBUG."""
        if self.unavailable_reason() is not None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._client().ps()
        except Exception as exc:
            self.log.debug("warm-up of %s failed (%s)", self.public_host, type(exc).__name__)
        else:
            self.log.debug("warmed the connection to %s", self.public_host)

    async def prime(
        self,
        messages: Sequence[PromptMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        guild_id: int | None = None,
    ) -> None:
        """Load the server's model and evaluate how its turns begin (one token), so
        the first voice turn neither loads the model nor evaluates the persona:
        Ollama keeps both (``keep_alive``) and reuses the evaluated start."""
        if self.unavailable_reason() is not None:
            return
        async for _ in self.generate(messages, tools=tools, guild_id=guild_id, max_tokens=1):
            pass

    async def aclose(self) -> None:
        """Close the HTTP connection pool (the core calls this at shutdown; a later call
        opens a new one)."""
        cached, self._cached = self._cached, None
        if cached is not None and cached[0] is asyncio.get_running_loop():
            await cached[2].close()

    # -- requests ----------------------------------------------------------

    @staticmethod
    def convert_messages(messages: list[PromptMessage]) -> list[dict[str, Any]]:
        """Hark's prompt as Ollama chat messages (speaker names kept in the text;
        images, tool calls and tool results in Ollama's fields)."""
        return ollama_messages(messages)

    def options_for(self, request: GenerationRequest) -> dict[str, Any]:
        """Ollama ``options``: the server's settings, then the request's own values."""
        options = options_of(self._with_fixed(request.settings))
        for key, value in request.options.items():
            if key in option_names() and value is not None:
                options[key] = value
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        return options

    def chat_arguments(self, request: GenerationRequest) -> dict[str, Any]:
        """Keyword arguments for ``AsyncClient.chat`` (without ``stream``)."""
        settings = self._with_fixed(request.settings)
        model = request.model or settings.model
        if not model:
            raise ConfigurationError(
                "no Ollama model is configured; set OLLAMA_MODEL or `!config llm_ollama model`"
            )
        lacks = self.lacks(model, settings.host)
        # A server whose model cannot see: the same notes the core writes for a
        # generator without vision.
        vision = settings.vision and VISION not in lacks
        messages = request.messages if vision else without_images(request.messages)
        arguments: dict[str, Any] = {"model": model, "messages": self.convert_messages(messages)}
        if request.tools and settings.tools and TOOLS not in lacks:
            arguments["tools"] = [ollama_tool(spec) for spec in request.tools]
        options = self.options_for(request)
        if options:
            arguments["options"] = options
        keep_alive = request.options.get("keep_alive")
        if keep_alive is None and settings.keep_alive is not None:
            keep_alive = keep_alive_value(settings.keep_alive)
        if keep_alive is not None:
            arguments["keep_alive"] = keep_alive
        think = request.options.get("think")
        if think is None:
            think = settings.think
        if think is not None:
            arguments["think"] = think
        return arguments

    async def _impl(self, request: GenerationRequest) -> AsyncIterator[str | ToolCall]:
        host = self._with_fixed(request.settings).host
        retried: set[str] = set()  # capabilities already left out after a refusal
        while True:
            arguments = self.chat_arguments(request)
            offered = "tools" in arguments
            sent = calls = 0  # characters and tool calls handed on
            try:
                stream = await self._client(host).chat(stream=True, **arguments)
                finished = False
                async with contextlib.aclosing(stream):
                    async for part in stream:
                        message = part.message
                        content = message.content if message is not None else None
                        if content:
                            sent += len(content)
                            yield content
                        # Ollama sends each call whole (arguments parsed), in whichever
                        # piece it finished: usually one before the last, with done=false;
                        # in the one object of a reply that was not streamed.
                        for call in (message.tool_calls or ()) if message is not None else ():
                            if not offered:
                                raise BadOutputError(
                                    f"Ollama sent a tool call ({call.function.name!r}) but no"
                                    " tools were offered"
                                )
                            calls += 1
                            yield tool_call_of(call.function.name, call.function.arguments)
                        if part.done:
                            finished = True
                            self._log_done(part)
                            break
                if not finished:
                    raise BadOutputError("Ollama's reply stream ended before it was done")
                return
            except Exception as exc:
                lacking = _refused(exc, arguments)
                if lacking is not None:
                    self._learn(host, arguments["model"], lacking)
                    if not sent and not calls and lacking not in retried:
                        # Nothing was handed on: the same request without what the
                        # model cannot take (next time it is left out at once).
                        retried.add(lacking)
                        continue
                raise self.translate(
                    exc, host=host, model=arguments["model"], produced=_produced(sent, calls)
                ) from None

    def _log_done(self, part: ollama.ChatResponse) -> None:
        seconds = (part.eval_duration or 0) / 1e9
        rate = f"{part.eval_count / seconds:.1f} tok/s" if part.eval_count and seconds else "?"
        self.log.debug(
            "%s: %s (%s prompt tokens, %s reply tokens, %s)",
            part.model,
            part.done_reason,
            part.prompt_eval_count,
            part.eval_count,
            rate,
        )
        if part.done_reason == "length":
            self.log.info("%s: the reply was cut at the token limit", part.model)

    async def fetch_models(self) -> list[OllamaModel]:
        """The server's models with their details (one try; see :meth:`models_info`)."""
        try:
            listing = await self._client().list()
        except Exception as exc:
            raise self.translate(exc) from None
        found = []
        for entry in listing.models:
            if not entry.model:
                continue
            details = entry.details
            found.append(
                OllamaModel(
                    name=entry.model,
                    size=entry.size,
                    parameter_size=details.parameter_size if details else None,
                    quantization=details.quantization_level if details else None,
                    family=details.family if details else None,
                )
            )
        # A model removed from the server is checked afresh once it is pulled again.
        self.forget_lacking(self.host, keep=[m.name for m in found])
        return sorted(found, key=lambda m: m.name)

    async def models_info(self) -> list[OllamaModel]:
        """:meth:`fetch_models` through the core (deadline, retries, metrics)."""
        return await self._call("list_models", self.fetch_models)

    async def _list_models_impl(self) -> list[str]:
        return [m.name for m in await self.fetch_models()]

    # -- errors ------------------------------------------------------------

    def errors(self, host: str | None = None) -> ErrorTranslator:
        """The error translator for the Ollama server at ``host`` (default :attr:`host`),
        one per address: messages name the server the request went to, without its
        credentials, and the server's own text never shows the key or the password."""
        host = host or self.host
        if self._errors is None or self._errors[0] != host:
            translator = ErrorTranslator(
                f"Ollama at {public_url(host)}",
                key_env=OLLAMA_KEY.env,
                secrets=lambda: [OLLAMA_KEY.value(self.environ), _password(host) or ""],
                # No number to quote: the client waits without a deadline once connected
                # (the core enforces ``timeout`` on each piece of the reply).
                timeout=None,
            )
            self._errors = (host, translator)
        return self._errors[1]

    def translate(
        self,
        exc: BaseException,
        *,
        host: str | None = None,
        model: str | None = None,
        produced: str = "",
    ) -> BaseException:
        """The provider error for ``exc``: the ``ollama`` client's own exceptions here,
        the httpx ones (and JSON / pydantic errors) by the shared translator."""
        import ollama

        errors = self.errors(host)
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code is None or exc.status_code < 100:
                # An ``{"error": ...}`` line inside a 200 stream: the model failed mid-reply.
                unsupported = self._unsupported(errors.scrub(str(exc.error)), model)
                return unsupported or errors.stream_error(exc.error, produced)
            # ollama raises ResponseError "from None" inside ``except httpx.HTTPStatusError``,
            # so the response (and its Retry-After) is still the exception's __context__.
            response = getattr(exc.__context__, "response", None)
            failure = errors.failure(exc.status_code, exc.error, getattr(response, "headers", None))
            return errors.status_error(
                failure,
                has_key=OLLAMA_KEY.is_set(self.environ),
                on_status=lambda found: (
                    self._not_pulled(found, model) or self._unsupported(found.detail, model)
                ),
            )
        if isinstance(exc, ollama.RequestError):
            detail = errors.scrub(exc.error)
            return ConfigurationError(f"invalid request to {errors.service}: {detail}")
        if type(exc) is ConnectionError:
            # ollama's non-streaming calls turn httpx.ConnectError into this builtin.
            return errors.broken(connected=False)
        return errors.translate(exc, produced=produced)

    @staticmethod
    def _unsupported(detail: str, model: str | None) -> ProviderError | None:
        """A model without tools or vision, told what a server admin can switch off (once
        part of the reply was handed on; before that, ``_impl`` asks again without them)."""
        name = f"model `{model}`" if model else "this Ollama model"
        if _NO_TOOLS.search(detail):
            return ConfigurationError(
                f"{name} does not support tools; choose another with `!model`, or switch"
                " tools off here with `!config llm_ollama tools off`"
            )
        if _NO_IMAGES.search(detail):
            return ConfigurationError(
                f"{name} cannot read images; choose another with `!model`, or switch"
                " images off here with `!config llm_ollama vision off`"
            )
        return None

    @staticmethod
    def _not_pulled(failure: HttpFailure, model: str | None) -> ProviderError | None:
        missing = _NOT_FOUND.search(failure.detail) if failure.status == 404 else None
        if missing is None:
            return None
        name = model or missing.group("name")
        return ConfigurationError(
            f"model `{name}` is not on the Ollama server; pull it with "
            f"`ollama pull {name}` or choose another with `!model`"
        )


def _lacking_key(host: str, model: str) -> tuple[str, str]:
    return public_url(host), _model_name(model)


def _refused(exc: BaseException, arguments: Mapping[str, Any]) -> str | None:
    """``"tools"`` or ``"vision"`` when ``exc`` is Ollama refusing what the request
    sent to a model that cannot take it (the 400 for tools; for images the runner's
    error line in the stream, or its 500), else None."""
    import ollama

    if not isinstance(exc, ollama.ResponseError):
        return None
    detail = str(exc.error)
    if "tools" in arguments and _NO_TOOLS.search(detail):
        return TOOLS
    images = any(m.get("images") for m in arguments.get("messages") or ())
    if images and _NO_IMAGES.search(detail):
        return VISION
    return None


def _produced(characters: int, calls: int) -> str:
    """What reached the caller before a failure ("" for nothing: it may be retried)."""
    said = [f"{characters} characters"] if characters else []
    said += [f"{calls} tool call{'s' if calls != 1 else ''}"] if calls else []
    return f"after {' and '.join(said)}" if said else ""
