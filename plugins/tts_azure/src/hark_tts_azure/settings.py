"""What the plugin can be told: its settings model and its secret.

The core resolves each value (default < bot.toml ``[plugin.tts_azure]`` < the
environment variable < the owner's bot-wide value < the server's), generates
``!config tts_azure`` / ``/config``, and hands every synthesis its server's
values. Voice, rate and pitch are per server; where the service lives is bot-wide.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, ConfigDict

import hark
from hark_tts_azure.ssml import parse_pitch, parse_rate

DEFAULT_VOICE = "en-US-AmberNeural"
DEFAULT_TIMEOUT = 30.0

PER_SERVER = ("global", "server")
BOT_WIDE = ("global",)

AZURE_KEY = hark.Secret(
    "AZURE_SPEECH_KEY", "a key of your Speech resource (Azure portal → Keys and Endpoint)"
)

# Validated and normalized before they are stored (`+25%`, `-2st`), so a typo can't
# break every later request.
Rate = Annotated[str, AfterValidator(parse_rate)]
Pitch = Annotated[str, AfterValidator(parse_pitch)]
# `West Europe` -> `westeurope`; whether it is a region name is unavailable_reason()'s call.
Region = Annotated[str, AfterValidator(lambda text: re.sub(r"\s+", "", text.lower()))]


class AzureSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    voice: str = hark.setting(
        DEFAULT_VOICE,
        env="AZURE_SPEECH_VOICE",
        scopes=PER_SERVER,
        min_length=1,
        description="the voice's ShortName, e.g. en-GB-RyanNeural (`!azure voices` lists them)",
    )
    rate: Rate | None = hark.setting(
        None,
        scopes=PER_SERVER,
        description="speaking rate: +20%, -10%, a multiplier from 0.5 to 2, or x-slow … x-fast"
        " (none: the voice's own)",
    )
    pitch: Pitch | None = hark.setting(
        None,
        scopes=PER_SERVER,
        description="pitch: +10%, -2st, +20Hz, 220Hz, or x-low … x-high (none: the voice's own)",
    )
    region: Region = hark.setting(
        "",
        env="AZURE_SPEECH_REGION",
        scopes=BOT_WIDE,
        description="the Speech resource's region, e.g. westeurope",
    )
    endpoint: str = hark.setting(
        "",
        env="AZURE_SPEECH_ENDPOINT",
        scopes=BOT_WIDE,
        description="a base URL instead of the region (a proxy, a sovereign cloud, a test server)",
    )
    timeout: float = hark.setting(
        DEFAULT_TIMEOUT,
        env="AZURE_SPEECH_TIMEOUT",
        scopes=BOT_WIDE,
        gt=0,
        description="seconds to wait for the first audio and between pieces of audio",
    )
