"""A fake member's voice client: a real DAVE client (davey), and what it hears.

Every fake member in a voice channel has one (``FakeDiscord.voice_member``).
With DAVE on it owns a ``davey.DaveSession`` and follows the protocol the way
discord.py's client does (``DiscordVoiceWebSocket`` / ``VoiceConnectionState``),
so the bot is tested against the same MLS messages a person's client produces:
it sends its key package, processes proposals and commits (it may win the
commit race), welcomes and transitions, and reports ready (op 23). Unlike
discord.py it passes the users it knows are connected as ``expected_user_ids``
(as the DAVE spec asks clients to) and refuses bad proposals without dying:
refusals land in :attr:`FakeVoiceMember.refused`.

Media: what the member speaks is DAVE-encrypted with its session (while the
call is E2EE and its session ready, like discord.py's ``can_encrypt``); what
it receives (from the bot, from other members) is DAVE-decrypted before
decoding, so ``heard_audio`` is what the person would hear. Frames it cannot
decrypt are counted in :attr:`FakeVoiceMember.undecryptable`.

Messages from the gateway are handled in order, each in its own event-loop
callback (like frames arriving on a socket), never inside the sender's call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import rtp
from .voice_dave import (
    DAVE_VERSION,
    EXECUTE_TRANSITION,
    MLS_ANNOUNCE_COMMIT_TRANSITION,
    MLS_EXTERNAL_SENDER,
    MLS_PROPOSALS,
    MLS_WELCOME,
    PREPARE_EPOCH,
    PREPARE_TRANSITION,
    DaveCall,
)

if TYPE_CHECKING:
    import davey

log = logging.getLogger(__name__)

DAVE_MARKER = b"\xfa\xfa"


def is_dave_frame(payload: bytes) -> bool:
    """DAVE's protocol frame check, roughly: the magic marker and a sane supplemental size."""
    if len(payload) < 12 or payload[-2:] != DAVE_MARKER:
        return False
    supplemental = payload[-3]
    return 11 <= supplemental < len(payload)


def undecryptable_frame(index: int = 0) -> bytes:
    """A frame that passes the protocol frame check but cannot be decrypted.

    Layout as in DAVE: ciphertext, 8-byte truncated tag, ULEB128 nonce, the
    supplemental size (tag + nonce + this byte + marker), then 0xFAFA.
    """
    body = bytes((index * 37 + i) & 0xFF for i in range(20))
    tag = bytes(8)
    nonce = bytes([(index % 100) + 1])  # ULEB128, < 128
    size = len(tag) + len(nonce) + 1 + len(DAVE_MARKER)
    return body + tag + nonce + bytes([size]) + DAVE_MARKER


@dataclass
class HeardStream:
    """Decrypted Opus frames one member received from one sender (decoded on demand)."""

    frames: list[bytes] = field(default_factory=list)
    decoded: int = 0
    undecodable: int = 0  # frames libopus refused (e.g. plaintext that was not Opus)
    pcm: bytearray = field(default_factory=bytearray)
    decoder: Any = None

    def audio(self) -> bytes:
        if self.decoded < len(self.frames):
            from .voice_server import require_opus

            opus = require_opus()
            if self.decoder is None:
                self.decoder = opus.Decoder()
            for frame in self.frames[self.decoded :]:
                if frame == rtp.OPUS_SILENCE:
                    continue
                try:
                    self.pcm += self.decoder.decode(frame, fec=False)
                except opus.OpusError:
                    self.undecodable += 1
            self.decoded = len(self.frames)
        return bytes(self.pcm)


class FakeVoiceMember:
    """One fake member's voice client in one voice channel (see the module docstring)."""

    def __init__(
        self,
        *,
        user_id: int,
        guild_id: int,
        channel_id: int,
        supports_dave: bool,
        call: DaveCall,
        on_change: Callable[[], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.user_id = user_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.supports_dave = supports_dave
        self.call = call
        self.session: davey.DaveSession | None = None
        self.protocol_version = 0
        self.pending_transitions: dict[int, int] = {}
        self.executed_transitions: list[int] = []
        self.downgraded = False
        self.commits = True  # answer proposals with a commit (False: leave it to others)
        self.refused: list[str] = []  # proposals, commits and welcomes davey refused
        self.undecryptable: list[tuple[int, str]] = []  # (sender user id, why)
        self.heard: dict[int, HeardStream] = {}
        self.connected = False
        self.known_users: set[int] = set()  # connected users, from op 11 / op 13, in order
        self._awaiting: set[int] = set()  # joined via these transitions, not executed yet
        self._on_change = on_change
        self._on_error = on_error

    def __repr__(self) -> str:
        return (
            f"<FakeVoiceMember user={self.user_id} channel={self.channel_id} "
            f"dave={self.protocol_version} epoch={self.epoch} ready={self.dave_ready}>"
        )

    # -- state tests read ------------------------------------------------------------------

    @property
    def dave_ready(self) -> bool:
        """In the E2EE group, able to encrypt and decrypt, its join transition executed."""
        return (
            self.connected
            and self.protocol_version == DAVE_VERSION
            and self.session is not None
            and self.session.ready
            and not self._awaiting
        )

    @property
    def epoch(self) -> int | None:
        return self.session.epoch if self.session is not None else None

    @property
    def privacy_code(self) -> str | None:
        """The call's voice privacy code as this member's client shows it."""
        return self.session.voice_privacy_code if self.session is not None else None

    def heard_audio(self, user_id: int) -> bytes:
        """48 kHz stereo PCM this member heard from ``user_id`` (the bot or a member)."""
        stream = self.heard.get(user_id)
        return stream.audio() if stream is not None else b""

    # -- connecting ---------------------------------------------------------------------------

    def connect(self) -> None:
        self.connected = True
        # Who is there already, as the first CLIENTS_CONNECT would say.
        self.known_users = {self.user_id, *self.call.members}
        version = self.call.join(self, supports_dave=self.supports_dave)
        self.protocol_version = version
        if version > 0:
            self._reinit()
        self.call.start(self.user_id)

    def disconnect(self) -> None:
        if self.connected:
            self.connected = False
            self.call.leave(self.user_id)

    def _reinit(self) -> None:
        import davey

        if self.session is None:
            self.session = davey.DaveSession(self.protocol_version, self.user_id, self.channel_id)
        else:
            self.session.reinit(self.protocol_version, self.user_id, self.channel_id)
        self._awaiting.clear()
        self.call.on_key_package(self.user_id, self.session.get_serialized_key_package())

    # -- messages from the voice gateway (DaveEndpoint) ---------------------------------------

    def dave_send_json(self, op: int, data: dict[str, object]) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, self._on_json, op, data)

    def dave_send_binary(self, op: int, payload: bytes) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, self._on_binary, op, payload)

    def dave_client_connect(self, user_id: int) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, self._on_clients, 11, user_id)

    def dave_client_disconnect(self, user_id: int) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, self._on_clients, 13, user_id)

    def _on_clients(self, op: int, user_id: int) -> None:
        if op == 11:
            self.known_users.add(user_id)
        else:
            self.known_users.discard(user_id)

    def _deliver(self, handler: Callable[[int, Any], None], op: int, data: Any) -> None:
        if not self.connected:
            return
        try:
            handler(op, data)
        except Exception as exc:
            log.exception("fake member %s failed on DAVE op %d", self.user_id, op)
            self._on_error(f"fake member {self.user_id} on DAVE op {op}: {exc!r}")
        self._on_change()

    def _on_json(self, op: int, data: Any) -> None:
        if op == PREPARE_EPOCH and data["epoch"] == 1:
            # A new group (sole-member reset, upgrade): new state, new key package.
            self.protocol_version = data["protocol_version"]
            self._reinit()
        elif op == PREPARE_TRANSITION:
            transition_id, version = data["transition_id"], data["protocol_version"]
            self.pending_transitions[transition_id] = version
            if transition_id == 0:
                self._execute(0)
                return
            if version == 0 and self.session is not None:
                self.session.set_passthrough_mode(True, 120)
            self.call.on_ready(self.user_id, transition_id)
        elif op == EXECUTE_TRANSITION:
            self._execute(data["transition_id"])

    def _on_binary(self, op: int, payload: bytes) -> None:
        import davey

        session = self.session
        if session is None:
            return
        if op == MLS_EXTERNAL_SENDER:
            session.set_external_sender(payload)
        elif op == MLS_PROPOSALS:
            operation = (
                davey.ProposalsOperationType.append
                if payload[0] == 0
                else davey.ProposalsOperationType.revoke
            )
            # As the DAVE spec asks: refuse Adds for users not (or no longer) connected.
            expected = sorted(self.known_users)
            try:
                result = session.process_proposals(operation, payload[1:], expected)
            except ValueError as exc:
                self.refused.append(f"proposals: {exc}")
                return
            if result is not None and self.commits:
                self.call.on_commit_welcome(self.user_id, result.commit + (result.welcome or b""))
        elif op in (MLS_ANNOUNCE_COMMIT_TRANSITION, MLS_WELCOME):
            transition_id = int.from_bytes(payload[:2], "big")
            try:
                if op == MLS_WELCOME:
                    session.process_welcome(payload[2:])
                else:
                    session.process_commit(payload[2:])
            except ValueError as exc:
                self.refused.append(f"{'welcome' if op == MLS_WELCOME else 'commit'}: {exc}")
                self.call.on_invalid_commit_welcome(self.user_id, transition_id)
                self._reinit()
                return
            if transition_id != 0:
                self.pending_transitions[transition_id] = self.protocol_version
                self._awaiting.add(transition_id)
                self.call.on_ready(self.user_id, transition_id)

    def _execute(self, transition_id: int) -> None:
        # As discord.py's VoiceConnectionState._execute_transition.
        if transition_id not in self.pending_transitions:
            return
        old = self.protocol_version
        self.protocol_version = self.pending_transitions.pop(transition_id)
        self._awaiting.discard(transition_id)
        self.executed_transitions.append(transition_id)
        if old != self.protocol_version and self.protocol_version == 0:
            self.downgraded = True
        elif transition_id > 0 and self.downgraded:
            self.downgraded = False
            if self.session is not None:
                self.session.set_passthrough_mode(True, 10)

    # -- media ---------------------------------------------------------------------------------

    @property
    def can_encrypt(self) -> bool:
        return self.protocol_version != 0 and self.session is not None and self.session.ready

    def encrypt(self, opus: bytes) -> bytes:
        """What this member's client puts on the wire for one Opus frame."""
        if self.can_encrypt:
            assert self.session is not None
            return self.session.encrypt_opus(opus)
        return opus

    def receive(self, sender_id: int, payload: bytes) -> bytes | None:
        """One frame from ``sender_id``: the Opus it plays, or None if it cannot decrypt it."""
        if not self.connected:
            return None
        opus = self._decrypt(sender_id, payload)
        if opus is not None:
            self.heard.setdefault(sender_id, HeardStream()).frames.append(opus)
        return opus

    def _decrypt(self, sender_id: int, payload: bytes) -> bytes | None:
        import davey

        session = self.session
        if payload == rtp.OPUS_SILENCE:
            return payload  # DAVE lets the 3-byte silence frame through
        no_group = session is None or not session.ready
        if no_group or self.protocol_version == 0:
            # Transport-only media (no group yet, or downgraded) plays as it is; a DAVE
            # frame still needs the (retained) keys, if there are any.
            if not is_dave_frame(payload):
                return payload
            if no_group:
                self.undecryptable.append((sender_id, "a DAVE frame, but no group yet"))
                return None
        assert session is not None
        try:
            return session.decrypt(sender_id, davey.MediaType.audio, payload)
        except ValueError as exc:
            self.undecryptable.append((sender_id, str(exc)))
            return None
