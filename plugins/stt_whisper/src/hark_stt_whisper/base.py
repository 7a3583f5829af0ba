"""What the local and the OpenAI transcriber share: configuration, settings, silence."""

from __future__ import annotations

from typing import Any, ClassVar

from hark import Transcriber
from hark.audio import rms
from hark.providers import AudioClip
from hark_stt_whisper.config import DEFAULT_SETTINGS, MODES, WhisperConfig, normalize_language

# Where a value in force comes from, for `!whisper`.
ORIGIN_SERVER = "set for this server"
ORIGIN_ENV = "environment"
ORIGIN_GLOBAL = "bot-wide setting"
ORIGIN_DEFAULT = "default"

_ENV_FIELD = {"model": "model", "language": "language", "openai_model": "openai_model"}


class WhisperTranscriber(Transcriber):
    """Base of :class:`LocalWhisperTranscriber` and :class:`OpenAIWhisperTranscriber`."""

    default_settings: ClassVar[dict[str, Any]] = DEFAULT_SETTINGS
    #: "local" or "openai": the mode this provider serves (also its ``name``).
    mode: ClassVar[str] = ""

    def __init__(self, config: WhisperConfig | None = None) -> None:
        super().__init__()
        # Read from the environment when the bot loads the plugin (or given by tests).
        self.config = config if config is not None else WhisperConfig.from_env()

    # -- settings ---------------------------------------------------------

    def resolve(self, key: str, guild_id: int | None) -> tuple[Any, str]:
        """``(value, origin)`` of a setting in a server: the server's choice, else the
        environment variable, else the bot-wide setting, else the default."""
        if self.settings is not None and guild_id is not None:
            scope = self.settings.guild(guild_id)
            if scope.is_set(key) and scope.get(key) is not None:
                return scope.get(key), ORIGIN_SERVER
        field = _ENV_FIELD.get(key)
        if field is not None:
            value = getattr(self.config, field)
            if value:
                return value, ORIGIN_ENV
        if self.settings is not None and self.settings.global_().is_set(key):
            value = self.settings.global_().get(key)
            if value is not None:
                return value, ORIGIN_GLOBAL
        return DEFAULT_SETTINGS.get(key), ORIGIN_DEFAULT

    def option(self, key: str, guild_id: int | None) -> Any:
        """A tuning setting (``beam_size``, ``vad_filter``, ``min_rms``,
        ``temperature_fallback``) for a server."""
        return self.setting(key, guild_id, DEFAULT_SETTINGS.get(key))

    def language_for(self, guild_id: int | None, requested: str | None = None) -> str | None:
        """The language to transcribe in: the caller's, else the server's setting;
        None means auto-detect (or the model's only language)."""
        if requested:
            return normalize_language(requested)
        value, _ = self.resolve("language", guild_id)
        return normalize_language(value)

    def preferred_mode(self) -> str:
        """Which provider of this plugin ranks first: WHISPER_MODE, else the bot-wide
        ``mode`` setting, else local."""
        if self.config.mode in MODES:
            return self.config.mode
        if self.settings is not None:
            value = self.settings.global_().get("mode", None)
            if isinstance(value, str) and value.lower() in MODES:
                return value.lower()
        return "local"

    @property
    def default_priority(self) -> int:  # type: ignore[override]
        # Only breaks ties between enabled, usable providers of no explicit choice.
        return 1 if self.preferred_mode() == self.mode else 0

    # -- audio ------------------------------------------------------------

    def is_silence(self, clip: AudioClip, guild_id: int | None) -> bool:
        """Digital silence or a near-silent clip: not worth a model run or an API call."""
        if not clip.frames:
            return True
        try:
            threshold = float(self.option("min_rms", guild_id) or 0.0)
        except (TypeError, ValueError):
            threshold = float(DEFAULT_SETTINGS["min_rms"])
        return threshold > 0 and rms(clip) < threshold
