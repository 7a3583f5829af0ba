"""SSML building and prosody values: pure functions, checked by parsing the XML back."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hark_tts_azure.ssml import (
    SSML_NAMESPACE,
    build_ssml,
    clean_text,
    is_short_name,
    parse_pitch,
    parse_rate,
    voice_locale,
)

NS = {"s": SSML_NAMESPACE}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

TRICKY = [
    "a < b && c > d",
    'Tom & Jerry\'s "big" <adventure>',
    "</voice></speak><speak>injected",
    "<![CDATA[ x ]]> &amp; &#60; <!-- comment -->",
    "quotes ' and \" together",
    "emoji 🎉, accents éàü, 日本語",
]


@pytest.mark.parametrize("text", TRICKY)
def test_text_is_escaped_and_round_trips(text: str) -> None:
    ssml = build_ssml(text, "en-US-AmberNeural")
    root = ET.fromstring(ssml.encode("utf-8"))
    voice = root.find("s:voice", NS)
    assert voice is not None
    # The text comes back exactly: nothing was parsed as markup, nothing was lost.
    assert "".join(voice.itertext()) == text
    assert len(list(voice)) == 0  # no element was injected


def test_document_shape() -> None:
    ssml = build_ssml("Hi", "en-GB-RyanNeural")
    root = ET.fromstring(ssml)
    assert root.tag == f"{{{SSML_NAMESPACE}}}speak"
    assert root.get("version") == "1.0"
    assert root.get(XML_LANG) == "en-GB"
    assert root.find("s:voice", NS).get("name") == "en-GB-RyanNeural"
    assert root.find(".//s:prosody", NS) is None


def test_explicit_locale_wins() -> None:
    root = ET.fromstring(build_ssml("Hi", "custom-voice", locale="de-DE"))
    assert root.get(XML_LANG) == "de-DE"


def test_prosody() -> None:
    root = ET.fromstring(build_ssml("Hi & bye", "en-US-GuyNeural", rate="+20%", pitch="-2st"))
    prosody = root.find("s:voice/s:prosody", NS)
    assert prosody is not None
    assert prosody.get("rate") == "+20%" and prosody.get("pitch") == "-2st"
    assert prosody.text == "Hi & bye"
    only_pitch = ET.fromstring(build_ssml("x", "en-US-GuyNeural", rate="default", pitch="low"))
    prosody = only_pitch.find(".//s:prosody", NS)
    assert prosody.get("rate") is None and prosody.get("pitch") == "low"


def test_attributes_are_escaped() -> None:
    # A voice name from a setting can't break out of its attribute either.
    evil = 'x" onload="y'
    root = ET.fromstring(build_ssml("hi", evil, locale='en"US', rate='+1%"'))
    assert root.find("s:voice", NS).get("name") == evil
    assert root.get(XML_LANG) == 'en"US'


def test_characters_xml_cannot_carry_are_removed() -> None:
    text = "bell\x07 nul\x00 tab\tnewline\n ok\ufffe"
    assert clean_text(text) == "bell nul tab\tnewline\n ok"
    root = ET.fromstring(build_ssml(text, "en-US-AmberNeural"))
    assert "".join(root.find("s:voice", NS).itertext()) == "bell nul tab\tnewline\n ok"


@pytest.mark.parametrize(
    ("voice", "locale"),
    [
        ("en-US-AmberNeural", "en-US"),
        ("en-GB-RyanNeural", "en-GB"),
        ("zh-CN-shaanxi-XiaoniNeural", "zh-CN-shaanxi"),
        ("sr-Latn-RS-NicholasNeural", "sr-Latn-RS"),
        ("iu-Cans-CA-SiqiniqNeural", "iu-Cans-CA"),
        ("Microsoft Server Speech Text to Speech Voice (ja-JP, NanamiNeural)", "ja-JP"),
        ("MyCustomVoice", "en-US"),
    ],
)
def test_voice_locale(voice: str, locale: str) -> None:
    assert voice_locale(voice) == locale


def test_is_short_name() -> None:
    assert is_short_name("en-US-AmberNeural")
    assert not is_short_name("Amber")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+20%", "+20%"),
        ("-50%", "-50%"),
        ("+100%", "+100%"),
        ("+10.50%", "+10.5%"),
        ("1.2", "1.2"),
        ("0.5", "0.5"),
        ("2.0", "2"),
        ("SLOW", "slow"),
        ("x-fast", "x-fast"),
        ("default", "default"),
    ],
)
def test_parse_rate_accepts(raw: str, expected: str) -> None:
    assert parse_rate(raw) == expected


@pytest.mark.parametrize("raw", ["+101%", "-60%", "50%", "3", "0.2", "fastest", "", "1,5", "+x%"])
def test_parse_rate_refuses(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rate(raw)
    assert str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+10%", "+10%"),
        ("-5%", "-5%"),
        ("+2st", "+2st"),
        ("-12ST", "-12st"),
        ("+40hz", "+40Hz"),
        ("220Hz", "220Hz"),
        ("High", "high"),
        ("x-low", "x-low"),
    ],
)
def test_parse_pitch_accepts(raw: str, expected: str) -> None:
    assert parse_pitch(raw) == expected


@pytest.mark.parametrize("raw", ["+60%", "+13st", "+500Hz", "10Hz", "5000Hz", "10%", "loud", ""])
def test_parse_pitch_refuses(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_pitch(raw)
    assert str(caught.value)
