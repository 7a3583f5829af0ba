"""What the plugin can be told: its settings model (Piper needs no secret).

The core resolves each value (default < bot.toml ``[plugin.tts_piper]`` < the
environment variable < the owner's bot-wide value < the server's), generates
``!config tts_piper`` / ``/config``, and hands every synthesis its server's values.
Speed, variation and speaker are per server; which voice files are loaded is
bot-wide (a voice takes a second or two and ~150 MB to load, once per process).

``length_scale`` is the key the old ``!piper speed`` command stored, so a database
written before keeps every server's speed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict

import hark

PER_SERVER = ("global", "server")
BOT_WIDE = ("global",)

#: The speed range `!config tts_piper length_scale` accepts, relative to the voice's
#: own (speed = the voice's length_scale / length_scale).
MIN_SPEED, MAX_SPEED = 0.5, 2.0


def _speaker(value: Any) -> Any:
    # bot.toml may say `speaker = 3`: a speaker number is kept as text, like a name.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Speaker = Annotated[str, BeforeValidator(_speaker)]


class PiperSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    length_scale: float | None = hark.setting(
        None,
        scopes=PER_SERVER,
        gt=0,
        allow_inf_nan=False,
        description="phoneme length: above 1 is slower, below 1 faster (speed = the voice's"
        " own length_scale / this; none: the voice's own)",
    )
    noise_scale: float | None = hark.setting(
        None,
        scopes=PER_SERVER,
        gt=0,
        allow_inf_nan=False,
        description="variation in the voice (none: the voice's own, often 0.667)",
    )
    speaker: Speaker | None = hark.setting(
        None,
        scopes=PER_SERVER,
        min_length=1,
        max_length=100,
        description="a speaker name or number, for multi-speaker voices (none: the voice's"
        " default speaker)",
    )
    model: str = hark.setting(
        "",
        env="PIPER_MODEL",
        scopes=BOT_WIDE,
        description="path to a local Piper voice (.onnx); empty: the bundled en_US-joe-medium",
    )
    config: str = hark.setting(
        "",
        env="PIPER_CONFIG",
        scopes=BOT_WIDE,
        description="path to that voice's JSON config; empty: the model's path + .json",
    )
