"""SSML for Azure's synthesis endpoint, and the prosody values a server may choose.

Azure reads the request body as SSML (W3C Speech Synthesis Markup Language 1.0):
a ``<speak>`` root carrying ``xml:lang``, a ``<voice name="...">`` element, and,
for a changed speaking rate or pitch, a ``<prosody>`` element around the text.
Everything that comes from users (the text) or from settings (voice, rate, pitch)
is XML-escaped here, so ``<``, ``&`` and quotes are spoken, never parsed.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

SSML_NAMESPACE = "http://www.w3.org/2001/10/synthesis"

# Characters XML 1.0 forbids (C0 controls other than tab/newline/return, lone
# surrogates, U+FFFE/U+FFFF): Azure answers 400 to a body containing one.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ENTITIES = {'"': "&quot;", "'": "&apos;"}

# "en-US-AmberNeural" -> "en-US"; "zh-CN-shaanxi-XiaoniNeural" -> "zh-CN-shaanxi";
# "sr-Latn-RS-NicholasNeural" -> "sr-Latn-RS". The name part never has a hyphen.
_SHORT_NAME = re.compile(r"^(?P<locale>[A-Za-z]{2,3}(?:-[A-Za-z0-9]+)+)-(?P<name>[A-Za-z0-9]+)$")
# The long form Azure also accepts:
# "Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)".
_LONG_NAME = re.compile(r"\((?P<locale>[A-Za-z]{2,3}(?:-[A-Za-z0-9]+)+),\s*[^)]+\)\s*$")

DEFAULT_LOCALE = "en-US"

RATE_WORDS = ("x-slow", "slow", "medium", "fast", "x-fast", "default")
PITCH_WORDS = ("x-low", "low", "medium", "high", "x-high", "default")

# Azure's documented speaking-rate range is half to double the voice's default.
MIN_RATE, MAX_RATE = 0.5, 2.0
_NUMBER = r"\d+(?:\.\d+)?"
_RATE_PERCENT = re.compile(rf"^(?P<sign>[+-])(?P<value>{_NUMBER})%$")
_RATE_FACTOR = re.compile(rf"^(?P<value>{_NUMBER})$")
_PITCH_RELATIVE = re.compile(rf"^(?P<sign>[+-])(?P<value>{_NUMBER})(?P<unit>%|hz|st)$", re.I)
_PITCH_ABSOLUTE = re.compile(rf"^(?P<value>{_NUMBER})hz$", re.I)
# Bounds that keep a voice intelligible (a typo such as +500% is refused, not sent).
_PITCH_LIMITS = {"%": 50.0, "Hz": 300.0, "st": 12.0}
_PITCH_ABSOLUTE_RANGE = (50.0, 1000.0)


def clean_text(text: str) -> str:
    """``text`` without the characters XML cannot carry."""
    return _NOT_XML.sub("", text)


def escape_text(text: str) -> str:
    """Text content: ``&``, ``<``, ``>`` and both quotes as entities."""
    return escape(clean_text(text), _ENTITIES)


def escape_attribute(value: str) -> str:
    """A value for a double- or single-quoted attribute."""
    return escape(clean_text(value), {**_ENTITIES, "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def is_short_name(voice: str) -> bool:
    """Whether ``voice`` looks like an Azure ShortName (``en-US-AmberNeural``)."""
    return bool(_SHORT_NAME.match(voice))


def voice_locale(voice: str, default: str = DEFAULT_LOCALE) -> str:
    """The locale in a voice's name (``en-GB-RyanNeural`` -> ``en-GB``), else ``default``."""
    voice = voice.strip()
    match = _SHORT_NAME.match(voice) or _LONG_NAME.search(voice)
    return match.group("locale") if match else default


def _number(text: str) -> str:
    """A number without needless zeros ("10.50" -> "10.5", "3.0" -> "3")."""
    value = float(text)
    return f"{value:g}" if value != int(value) else str(int(value))


def parse_rate(raw: str) -> str:
    """A speaking rate as Azure's prosody ``rate`` accepts it, normalized.

    ``+20%`` / ``-15%`` (relative change), ``1.25`` (multiplier of the voice's
    default, 0.5 to 2) or one of ``x-slow slow medium fast x-fast default``.
    Raises ValueError with a sentence fit to show a user.
    """
    text = raw.strip().lower()
    if text in RATE_WORDS:
        return text
    allowed = (
        "a rate is a change like `+20%` or `-10%`, a multiplier from 0.5 to 2 like `1.2`,"
        f" or one of {', '.join(RATE_WORDS)}"
    )
    if match := _RATE_PERCENT.match(text):
        change = float(match["value"]) * (1 if match["sign"] == "+" else -1)
        if not MIN_RATE <= 1 + change / 100 <= MAX_RATE:
            raise ValueError("a rate change must be between -50% and +100%")
        return f"{match['sign']}{_number(match['value'])}%"
    if match := _RATE_FACTOR.match(text):
        factor = float(match["value"])
        if not MIN_RATE <= factor <= MAX_RATE:
            raise ValueError("a rate multiplier must be between 0.5 and 2")
        return _number(match["value"])
    raise ValueError(allowed)


def parse_pitch(raw: str) -> str:
    """A pitch as Azure's prosody ``pitch`` accepts it, normalized.

    ``+10%`` / ``-5%``, ``+2st`` (semitones), ``-40Hz`` (relative), ``220Hz``
    (absolute) or one of ``x-low low medium high x-high default``.
    Raises ValueError with a sentence fit to show a user.
    """
    text = raw.strip()
    if text.lower() in PITCH_WORDS:
        return text.lower()
    if match := _PITCH_RELATIVE.match(text):
        unit = {"%": "%", "hz": "Hz", "st": "st"}[match["unit"].lower()]
        limit = _PITCH_LIMITS[unit]
        if float(match["value"]) > limit:
            raise ValueError(f"a pitch change in {unit} must be between -{limit:g} and +{limit:g}")
        return f"{match['sign']}{_number(match['value'])}{unit}"
    if match := _PITCH_ABSOLUTE.match(text):
        low, high = _PITCH_ABSOLUTE_RANGE
        if not low <= float(match["value"]) <= high:
            raise ValueError(f"an absolute pitch must be between {low:g}Hz and {high:g}Hz")
        return f"{_number(match['value'])}Hz"
    raise ValueError(
        "a pitch is a change like `+10%`, `-2st` or `+20Hz`, an absolute `220Hz`,"
        f" or one of {', '.join(PITCH_WORDS)}"
    )


def build_ssml(
    text: str,
    voice: str,
    *,
    locale: str | None = None,
    rate: str | None = None,
    pitch: str | None = None,
) -> str:
    """The SSML document that speaks ``text`` with ``voice``.

    ``locale`` (the voice's, for ``xml:lang``) defaults to the one in the voice's
    name. ``rate`` and ``pitch`` are prosody values (see :func:`parse_rate` and
    :func:`parse_pitch`); left out or ``default``, no ``<prosody>`` is written.
    """
    lang = escape_attribute(locale or voice_locale(voice))
    body = escape_text(text)
    prosody = []
    if rate and rate != "default":
        prosody.append(f'rate="{escape_attribute(rate)}"')
    if pitch and pitch != "default":
        prosody.append(f'pitch="{escape_attribute(pitch)}"')
    if prosody:
        body = f"<prosody {' '.join(prosody)}>{body}</prosody>"
    return (
        f'<speak version="1.0" xmlns="{SSML_NAMESPACE}" xml:lang="{lang}">'
        f'<voice name="{escape_attribute(voice)}">{body}</voice></speak>'
    )
