"""Images and tools end to end: the real bot and discord.py against the loopback
Discord, the plugin's generator (the real ``openai`` client) against the loopback
OpenAI-compatible server, and a plugin whose ``@hark.tool`` the model calls."""

from __future__ import annotations

import base64
import json

import hark_llm_openrouter
import pytest
from fake_openai_chat import FakeToolCall, always_calls, call_then_answer, tool_results
from openrouter_support import KEY, PLUGIN_ID
from pydantic import BaseModel, Field

import hark
from hark.testing.contracts import solid_png
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


class City(BaseModel):
    city: str = Field(description="the city's name")


class Weather:
    """A plugin with one tool, and the cities it was asked about."""

    def __init__(self) -> None:
        self.cities: list[str] = []
        cities = self.cities

        @hark.tool(timeout=2)
        async def get_weather(args: City, ctx: hark.ToolContext) -> str:
            """Get the current weather in a city."""
            cities.append(args.city)
            return f"sunny in {args.city}"

        self.plugin = hark.Plugin(description="Weather for the tests", tools=[get_weather])


@pytest.fixture
def weather() -> Weather:
    return Weather()


@pytest.fixture
def start(server, monkeypatch, weather, hark_harness_factory):
    """``await start(stream=...)``: the bot with this plugin (its `stream` setting as
    given, in bot.toml) and the weather plugin."""
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
    monkeypatch.delenv("OPENROUTER_MODEL", raising=False)

    async def start(*, stream: bool = True) -> BotHarness:
        return await hark_harness_factory(
            plugins={PLUGIN_ID: hark_llm_openrouter, "weather": weather.plugin},
            config={**CHAT, "plugin_settings": {PLUGIN_ID: {"stream": stream}}},
        )

    return start


async def test_an_attached_image_reaches_the_model_as_an_image_url(server, start):
    h = await start()
    image = solid_png(4, 3)
    await h.final(await h.ask("robot, what is in this picture?", files=[("cat.png", image)]))
    (url,) = server.last_chat.image_urls
    assert url == "data:image/png;base64," + base64.b64encode(image).decode()
    text = server.last_chat.messages[-1]["content"][0]
    assert text["type"] == "text" and "what is in this picture?" in text["text"]

    # Switched off in this server (a model without vision): a note names the image.
    reply = await h.ask("!config llm_openrouter vision off", author=h.admin)
    assert reply.content == "`llm_openrouter.vision` is now `off` in this server."
    await h.final(await h.ask("robot, and this one?", files=[("dog.png", image)]))
    assert server.last_chat.image_urls == []
    assert "[image not shown: dog.png]" in server.last_chat.messages[-1]["content"]
    status = await h.ask("!openrouter")
    assert "Sends: images off, tools on, streaming on" in status.content.splitlines()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "unstreamed"])
async def test_a_tool_call_its_result_then_the_answer(server, start, weather, stream):
    server.reply = call_then_answer("get_weather", "It is {results}.", city="Paris")
    h = await start(stream=stream)
    reply = await h.ask("robot, what's the weather in Paris?")
    assert await h.final(reply) == "It is sunny in Paris."
    assert weather.cities == ["Paris"]

    asked, answered = server.chat_requests
    assert [asked.stream, answered.stream] == [stream, stream]
    assert asked.tool_names == answered.tool_names == ["get_weather"]
    schema = asked.tools[0]["function"]["parameters"]
    assert schema["properties"]["city"]["description"] == "the city's name"
    call, result = answered.messages[-2:]
    (sent,) = call["tool_calls"]
    assert (call["role"], call["content"]) == ("assistant", None)
    assert sent["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert result == {"role": "tool", "tool_call_id": sent["id"], "content": "sunny in Paris"}

    # History keeps the question and the answer, no tool messages.
    entries = await h.history(2)
    assert [(e.role, e.content) for e in entries] == [
        ("user", "robot, what's the weather in Paris?"),
        ("assistant", "It is sunny in Paris."),
    ]


async def test_a_call_with_broken_arguments_becomes_a_result_the_model_reads(
    server, start, weather
):
    def reply(request):
        if tool_results(request):
            return f"Sorry: {tool_results(request)[0]}"
        return [FakeToolCall("get_weather", '{"city": "Par')]

    server.reply = reply
    h = await start()
    text = await h.final(await h.ask("robot, weather in Paris?"))
    assert text.startswith("Sorry: error: the arguments are not valid JSON")
    assert weather.cities == []  # it never ran
    assert len(server.chat_requests) == 2  # and the second round was a valid request


async def test_a_model_that_keeps_calling_stops_at_the_round_limit(server, start, weather):
    server.reply = always_calls("get_weather", answer="Sunny everywhere.", city="Oslo")
    h = await start()
    await h.ask("!config chat tool_rounds 2", author=h.admin)
    text = await h.final(await h.ask("robot, weather?"))
    assert text == "Sunny everywhere.\n-# (stopped after 2 rounds of tool calls)"
    assert weather.cities == ["Oslo", "Oslo"]
    assert [r.tool_names for r in server.chat_requests] == [["get_weather"], ["get_weather"], []]
    # The last round (no tools) carries the calls as text, no tool messages.
    assert {m["role"] for m in server.last_chat.messages} <= {"system", "user", "assistant"}


async def test_a_model_without_tool_use_answers_without_tools(server, start, weather):
    """Installing a tool plugin does not break chat on a model without tool use."""
    server.supports_tools = False
    server.reply = "Paris is lovely, I cannot check the weather."
    h = await start()
    assert await h.final(await h.ask("robot, weather in Paris?")) == server.reply
    refused, again = server.chat_requests
    assert refused.tool_names == ["get_weather"]
    assert "tools" not in again.body
    assert json.dumps(again.body).count("get_weather") == 0
    assert weather.cities == []

    # The next turn asks once, without tools.
    server.clear()
    assert await h.final(await h.ask("robot, and in Oslo?")) == server.reply
    (request,) = server.chat_requests
    assert "tools" not in request.body

    # `!openrouter` says why the tools are not offered.
    lines = (await h.ask("!openrouter")).content.splitlines()
    assert "Sends: images on, tools on, streaming on" in lines
    assert "⚠ tools: on, but `openai/gpt-4o-mini` does not support them: not offered" in lines
    # Switched off, the note goes (nothing is offered, so nothing is missed).
    reply = await h.ask("!config llm_openrouter tools off", author=h.admin)
    assert reply.content == "`llm_openrouter.tools` is now `off` in this server."
    lines = (await h.ask("!openrouter")).content.splitlines()
    assert "Sends: images on, tools off, streaming on" in lines
    assert not any(line.startswith("⚠") for line in lines)
    assert await h.final(await h.ask("robot, weather in Paris?")) == server.reply
    assert "tools" not in server.last_chat.body


async def test_a_model_without_vision_reads_a_note(server, start):
    server.supports_vision = False
    h = await start()
    image = solid_png(4, 3)
    assert await h.final(await h.ask("robot, what is this?", files=[("cat.png", image)])) == (
        server.reply
    )
    refused, again = server.chat_requests
    assert len(refused.image_urls) == 1 and again.image_urls == []
    assert "[image not shown: cat.png]" in again.messages[-1]["content"]
    server.clear()
    await h.final(await h.ask("robot, and this?", files=[("dog.png", image)]))
    (request,) = server.chat_requests
    assert "[image not shown: dog.png]" in request.messages[-1]["content"]
    lines = (await h.ask("!openrouter")).content.splitlines()
    assert "⚠ images: on, but `openai/gpt-4o-mini` does not support them: sent as notes" in lines


async def test_a_server_that_cannot_stream_tool_calls(server, start, weather):
    """llama.cpp's "Cannot use tools with stream": asked again unstreamed, and the tool
    round trip completes."""
    server.streams_tools = False
    server.reply = call_then_answer("get_weather", "It is {results}.", city="Paris")
    h = await start()
    assert await h.final(await h.ask("robot, what's the weather in Paris?")) == (
        "It is sunny in Paris."
    )
    assert weather.cities == ["Paris"]
    refused, asked, answered = server.chat_requests
    assert [r.stream for r in (refused, asked, answered)] == [True, False, False]
    assert asked.tool_names == answered.tool_names == ["get_weather"]
    assert tool_results(answered) == ["sunny in Paris"]
    lines = (await h.ask("!openrouter")).content.splitlines()
    assert (
        "⚠ streaming: on, but `openai/gpt-4o-mini` cannot stream tool calls:"
        " replies with tools come whole"
    ) in lines
