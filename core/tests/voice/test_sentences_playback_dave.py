"""Sentence cutting, the playback source, and the DAVE receive path."""

from __future__ import annotations

import davey

from hark.audio import DISCORD_FRAME_BYTES
from hark.voice.dave import DAVE_MARKER, Verdict, dave_decrypt, encryption_of
from hark.voice.playback import SILENCE_FRAME, SpeechSource
from hark.voice.sentences import SentenceSplitter, split_sentences


def test_sentences_come_out_as_soon_as_they_end():
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there") == []
    assert splitter.feed(". How are") == ["Hello there."]
    assert splitter.feed(" you? I'm fine") == ["How are you?"]
    assert splitter.flush() == ["I'm fine"]
    assert splitter.flush() == []


def test_decimals_quotes_and_newlines():
    assert split_sentences('It costs 3.50 dollars. "Really?" she asked.\nNew line') == [
        "It costs 3.50 dollars.",
        '"Really?"',
        "she asked.",
        "New line",
    ]


def test_long_sentences_are_cut_at_clauses():
    text = "one, " * 80
    parts = split_sentences(text, max_chars=50)
    assert all(len(p) <= 50 for p in parts)
    assert " ".join(parts).replace(" ", "") == text.replace(" ", "").rstrip()


def test_speech_source_frames_silence_and_segments():
    source = SpeechSource()
    source.add(b"\x01\x00" * (DISCORD_FRAME_BYTES // 2 + 10), 0)  # 1 frame + a bit
    assert source.read() == b"\x01\x00" * (DISCORD_FRAME_BYTES // 2)
    assert source.read() == SILENCE_FRAME  # waiting for more audio: keep the line open
    source.add(b"\x02\x00" * 100, 1)  # a new sentence flushes the previous partial frame
    first = source.read()
    assert len(first) == DISCORD_FRAME_BYTES and first.startswith(b"\x01\x00" * 10)
    source.close()
    last = source.read()
    assert len(last) == DISCORD_FRAME_BYTES and last.startswith(b"\x02\x00")
    assert source.read() == b""  # closed and drained: the player ends
    assert source.started_segments == {0, 1}


def test_speech_source_stop_drops_the_rest():
    source = SpeechSource()
    source.add(b"\x00" * DISCORD_FRAME_BYTES * 10, 0)
    source.add(b"\x00" * DISCORD_FRAME_BYTES * 10, 1)
    source.read()
    source.stop()
    assert source.read() == b""
    assert source.started_segments == {0}


class Connection:
    def __init__(self, session, version=1):
        self.dave_session = session
        self.dave_protocol_version = version


class RecordingSession:
    """Stands in for davey.DaveSession once the MLS group is established."""

    ready = True

    def __init__(self, passthrough=False, fail=False):
        self.calls = []
        self.passthrough = passthrough
        self.fail = fail

    def decrypt(self, user_id, media_type, payload):
        self.calls.append((user_id, media_type, payload))
        if self.fail:
            raise RuntimeError("no key for this sender yet")
        return b"opus:" + payload

    def can_passthrough(self, user_id):
        return self.passthrough


def test_dave_decrypts_through_the_session_with_the_speakers_id():
    session = RecordingSession()
    assert dave_decrypt(Connection(session), 42, b"frame") == b"opus:frame"
    assert session.calls == [(42, davey.MediaType.audio, b"frame")]


def test_dave_passes_through_when_inactive():
    assert dave_decrypt(Connection(None, 0), 42, b"frame") == b"frame"
    assert dave_decrypt(Connection(RecordingSession(), 0), 42, b"frame") == b"frame"
    assert dave_decrypt(Connection(RecordingSession()), None, b"frame") == b"frame"
    # A real, freshly created DAVE session is not ready yet: nothing to decrypt with.
    real = davey.DaveSession(1, 1234, 5678)
    assert not real.ready
    assert dave_decrypt(Connection(real), 42, b"frame") == b"frame"


def test_dave_failure_passes_through_only_when_allowed():
    assert dave_decrypt(Connection(RecordingSession(fail=True, passthrough=True)), 1, b"x") == b"x"
    failing = Connection(RecordingSession(fail=True, passthrough=False))
    assert dave_decrypt(failing, 1, b"x") is Verdict.DROP
    # A DAVE frame (it ends in the marker) is never passed through undecrypted.
    allowed = Connection(RecordingSession(fail=True, passthrough=True))
    assert dave_decrypt(allowed, 1, b"x" + DAVE_MARKER) is Verdict.DROP


def test_dave_frames_of_unknown_or_not_ready_senders_are_held_or_dropped():
    encrypted = b"opus-ciphertext" + DAVE_MARKER
    assert dave_decrypt(Connection(RecordingSession()), None, encrypted) is Verdict.HOLD
    real = davey.DaveSession(1, 1234, 5678)  # not ready: no key to decrypt with
    assert dave_decrypt(Connection(real), 42, encrypted) is Verdict.DROP
    # DAVE off: a payload is plain Opus whatever its last bytes are
    assert dave_decrypt(Connection(RecordingSession(), 0), None, encrypted) == encrypted


def test_encryption_status_for_voice_command():
    assert encryption_of(None).describe().startswith("off")
    assert (
        encryption_of(Connection(davey.DaveSession(1, 1, 2))).describe().startswith("negotiating")
    )

    class Ready(RecordingSession):
        epoch = 3
        voice_privacy_code = "01234 56789"

    status = encryption_of(Connection(Ready()))
    assert status.end_to_end
    assert status.describe() == "on (DAVE v1, epoch 3, voice privacy code 01234 56789)"
