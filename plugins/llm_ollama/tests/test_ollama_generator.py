"""OllamaGenerator through the real ``ollama`` client against the loopback fake server."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import entry_points

import hark_llm_ollama
import pytest
from fake_ollama import FakeOllama, unused_url
from hark_llm_ollama import DEFAULT_MODEL, OllamaGenerator, public_url, same_model

from hark import Capability, PromptMessage
from hark.providers import RetryPolicy
from hark.providers.errors import (
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from hark.testing.harness import isolated_manager

PROMPT = [
    PromptMessage("system", "You are Hark."),
    PromptMessage("user", "Hi, I'm Alice.", name="alice"),
    PromptMessage("assistant", "Hi Alice!"),
    PromptMessage("user", "What's my name?", name="alice"),
]
REPLY = "Your name is Alice, as you told me."
PIECES = ["Your", " name", " is", " Alice,", " as", " you", " told", " me."]


async def collect(stream) -> tuple[list[str], BaseException | None]:
    """Deltas until the stream ends or fails, and the error if it failed."""
    deltas: list[str] = []
    try:
        async for delta in stream:
            deltas.append(delta)
    except ProviderError as exc:
        return deltas, exc
    return deltas, None


# -- streaming and what reaches the server ------------------------------------


async def test_deltas_arrive_as_the_model_writes_them(fake_ollama, make_generator):
    fake_ollama.reply = REPLY
    release = fake_ollama.hold(after=1)  # the server stops after the first piece
    stream = make_generator().generate(PROMPT)

    first = await asyncio.wait_for(anext(stream), 5)
    assert first == "Your"  # one piece, while the server still holds the rest
    assert fake_ollama.open_streams == 1 and not release.is_set()

    release.set()
    rest = [delta async for delta in stream]
    assert [first, *rest] == PIECES
    assert fake_ollama.count() == 1


async def test_messages_model_and_options_reach_the_server(fake_ollama, make_generator):
    fake_ollama.reply = REPLY
    generator = make_generator()
    deltas = [
        d
        async for d in generator.generate(
            PROMPT, temperature=0.2, max_tokens=3, top_p=0.9, not_an_ollama_option=1
        )
    ]
    body = fake_ollama.last_chat
    assert body["model"] == DEFAULT_MODEL
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are Hark."},
        {"role": "user", "content": "alice: Hi, I'm Alice."},
        {"role": "assistant", "content": "Hi Alice!"},
        {"role": "user", "content": "alice: What's my name?"},
    ]
    assert body["options"] == {"temperature": 0.2, "num_predict": 3, "top_p": 0.9}
    assert "keep_alive" not in body and "think" not in body
    # the fake honours num_predict like Ollama: three pieces, then done_reason "length"
    assert deltas == PIECES[:3]


async def test_no_options_sent_when_none_are_set(fake_ollama, make_generator):
    await make_generator().complete(PROMPT)
    assert "options" not in fake_ollama.last_chat


async def test_settings_become_ollama_options(fake_ollama, make_generator, hark_settings_store):
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin("llm_ollama"))

    async def put(key, value, scope="global", target=None):
        await hark_settings_store.set_value("llm_ollama", key, value, scope, target)

    await put("temperature", 0.5)
    await put("num_ctx", 8192)
    await put("keep_alive", "10m")
    await put("temperature", 0.9, "server", 1)
    await put("think", False, "server", 1)

    await generator.complete(PROMPT, guild_id=1)
    body = fake_ollama.last_chat
    assert body["options"] == {"temperature": 0.9, "num_ctx": 8192}
    assert body["keep_alive"] == "10m"
    assert body["think"] is False

    await generator.complete(PROMPT, guild_id=2)
    body = fake_ollama.last_chat
    assert body["options"] == {"temperature": 0.5, "num_ctx": 8192}
    assert "think" not in body

    # the caller's explicit values win over the settings
    await generator.complete(PROMPT, guild_id=1, temperature=0.1, keep_alive=-1)
    body = fake_ollama.last_chat
    assert body["options"]["temperature"] == 0.1
    assert body["keep_alive"] == -1


async def test_model_per_server(fake_ollama, make_generator, hark_settings_store, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODEL", "qwen2.5:7b")
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin("llm_ollama"))
    await generator.set_model(1, "llama3.2")  # as the core's `!model` stores it

    await generator.complete(PROMPT, guild_id=1)
    assert fake_ollama.last_chat["model"] == "llama3.2"
    await generator.complete(PROMPT, guild_id=2)
    assert fake_ollama.last_chat["model"] == "qwen2.5:7b"
    await generator.complete(PROMPT, guild_id=1, model="qwen2.5:7b")
    assert fake_ollama.last_chat["model"] == "qwen2.5:7b"

    assert generator.resolve(1).origin("model").label == "this server"
    assert generator.resolve(2).origin("model").label == "env OLLAMA_MODEL"
    await generator.set_model(1, None)
    assert generator.model_for(1) == "qwen2.5:7b"
    assert generator.match_model("llama3.2", ["llama3.2:latest"]) == "llama3.2:latest"


async def test_configured_from_the_environment(fake_ollama, monkeypatch):
    host = fake_ollama.url.removeprefix("http://")  # host:port, as OLLAMA_HOST often is
    monkeypatch.setenv("OLLAMA_HOST", host)
    monkeypatch.setenv("OLLAMA_MODEL", "qwen2.5:7b")
    monkeypatch.setenv("OLLAMA_TIMEOUT", "7.5")
    generator = OllamaGenerator()
    assert generator.timeout == 7.5
    assert generator.public_host == fake_ollama.url
    assert await generator.complete(PROMPT) == fake_ollama.reply
    assert fake_ollama.last_chat["model"] == "qwen2.5:7b"


async def test_defaults_without_environment():
    generator = OllamaGenerator()
    assert generator.host == "http://localhost:11434"
    assert generator.default_model == DEFAULT_MODEL == generator.model_for(None)
    assert generator.resolve().origin("model").label == "default"
    assert generator.timeout == 120.0
    assert generator.unavailable_reason() is None
    assert OllamaGenerator(host="ftp://example.invalid").unavailable_reason()


async def test_a_whole_answer_in_one_object_is_accepted(fake_ollama, make_generator):
    """A proxy that ignores ``stream`` sends one JSON object with ``done: true``."""
    fake_ollama.ignore_stream = True
    deltas = [d async for d in make_generator().generate(PROMPT)]
    assert deltas == [fake_ollama.reply]
    assert fake_ollama.last_chat["stream"] is True


# -- failures ----------------------------------------------------------------


async def test_503_twice_then_success_is_retried(fake_ollama, make_generator):
    fake_ollama.fail(503, times=2)
    generator = make_generator()
    assert await generator.complete(PROMPT) == fake_ollama.reply
    assert fake_ollama.count() == 3
    assert generator.stats.retries == 2


async def test_5xx_gives_up_after_the_policy(fake_ollama, make_generator):
    fake_ollama.fail(500, times=10, error="llama runner process has terminated")
    generator = make_generator()
    deltas, error = await collect(generator.generate(PROMPT))
    assert deltas == []
    assert isinstance(error, ProviderStatusError) and error.status == 500
    assert "llama runner process has terminated" in error.message
    assert error.provider == "llm_ollama"
    assert fake_ollama.count() == 3


async def test_429_waits_for_retry_after(fake_ollama, make_generator):
    fake_ollama.fail(429, times=1, retry_after=0.3)
    generator = make_generator()
    started = time.monotonic()
    assert await generator.complete(PROMPT) == fake_ollama.reply
    assert time.monotonic() - started >= 0.3  # the backoff alone would wait ~0.01 s
    assert fake_ollama.count() == 2


async def test_429_retry_after_reaches_the_error(fake_ollama, make_generator):
    fake_ollama.fail(429, times=5, retry_after=0.01)
    generator = make_generator(retry=RetryPolicy(attempts=2, base_delay=0.01))
    _, error = await collect(generator.generate(PROMPT))
    assert isinstance(error, ProviderStatusError)
    assert (error.status, error.retry_after) == (429, 0.01)
    assert fake_ollama.count() == 2


async def test_too_long_retry_after_is_not_waited_out(fake_ollama, make_generator):
    fake_ollama.fail(503, times=1, retry_after=3600)
    _, error = await collect(make_generator().generate(PROMPT))
    assert isinstance(error, ProviderStatusError) and error.retry_after == 3600
    assert fake_ollama.count() == 1


async def test_missing_model_asks_for_a_pull_and_is_not_retried(fake_ollama, make_generator):
    generator = make_generator(model="mistral")
    deltas, error = await collect(generator.generate(PROMPT))
    assert deltas == []
    assert isinstance(error, ConfigurationError)
    assert error.message == (
        "model `mistral` is not on the Ollama server; pull it with `ollama pull mistral` "
        "or choose another with `!model`"
    )
    assert error.user_message.startswith("Sorry, model `mistral` is not on the Ollama server")
    assert fake_ollama.count() == 1


async def test_other_client_errors_are_not_retried(fake_ollama, make_generator):
    fake_ollama.fail(400, times=5, error='invalid option "num_ctx"')
    _, error = await collect(make_generator().generate(PROMPT))
    assert isinstance(error, ProviderStatusError) and error.status == 400
    assert 'invalid option "num_ctx"' in error.user_message
    assert fake_ollama.count() == 1


async def test_404_from_something_else_is_a_status_error(fake_ollama, make_generator):
    fake_ollama.fail(404, times=1, error="page not found")
    _, error = await collect(make_generator().generate(PROMPT))
    assert type(error) is ProviderStatusError and error.status == 404


async def test_a_rejected_key_names_the_variable_and_never_shows_a_secret(fake_ollama, monkeypatch):
    monkeypatch.setenv("OLLAMA_API_KEY", "ol-key-s3cret")
    host = fake_ollama.url.replace("http://", "http://admin:hunter2@")
    generator = OllamaGenerator(host=host, retry=RetryPolicy(attempts=1))
    fake_ollama.fail(401, times=1, error="bad token ol-key-s3cret for admin:hunter2")
    _, error = await collect(generator.generate(PROMPT))
    assert isinstance(error, ProviderStatusError) and error.status == 401
    assert error.message == (
        f"Ollama at {fake_ollama.url} rejected the API key (HTTP 401); check OLLAMA_API_KEY:"
        " bad token *** for admin:***"
    )
    for text in (error.message, error.user_message, str(error)):
        assert "ol-key-s3cret" not in text and "hunter2" not in text
    monkeypatch.delenv("OLLAMA_API_KEY")
    fake_ollama.fail(403, times=1)
    _, error = await collect(generator.generate(PROMPT))
    assert "rejected the request without an API key (HTTP 403); check OLLAMA_API_KEY" in (
        error.message
    )


async def test_connection_refused_after_retries():
    host = unused_url()
    generator = OllamaGenerator(host=host, retry=RetryPolicy(attempts=3, base_delay=0.01))
    generator.plugin_id = "llm_ollama"
    deltas, error = await collect(generator.generate(PROMPT))
    assert deltas == []
    assert isinstance(error, ProviderConnectionError)
    assert error.message == f"could not connect to Ollama at {host}"
    assert generator.stats.retries == 2 and generator.stats.failures == 3


async def test_credentials_in_the_host_never_reach_messages():
    port = unused_url().rsplit(":", 1)[1]
    generator = OllamaGenerator(
        host=f"http://admin:hunter2@127.0.0.1:{port}/?token=s3cret",
        retry=RetryPolicy(attempts=1),
    )
    _, error = await collect(generator.generate(PROMPT))
    assert isinstance(error, ProviderConnectionError)
    for text in (error.message, error.user_message, str(error)):
        assert "hunter2" not in text and "admin" not in text and "s3cret" not in text
    assert f"http://127.0.0.1:{port}" in error.message
    # and the password is redacted from the bot's log lines
    from hark.logs import redact

    assert redact("Authorization for hunter2") == "Authorization for ***"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("disconnect", BadOutputError),  # not "couldn't reach": part of it did arrive
        ("invalid_json", BadOutputError),
        ("error_line", BadOutputError),
        ("no_done", BadOutputError),
    ],
)
async def test_broken_stream_after_output(fake_ollama, make_generator, mode, expected):
    fake_ollama.reply = REPLY
    fake_ollama.break_stream(mode, after=3)
    generator = make_generator()
    deltas, error = await collect(generator.generate(PROMPT))
    assert deltas == PIECES[:3]  # what was said stays said, exactly once
    assert isinstance(error, expected), error
    assert error.provider == "llm_ollama"
    assert fake_ollama.count() == 1  # never replayed once text reached the user
    if mode == "disconnect":
        assert error.message == (
            f"the connection to Ollama at {fake_ollama.url} broke mid-reply, after 12 characters"
        )


async def test_stream_broken_before_output_is_retried(fake_ollama, make_generator):
    fake_ollama.reply = REPLY
    fake_ollama.break_stream("disconnect", after=0)
    deltas, error = await collect(make_generator().generate(PROMPT))
    assert error is None
    assert deltas == PIECES
    assert fake_ollama.count() == 2


async def test_error_line_is_not_retried(fake_ollama, make_generator):
    fake_ollama.break_stream("error_line", after=0, times=5)
    _, error = await collect(make_generator().generate(PROMPT))
    assert isinstance(error, BadOutputError)
    assert "an error was encountered while running the model" in error.message
    assert fake_ollama.count() == 1


USED_NOTHING = "Sorry, `llm_ollama` sent back something I couldn't use."


async def test_an_html_page_is_bad_output_and_not_retried(fake_ollama, make_generator):
    """A proxy or captive portal answering 200 with its own page."""
    fake_ollama.bad_body_next(times=3)
    deltas, error = await collect(make_generator().generate(PROMPT))
    assert deltas == []
    assert isinstance(error, BadOutputError), error
    assert error.user_message == USED_NOTHING
    assert fake_ollama.count() == 1


async def test_a_line_that_is_not_json_is_bad_output_and_not_retried(fake_ollama, make_generator):
    fake_ollama.break_stream("invalid_json", after=0, times=3)
    deltas, error = await collect(make_generator().generate(PROMPT))
    assert deltas == []
    assert isinstance(error, BadOutputError), error
    assert error.user_message == USED_NOTHING
    assert fake_ollama.count() == 1


async def test_an_html_model_list_is_bad_output_and_not_retried(fake_ollama, make_generator):
    fake_ollama.bad_body_next(times=3, paths=["/api/tags"])
    with pytest.raises(BadOutputError) as caught:
        await make_generator().list_models()
    assert caught.value.user_message == USED_NOTHING
    assert fake_ollama.count("/api/tags") == 1


async def test_a_stalled_stream_times_out(fake_ollama, make_generator):
    fake_ollama.break_stream("stall", after=1)
    generator = make_generator(timeout=0.2, retry=RetryPolicy(attempts=1))
    deltas, error = await collect(generator.generate(PROMPT))
    assert len(deltas) == 1
    assert isinstance(error, ProviderTimeoutError)


async def test_closing_the_stream_releases_the_server(fake_ollama, make_generator):
    fake_ollama.delay = 0.01
    stream = make_generator().generate(PROMPT)
    assert await anext(stream)
    await stream.aclose()
    for _ in range(200):
        if fake_ollama.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert fake_ollama.open_streams == 0


async def test_aclose_releases_the_client_and_the_next_call_reopens(fake_ollama, make_generator):
    generator = make_generator()
    await generator.complete(PROMPT)
    client = generator._client()
    await generator.aclose()
    assert client._client.is_closed
    assert await generator.complete(PROMPT) == fake_ollama.reply
    assert generator._client() is not client


# -- models ------------------------------------------------------------------


async def test_list_models(fake_ollama, make_generator):
    fake_ollama.add_model("mistral:7b-instruct", parameter_size="7.2B")
    generator = make_generator()
    assert generator.supports_model_listing
    assert await generator.list_models() == [
        "llama3.2:latest",
        "mistral:7b-instruct",
        "qwen2.5:7b",
    ]
    info = {m.name: m for m in await generator.models_info()}
    assert info["mistral:7b-instruct"].parameter_size == "7.2B"
    assert info["llama3.2:latest"].quantization == "Q4_K_M"
    assert "GB" in info["llama3.2:latest"].describe()
    assert fake_ollama.requests[-1].path == "/api/tags"


async def test_list_models_failures(fake_ollama, make_generator):
    fake_ollama.fail(502, times=1, paths=("/api/tags",))
    generator = make_generator()
    assert await generator.list_models()  # retried once
    fake_ollama.fail(500, times=5, paths=("/api/tags",))
    with pytest.raises(ProviderStatusError):
        await generator.list_models()
    down = OllamaGenerator(host=unused_url(), retry=RetryPolicy(attempts=1))
    with pytest.raises(ProviderConnectionError, match="could not connect to Ollama"):
        await down.list_models()


# -- small pieces --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("", "http://localhost:11434"),
        ("127.0.0.1:1", "http://127.0.0.1:1"),
        ("gpu-box", "http://gpu-box:11434"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://ollama.example.com/", "https://ollama.example.com:443"),
        (
            "https://u:p@ollama.example.com:8443/ollama?key=x#f",
            "https://ollama.example.com:8443/ollama",
        ),
        ("http://[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_public_url(host, shown):
    assert public_url(host) == shown


def test_same_model():
    assert same_model("llama3.2", "llama3.2:latest")
    assert same_model("Qwen2.5:7B", "qwen2.5:7b")
    assert same_model("hf.co/org/model", "hf.co/org/model:latest")
    assert not same_model("llama3.2:1b", "llama3.2")
    assert not same_model(None, "llama3.2")


async def test_fake_server_speaks_the_documented_endpoints(fake_ollama, make_generator):
    client = make_generator()._client()
    shown = await client.show("llama3.2")
    assert shown.details.family
    from ollama import ResponseError

    with pytest.raises(ResponseError) as caught:
        await client.show("nope")
    assert caught.value.status_code == 404
    response = await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=False
    )
    assert response.done and response.done_reason == "stop"
    assert response.message.content == fake_ollama.reply
    assert response.eval_count == len(fake_ollama.reply.split())


async def test_reply_can_depend_on_the_request(make_generator, fake_ollama):
    async def echo(body):
        await asyncio.sleep(0)
        return "You said: " + body["messages"][-1]["content"]

    fake_ollama.reply = echo
    assert await make_generator().complete(PROMPT) == "You said: alice: What's my name?"


def test_fake_rejects_unknown_breaks():
    with pytest.raises(ValueError):
        FakeOllama().break_stream("explode")


# -- the plugin as the core loads it -----------------------------------------------


def test_entry_point_is_declared():
    found = {ep.name: ep.value for ep in entry_points(group="hark")}
    assert found.get("llm_ollama") == "hark_llm_ollama:plugin"


def test_registers_a_generator_and_a_cog():
    manager = isolated_manager({"llm_ollama": hark_llm_ollama})
    info = manager.get("llm_ollama")
    assert info.loaded, info.error
    assert info.capabilities == ["generate", "commands"]
    (generator,) = manager.providers(Capability.GENERATE)
    assert isinstance(generator, OllamaGenerator)
    assert generator.id == "llm_ollama"
    assert info.cogs == [hark_llm_ollama.OllamaCog]
    assert info.plugin is hark_llm_ollama.plugin
    assert info.description.startswith("Ollama: replies from a local or remote Ollama server")


def test_an_invalid_environment_value_falls_back(monkeypatch, caplog):
    monkeypatch.setenv("OLLAMA_TIMEOUT", "soon")
    with caplog.at_level("WARNING"):
        assert OllamaGenerator().timeout == 120.0
    assert "OLLAMA_TIMEOUT='soon'" in caplog.text and "`timeout` must be a number" in caplog.text
