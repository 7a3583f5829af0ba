"""hark.config.load_config: defaults < bot.toml < environment (.env filling the gaps)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hark.config import DISCORD_API_BASE, Config, ConfigError, Secret, describe, load_config

TOKEN = "MTIz.fake-token-value.abcdefghijklmnop"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch) -> Path:
    """Run in an empty directory, so no stray bot.toml or .env is picked up."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """load_dotenv writes into os.environ; put it back exactly as it was."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FULL_TOML = f"""
[discord]
token = "{TOKEN}"
api_base = "http://127.0.0.1:8080/api/v10/"
gateway_url = "ws://127.0.0.1:8080/gateway"

[bot]
prefix = "?"
owner_ids = ["123", 456]
data_dir = "/tmp/hark-data"
log_level = "DEBUG"
sync_commands = false

[plugins]
load = ["llm_ollama", "stt_whisper"]
block = ["twitch"]

[providers]
generate = "llm_ollama"

[plugin.llm_ollama]
model = "llama3.2"
temperature = 0.5

[custom]
anything = 1
"""


def test_defaults(in_tmp: Path) -> None:
    config = load_config(environ={})
    assert config.api_base == DISCORD_API_BASE
    assert config.prefix == "!"
    assert config.data_dir == Path("data")
    assert config.database_path == Path("data") / "hark.sqlite3"
    assert config.load_plugins is None, "None means every installed plugin"
    assert config.block_plugins == [] and config.owner_ids == []
    assert config.sync_commands is True and config.log_level == "INFO"
    assert config.gateway_url is None
    assert not config.token and config.source is None
    assert config.default_providers == {} and config.plugin_settings == {}


def test_bot_toml_values(in_tmp: Path) -> None:
    path = write_toml(in_tmp / "custom.toml", FULL_TOML)
    config = load_config(path, environ={})
    assert config.source == path
    assert config.token.get() == TOKEN
    assert config.api_base == "http://127.0.0.1:8080/api/v10", "trailing slash dropped"
    assert config.gateway_url == "ws://127.0.0.1:8080/gateway"
    assert config.prefix == "?"
    assert config.owner_ids == ["123", "456"]
    assert config.data_dir == Path("/tmp/hark-data")
    assert config.log_level == "DEBUG"
    assert config.sync_commands is False
    assert config.load_plugins == ["llm_ollama", "stt_whisper"]
    assert config.block_plugins == ["twitch"]
    assert config.default_providers == {"generate": "llm_ollama"}
    assert config.plugin_settings == {"llm_ollama": {"model": "llama3.2", "temperature": 0.5}}
    assert config.raw["custom"] == {"anything": 1}


def test_bot_toml_found_in_cwd_and_via_hark_config(in_tmp: Path) -> None:
    write_toml(in_tmp / "bot.toml", '[bot]\nprefix = "$"\n')
    assert load_config(environ={}).prefix == "$"
    other = write_toml(in_tmp / "other.toml", '[bot]\nprefix = "%"\n')
    assert load_config(environ={"HARK_CONFIG": str(other)}).prefix == "%"


def test_environment_overrides_toml(in_tmp: Path) -> None:
    path = write_toml(in_tmp / "bot.toml", FULL_TOML)
    config = load_config(
        path,
        environ={
            "BOT_PREFIX": ">",
            "DISCORD_BOT_TOKEN": "  env-token-value  ",
            "HARK_LOAD_PLUGINS": "a, b,,c ",
            "HARK_SYNC_COMMANDS": "yes",
            "HARK_DATA_DIR": "/srv/hark",
            "HARK_DEFAULT_GENERATE": " llm_openrouter ",
            "HARK_DEFAULT_SYNTHESIZE": "tts_azure",
        },
    )
    assert config.prefix == ">"
    assert config.token.get() == "env-token-value"
    assert config.load_plugins == ["a", "b", "c"]
    assert config.sync_commands is True
    assert config.data_dir == Path("/srv/hark")
    assert config.default_providers == {"generate": "llm_openrouter", "synthesize": "tts_azure"}
    assert config.block_plugins == ["twitch"], "untouched settings keep their toml value"


def test_empty_load_list_means_no_plugins(in_tmp: Path) -> None:
    assert load_config(environ={"HARK_LOAD_PLUGINS": ""}).load_plugins == []


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"HARK_SYNC_COMMANDS": "maybe"}, "HARK_SYNC_COMMANDS"),
        ({"HISTORY_DEPTH": "lots"}, "HISTORY_DEPTH"),
    ],
)
def test_invalid_environment_value_is_one_line(in_tmp: Path, environ, needle) -> None:
    if "HISTORY_DEPTH" in environ and "history_depth" not in Config.__dataclass_fields__:
        pytest.skip("no int setting in this version")
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    message = str(caught.value)
    assert needle in message and "\n" not in message


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[bot\nprefix = 1", "not valid TOML"),
        ('[bot]\nsync_commands = "sometimes"\n', "sync_commands"),
        ('providers = "llm"\n', "[providers] must be a table"),
        ('plugin = "x"\n', "[plugin.<id>]"),
    ],
)
def test_invalid_toml_is_a_one_line_config_error(in_tmp: Path, toml: str, needle: str) -> None:
    path = write_toml(in_tmp / "bot.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert needle in message and "\n" not in message
    assert str(path) in message


def test_scalar_for_a_list_setting_is_a_config_error(in_tmp: Path) -> None:
    path = write_toml(in_tmp / "bot.toml", "[bot]\nowner_ids = 1234\n")
    with pytest.raises(ConfigError, match="owner_ids"):
        load_config(path, environ={})


def test_missing_explicit_config_file(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(in_tmp / "nope.toml", environ={})


def test_dotenv_fills_only_what_the_environment_lacks(
    in_tmp: Path, monkeypatch, restore_environ
) -> None:
    (in_tmp / ".env").write_text(
        f"DISCORD_BOT_TOKEN={TOKEN}\nBOT_PREFIX=.\nHARK_LOG_LEVEL=WARNING\n", encoding="utf-8"
    )
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    monkeypatch.delenv("HARK_LOG_LEVEL", raising=False)
    monkeypatch.delenv("HARK_CONFIG", raising=False)
    monkeypatch.setenv("BOT_PREFIX", "$")
    config = load_config()
    assert config.token.get() == TOKEN, ".env supplied the missing token"
    assert config.log_level == "WARNING"
    assert config.prefix == "$", "the real environment wins over .env"


def test_dotenv_is_ignored_with_an_explicit_environ(in_tmp: Path, restore_environ) -> None:
    (in_tmp / ".env").write_text("BOT_PREFIX=.\n", encoding="utf-8")
    assert load_config(environ={}).prefix == "!"
    assert load_config(environ={"BOT_PREFIX": "#"}).prefix == "#"


def test_dotenv_path_can_be_disabled(in_tmp: Path, monkeypatch, restore_environ) -> None:
    (in_tmp / ".env").write_text("BOT_PREFIX=.\n", encoding="utf-8")
    monkeypatch.delenv("BOT_PREFIX", raising=False)
    monkeypatch.delenv("HARK_CONFIG", raising=False)
    assert load_config(dotenv=None).prefix == "!"


# -- secrets -------------------------------------------------------------------


def test_secret_never_shows_its_value(in_tmp: Path) -> None:
    secret = Secret(TOKEN)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{[secret]}"):
        assert TOKEN not in text and "*" in text
    assert secret.get() == TOKEN and bool(secret)
    assert not Secret("") and "*" not in repr(Secret(""))

    config = load_config(environ={"DISCORD_BOT_TOKEN": TOKEN})
    assert TOKEN not in repr(config) and TOKEN not in str(config)
    described = describe(config)
    assert TOKEN not in repr(described)
    assert "raw" not in described and described["prefix"] == "!"


def test_describe_leaves_out_the_raw_toml(in_tmp: Path) -> None:
    path = write_toml(in_tmp / "bot.toml", FULL_TOML)
    described = describe(load_config(path, environ={}))
    assert TOKEN not in repr(described), "[discord] token lives on in `raw`, which is dropped"


def test_require_token(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}).require_token()
    assert "DISCORD_BOT_TOKEN" in str(caught.value)
    with pytest.raises(ConfigError):
        load_config(environ={"DISCORD_BOT_TOKEN": "   "}).require_token()
    assert load_config(environ={"DISCORD_BOT_TOKEN": TOKEN}).require_token() == TOKEN


def test_config_errors_do_not_echo_secrets(in_tmp: Path) -> None:
    path = write_toml(in_tmp / "bot.toml", f'[discord]\ntoken = "{TOKEN}"\n[bot\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("CHAT_RATE_LIMIT", "lots", "CHAT_RATE_LIMIT must look like 8/60"),
        ("HISTORY_DEPTH", "-3", "HISTORY_DEPTH must be 0 or more"),
        ("CHAT_EDIT_INTERVAL", "-1", "CHAT_EDIT_INTERVAL must be 0 or more"),
    ],
)
def test_values_that_would_fail_later_are_rejected_at_load(
    in_tmp: Path, name, value, needle
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(None, environ={name: value})
