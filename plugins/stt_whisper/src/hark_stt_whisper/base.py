"""What the local and the OpenAI transcriber share: settings, language, silence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from hark import AudioClip, Transcriber
from hark.audio import rms
from hark_stt_whisper.settings import WhisperSettings, normalize_language


class WhisperTranscriber(Transcriber):
    """Base of :class:`LocalWhisperTranscriber` and :class:`OpenAIWhisperTranscriber`.

    Each call gets its server's :class:`WhisperSettings` from the core (``settings=``);
    what is the same everywhere (the machine, the endpoint, the mode) is read from
    :meth:`bot_wide`.
    """

    # Used outside a bot (tests, scripts, `bot prepare`); in the bot the declaration.
    settings_model = WhisperSettings
    #: "local" or "openai": the mode this provider serves (also its ``name``).
    mode: ClassVar[str] = ""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        settings: WhisperSettings | None = None,
    ) -> None:
        """``environ`` is the settings' environment layer (default ``os.environ``);
        ``settings``, when given, are the bot-wide values to use instead of resolving
        them (``bot prepare`` hands them over, as `bot run` has them)."""
        super().__init__()
        self.environ = environ
        self._bot_wide = settings

    def bot_wide(self) -> WhisperSettings:
        """The settings without any server's choices: the machine, the endpoint, the
        default model and language."""
        if self._bot_wide is not None:
            return self._bot_wide
        resolved = self.resolve()
        assert resolved is not None
        return resolved.values

    def language_for(self, settings: WhisperSettings, requested: str | None = None) -> str | None:
        """The language to transcribe in: the caller's, else the server's setting;
        None means auto-detect (or the model's only language)."""
        return normalize_language(requested or settings.language)

    @property
    def default_priority(self) -> int:  # type: ignore[override]
        # Only breaks ties between enabled, usable providers of no explicit choice.
        return 1 if self.bot_wide().mode == self.mode else 0

    @staticmethod
    def is_silence(clip: AudioClip, settings: WhisperSettings) -> bool:
        """Digital silence or a near-silent clip: not worth a model run or an API call."""
        if not clip.frames:
            return True
        return settings.min_rms > 0 and rms(clip) < settings.min_rms
