"""OpenRouterGenerator through the real ``openai`` client against the loopback server."""

from __future__ import annotations

import logging
import time
from importlib.metadata import entry_points

import hark_llm_openrouter as plugin
import pytest
from fake_openai_chat import FakeOpenAIServer
from hark_llm_openrouter import OpenRouterGenerator
from hark_llm_openrouter.generator import PLACEHOLDER_KEY
from openrouter_support import FAST_RETRY, KEY, PLUGIN_ID

from hark import PromptMessage
from hark.config import Config
from hark.providers import RetryPolicy
from hark.providers.errors import (
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from hark.runtime import Runtime
from hark.testing.harness import isolated_manager
from hark.testing.loopback import unused_port

PROMPT = [
    PromptMessage("system", "You are Hark."),
    PromptMessage("user", "hi there", name="alice"),
    PromptMessage("assistant", "Hello Alice!"),
    PromptMessage("user", "what's up?", name="bob"),
]


async def collect(generator: OpenRouterGenerator, **kwargs) -> tuple[list[str], Exception | None]:
    """Deltas until the stream ends or fails, and the failure."""
    deltas: list[str] = []
    try:
        async for delta in generator.generate(PROMPT, **kwargs):
            deltas.append(delta)
    except Exception as exc:
        return deltas, exc
    return deltas, None


def assert_no_key(error: ProviderError) -> None:
    for text in (str(error), error.message, error.user_message, repr(error)):
        assert KEY not in text


# -- streaming and what reaches the model ----------------------------------


async def test_streams_deltas_in_order(server, make_generator):
    server.reply = ["Hel", "lo, ", "wor", "ld!"]
    deltas, error = await collect(make_generator())
    assert error is None
    assert deltas == ["Hel", "lo, ", "wor", "ld!"]
    assert server.last_chat.stream is True


async def test_messages_model_options_and_headers_reach_the_server(server, make_generator):
    generator = make_generator(site_url="https://example.org/mybot", app_name="MyBot")
    text = await generator.complete(PROMPT, temperature=0.25, max_tokens=50, top_p=0.9, seed=7)
    assert text == server.reply

    request = server.last_chat
    assert request.model == "openai/gpt-4o-mini"
    # Speaker names are inside the content; no `name` field is sent.
    assert request.messages == [
        {"role": "system", "content": "You are Hark."},
        {"role": "user", "content": "alice: hi there"},
        {"role": "assistant", "content": "Hello Alice!"},
        {"role": "user", "content": "bob: what's up?"},
    ]
    body = request.body
    assert (body["temperature"], body["max_tokens"], body["top_p"], body["seed"]) == (
        0.25,
        50,
        0.9,
        7,
    )
    assert request.headers["HTTP-Referer"] == "https://example.org/mybot"
    assert request.headers["X-Title"] == "MyBot"
    assert request.bearer == KEY


async def test_defaults_from_settings_and_unknown_options_dropped(server, make_generator):
    await make_generator().complete(PROMPT, not_an_api_option="x")
    body = server.last_chat.body
    assert body["temperature"] == 0.7 and body["max_tokens"] == 1024
    assert "top_p" not in body  # None: the model's own default
    assert "not_an_api_option" not in body
    # The attribution headers default to the project.
    assert server.last_chat.headers["HTTP-Referer"] == "https://github.com/hark-bot/hark"
    assert server.last_chat.headers["X-Title"] == "Hark"


async def test_configuration_from_environment(server):
    environ = {
        "OPENROUTER_API_KEY": KEY,
        "OPENROUTER_BASE_URL": server.base_url + "/",
        "OPENROUTER_MODEL": "mistralai/mistral-small",
        "OPENROUTER_SITE_URL": "https://bots.example",
        "OPENROUTER_APP_NAME": "EnvBot",
        "OPENROUTER_TIMEOUT": "12.5",
    }
    generator = OpenRouterGenerator(environ=environ)
    try:
        assert generator.base_url == server.base_url
        assert generator.default_model == "mistralai/mistral-small"
        assert generator.timeout == 12.5
        assert await generator.complete(PROMPT)
    finally:
        await generator.aclose()
    request = server.last_chat
    assert request.model == "mistralai/mistral-small"
    assert request.headers["X-Title"] == "EnvBot"
    assert request.headers["HTTP-Referer"] == "https://bots.example"


async def test_defaults_without_environment():
    generator = OpenRouterGenerator(environ={})
    assert generator.base_url == "https://openrouter.ai/api/v1"
    assert generator.default_model == "openai/gpt-4o-mini"
    assert generator.headers() == {
        "HTTP-Referer": "https://github.com/hark-bot/hark",
        "X-Title": "Hark",
    }


async def test_an_invalid_stored_value_falls_back_a_layer(
    server, make_generator, hark_settings_store, caplog
):
    """A stored value the model refuses (written by hand, or by an older version) is
    skipped with one warning: the reply goes out with the value it inherits."""
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    await hark_settings_store.for_plugin(PLUGIN_ID).guild(1).set("max_tokens", "lots")
    deltas, error = await collect(generator, guild_id=1)
    assert error is None and deltas
    assert server.last_chat.body["max_tokens"] == 1024
    assert "ignoring the stored max_tokens = 'lots' (guild:1)" in caplog.text


async def test_an_invalid_environment_value_falls_back(caplog):
    generator = OpenRouterGenerator(environ={"OPENROUTER_TIMEOUT": "soon"})
    assert generator.timeout == 60.0
    assert "OPENROUTER_TIMEOUT='soon'" in caplog.text


async def test_credentials_in_the_base_url_are_never_shown():
    generator = OpenRouterGenerator(
        base_url="https://user:hunter2-password@llm.example:8443/v1?token=abc", environ={}
    )
    assert generator.host == "llm.example:8443"
    assert generator.public_base_url == "https://llm.example:8443/v1"
    assert "hunter2" not in repr(generator)
    # Nor in an error, should the server echo the URL back.
    echoed = generator.errors.scrub("no route to https://user:hunter2-password@llm.example")
    assert "hunter2" not in echoed and "***" in echoed


async def test_length_finish_is_not_an_error(server, make_generator):
    deltas, error = await collect(make_generator(), max_tokens=3)
    assert error is None
    assert len(deltas) == 3  # the fake stops at max_tokens pieces with finish_reason "length"


async def test_empty_reply_is_bad_output(server, make_generator):
    server.reply = ""
    deltas, error = await collect(make_generator())
    assert deltas == [] and isinstance(error, BadOutputError)
    assert "empty reply" in error.message
    assert len(server.chat_requests) == 1


async def test_keepalive_comments_are_ignored(server, make_generator):
    server.keepalive = True
    assert await make_generator().complete(PROMPT) == server.reply


# -- per-server settings ---------------------------------------------------


async def test_per_guild_model_and_settings(server, make_generator, hark_settings_store):
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    await generator.set_model(111, "anthropic/claude-3.5-haiku")  # as the core's `!model` does
    await hark_settings_store.set_value(PLUGIN_ID, "temperature", 0.1, "server", 111)
    await hark_settings_store.set_value(PLUGIN_ID, "top_p", 0.5, "server", 111)

    await generator.complete(PROMPT, guild_id=111)
    here = server.last_chat.body
    await generator.complete(PROMPT, guild_id=222)
    elsewhere = server.last_chat.body

    assert (here["model"], here["temperature"], here["top_p"]) == (
        "anthropic/claude-3.5-haiku",
        0.1,
        0.5,
    )
    assert (elsewhere["model"], elsewhere["temperature"]) == ("openai/gpt-4o-mini", 0.7)
    assert "top_p" not in elsewhere
    # An explicit request value still wins over the server's setting.
    await generator.complete(PROMPT, guild_id=111, temperature=1.5)
    assert server.last_chat.body["temperature"] == 1.5

    await generator.set_model(111, None)
    assert generator.model_for(111) == "openai/gpt-4o-mini"


async def test_bot_toml_settings_through_the_runtime(server, monkeypatch, tmp_path):
    """Loaded as the bot loads it: env config, `[plugin.llm_openrouter]` globals, binding."""
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
    config = Config(data_dir=tmp_path)
    config.plugin_settings = {
        PLUGIN_ID: {"model": "meta-llama/llama-3.1-8b-instruct", "top_p": 0.8}
    }
    runtime = Runtime(config, manager=isolated_manager({PLUGIN_ID: plugin}))
    await runtime.open()
    try:
        info = runtime.manager.get(PLUGIN_ID)
        assert info.loaded, info.error
        (generator,) = info.providers
        assert isinstance(generator, OpenRouterGenerator) and generator.id == PLUGIN_ID
        assert [c.__name__ for c in info.cogs] == ["OpenRouterCog"]
        await generator.complete(PROMPT, guild_id=5)
        body = server.last_chat.body
        assert body["model"] == "meta-llama/llama-3.1-8b-instruct"
        assert body["top_p"] == 0.8
        await generator.aclose()
    finally:
        await runtime.close()


# -- retries and HTTP errors -------------------------------------------------


async def test_503_twice_then_success_is_retried_by_the_core(server, make_generator):
    server.fail_next(503, times=2)
    generator = make_generator()
    assert await generator.complete(PROMPT) == server.reply
    assert len(server.chat_requests) == 3
    assert generator.stats.retries == 2


async def test_429_retry_after_is_honoured(server, make_generator):
    server.fail_next(429, retry_after=0.4)
    generator = make_generator()
    started = time.perf_counter()
    assert await generator.complete(PROMPT) == server.reply
    # The backoff alone would wait at most 0.02s.
    assert time.perf_counter() - started >= 0.4
    assert len(server.chat_requests) == 2


async def test_429_retry_after_too_long_fails_at_once(server, make_generator):
    server.fail_next(429, retry_after=120)
    _deltas, error = await collect(make_generator())
    assert isinstance(error, ProviderStatusError)
    assert (error.status, error.retry_after) == (429, 120.0)
    assert len(server.chat_requests) == 1


async def test_retries_give_up_after_the_policy(server, make_generator):
    server.fail_next(500, times=5)
    _deltas, error = await collect(make_generator())
    assert isinstance(error, ProviderStatusError) and error.status == 500
    assert len(server.chat_requests) == FAST_RETRY.attempts


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_is_not_retried_and_not_revealed(server, make_generator, status):
    if status == 401:
        server.api_key = "sk-or-v1-some-other-key"  # ours is wrong now
    else:
        server.fail_next(403, message="Forbidden")
    deltas, error = await collect(make_generator())
    assert deltas == []
    assert isinstance(error, ProviderStatusError) and error.status == status
    assert not error.retryable
    assert "rejected the API key" in error.message
    assert "OPENROUTER_API_KEY" in error.message
    assert_no_key(error)
    assert error.provider == PLUGIN_ID
    assert len(server.chat_requests) == 1


async def test_server_messages_are_scrubbed_of_the_key(server, make_generator):
    server.fail_next(400, message=f"Invalid request: key {KEY} may not use\nthis\tmodel")
    _deltas, error = await collect(make_generator())
    assert isinstance(error, ProviderStatusError) and error.status == 400
    assert_no_key(error)
    assert "key *** may not use this model" in error.message


async def test_unknown_model_is_a_configuration_error(server, make_generator):
    _deltas, error = await collect(make_generator(model="nobody/no-such-model"))
    assert isinstance(error, ConfigurationError)
    assert "`nobody/no-such-model`" in error.message and "!model" in error.message
    assert len(server.chat_requests) == 1  # not retried


async def test_out_of_credits(server, make_generator):
    server.fail_next(402, message=f"Insufficient credits for {KEY}")
    _deltas, error = await collect(make_generator())
    assert isinstance(error, ProviderStatusError) and error.status == 402
    assert "out of credits" in error.message and not error.retryable
    assert "Insufficient credits for ***" in error.message
    assert_no_key(error)


# -- keys and endpoints ----------------------------------------------------


async def test_missing_key_with_openrouter_is_a_configuration_error():
    generator = OpenRouterGenerator(environ={})  # default base URL, no key
    generator.plugin_id = PLUGIN_ID
    assert generator.unavailable_reason() == "OPENROUTER_API_KEY is not set"
    _deltas, error = await collect(generator)
    assert isinstance(error, ConfigurationError)
    assert error.message == "OPENROUTER_API_KEY is not set"
    assert generator.stats.retries == 0 and generator.stats.calls == 1
    with pytest.raises(ConfigurationError):
        await generator.list_models()


@pytest.mark.parametrize(
    "base_url",
    ["https://api.openai.com/v1", "https://api.mistral.ai/v1", "https://openrouter.ai/api/v1/"],
)
async def test_hosted_apis_need_a_key(base_url):
    assert OpenRouterGenerator(base_url=base_url, environ={}).unavailable_reason() is not None
    assert (
        OpenRouterGenerator(base_url=base_url, api_key="k", environ={}).unavailable_reason() is None
    )


async def test_custom_base_url_without_key_works():
    # A local llama.cpp llama-server started without --api-key.
    async with FakeOpenAIServer(accept_any_model=True, reply="local reply") as local:
        generator = OpenRouterGenerator(base_url=local.base_url, model="whatever", environ={})
        try:
            assert generator.unavailable_reason() is None
            assert await generator.complete(PROMPT) == "local reply"
            assert await generator.list_models() == sorted(local.models)
        finally:
            await generator.aclose()
        assert local.last_chat.bearer == PLACEHOLDER_KEY


async def test_connection_refused_names_the_host():
    port = unused_port()
    generator = OpenRouterGenerator(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, environ={})
    generator.retry = FAST_RETRY
    try:
        _deltas, error = await collect(generator)
    finally:
        await generator.aclose()
    assert isinstance(error, ProviderConnectionError)
    assert f"127.0.0.1:{port}" in error.message
    assert_no_key(error)
    assert generator.stats.retries == FAST_RETRY.attempts - 1


async def test_slow_server_times_out(server, make_generator):
    server.delay = 1.0
    generator = make_generator(timeout=0.2)
    generator.retry = RetryPolicy(attempts=1)
    _deltas, error = await collect(generator)
    assert isinstance(error, ProviderTimeoutError)


# -- broken streams ----------------------------------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["ended", "dropped"])
async def test_cut_off_stream_fails_after_partial_output_without_duplicates(
    server, make_generator, reset
):
    server.reply = ["one ", "two ", "three ", "four ", "five"]
    server.cut_next(after=3, reset=reset)
    deltas, error = await collect(make_generator())
    assert deltas == ["one ", "two ", "three "]
    assert isinstance(error, BadOutputError)
    assert "cut off" in error.message or "broke mid-reply" in error.message
    assert len(server.chat_requests) == 1  # text reached the user: never replayed


@pytest.mark.parametrize(
    ("reset", "why"),
    [(False, "ended before the reply"), (True, "broke before the reply")],
    ids=["ended", "dropped"],
)
async def test_cut_off_before_any_text_is_retried(server, make_generator, caplog, reset, why):
    server.reply = ["one ", "two"]
    server.cut_next(after=0, reset=reset)
    deltas, error = await collect(make_generator())
    assert error is None
    assert deltas == ["one ", "two"]
    assert len(server.chat_requests) == 2
    assert why in caplog.text  # the retry's warning says why


async def test_openrouter_mid_stream_error_chunk(server, make_generator):
    server.reply = ["one ", "two ", "three"]
    server.error_next(after=2, code=502, message="Provider disconnected unexpectedly")
    deltas, error = await collect(make_generator())
    assert deltas == ["one ", "two "]
    assert isinstance(error, ProviderStatusError) and error.status == 502
    assert "Provider disconnected unexpectedly" in error.message
    assert len(server.chat_requests) == 1


async def test_mid_stream_error_before_text_is_retried(server, make_generator):
    server.error_next(after=0, code=502)
    assert await make_generator().complete(PROMPT) == server.reply
    assert len(server.chat_requests) == 2


async def test_mid_stream_error_with_string_code_is_bad_output(server, make_generator):
    server.error_next(after=1, code="server_error", message="overloaded", style="openai")
    deltas, error = await collect(make_generator())
    assert len(deltas) == 1
    assert isinstance(error, BadOutputError)
    assert "server_error" in error.message and "overloaded" in error.message


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("html", "text/html"),  # a proxy's or captive portal's page
        ("json", "application/json"),  # a whole completion: the server ignored stream
        ("sse_not_json", "not JSON"),
        ("sse_not_chunks", "not a stream of chat completion chunks"),
        ("sse_bad_choices", "not a chat completion chunk"),
    ],
)
async def test_a_200_that_is_not_a_stream_is_bad_output_and_not_retried(
    server, make_generator, kind, why
):
    server.bad_body_next(kind, times=3)
    deltas, error = await collect(make_generator())
    assert deltas == []
    assert isinstance(error, BadOutputError), error
    assert why in error.message
    assert error.user_message == "Sorry, `llm_openrouter` sent back something I couldn't use."
    assert len(server.chat_requests) == 1
    assert_no_key(error)


async def test_an_event_stream_without_events_is_still_retried(server, make_generator):
    """An event stream that ends before its first event broke off: not bad output."""
    server.bad_body_next("sse_keepalive_only")
    assert await make_generator().complete(PROMPT) == server.reply
    assert len(server.chat_requests) == 2


async def test_next_call_works_after_closing_a_stream_early(server, make_generator):
    generator = make_generator()
    stream = generator.generate(PROMPT)
    assert await anext(stream)
    await stream.aclose()
    assert await generator.complete(PROMPT) == server.reply


# -- model listing -------------------------------------------------------------


async def test_list_models(server, make_generator):
    generator = make_generator()
    assert generator.supports_model_listing
    assert await generator.list_models() == sorted(server.models)
    request = server.requests[-1]
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.bearer == KEY and request.headers["X-Title"] == "Hark"


async def test_list_models_missing_endpoint(server, make_generator):
    server.fail_next(404, endpoint="models")
    with pytest.raises(ConfigurationError, match="OPENROUTER_BASE_URL"):
        await make_generator().list_models()


async def test_list_models_retries_server_errors(server, make_generator):
    server.fail_next(503, endpoint="models")
    assert await make_generator().list_models() == sorted(server.models)


async def test_list_models_rejected_key(server, make_generator):
    server.api_key = "sk-or-v1-some-other-key"
    with pytest.raises(ProviderStatusError, match="check OPENROUTER_API_KEY") as caught:
        await make_generator().list_models()
    assert caught.value.status == 401
    assert_no_key(caught.value)


@pytest.mark.parametrize("kind", ["html", "json"])
async def test_list_models_answered_with_something_else_is_bad_output(server, make_generator, kind):
    server.bad_body_next(kind, endpoint="models", times=3)
    with pytest.raises(BadOutputError, match="model list") as caught:
        await make_generator().list_models()
    assert "sent back something I couldn't use" in caught.value.user_message
    assert [r.path for r in server.requests] == ["/v1/models"]


# -- the key stays secret ----------------------------------------------------------


async def test_key_never_appears_in_logs(server, make_generator, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "hark"):
        caplog.set_level(logging.DEBUG, logger=name)
    generator = make_generator()
    assert KEY not in repr(generator)

    await generator.complete(PROMPT)  # success
    server.fail_next(503)
    await generator.complete(PROMPT)  # a retry, logged as a warning
    server.cut_next(after=1)
    await collect(generator)  # a failure, logged
    await generator.list_models()
    server.api_key = "another-key"
    await collect(generator)  # 401
    refused = make_generator(base_url=f"http://127.0.0.1:{unused_port()}/v1")
    await collect(refused)

    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert any(r.name.startswith("openai") for r in caplog.records)
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in str(record.exc_info or "")


# -- packaging ---------------------------------------------------------------------


async def test_installed_entry_point_loads_the_plugin():
    (ep,) = [e for e in entry_points(group="hark") if e.name == PLUGIN_ID]
    assert ep.value == "hark_llm_openrouter:plugin"
    info = isolated_manager(entry_points=[ep]).get(PLUGIN_ID)
    assert info.loaded, info.error
    assert info.capabilities == ["generate", "commands"]
    assert info.plugin is plugin.plugin
    secrets = [(s["env"], s["required"]) for s in info.as_dict()["secrets"]]
    assert secrets == [("OPENROUTER_API_KEY", False)]  # a local server may need no key
    assert info.description.startswith("OpenRouter or any OpenAI-compatible chat API")
