"""The voice WebSocket (voice gateway v8) of the loopback voice server.

Handshake, as discord.py's ``DiscordVoiceWebSocket`` drives it::

    server: HELLO (op 8) {heartbeat_interval}
    client: IDENTIFY (op 0) {server_id, user_id, session_id, token, max_dave_protocol_version}
    server: READY (op 2) {ssrc, ip, port, modes}
    client: (UDP IP discovery) SELECT_PROTOCOL (op 1) {protocol: "udp", data: {address, port, mode}}
    server: SESSION_DESCRIPTION (op 4) {mode, secret_key: [32 ints], dave_protocol_version: 1}
            CLIENTS_CONNECT (op 11); DAVE: MLS external sender package (op 25, binary)
    client: SPEAKING (op 5) {speaking, delay, ssrc}; HEARTBEAT (op 3) {t, seq_ack}
            DAVE: key package (op 26, binary)
    server: HEARTBEAT_ACK (op 6) {t}; CLIENTS_CONNECT (op 11); CLIENT_DISCONNECT (op 13);
            SPEAKING (op 5) {user_id, ssrc, speaking} for members; DAVE ops 21-30

Version 8 numbers server messages (``"seq"``) and keeps them, so a RESUME (op 7)
with ``seq_ack`` gets what it missed before RESUMED (op 9). HELLO,
HEARTBEAT_ACK and RESUMED are not numbered. Binary frames (DAVE's MLS
messages) are ``[seq u16 BE][opcode u8][payload]`` from the server and
``[opcode u8][payload]`` from the client, as discord.py reads and writes them.

DAVE (:mod:`.voice_dave`): ``dave_protocol_version`` is 1 when DAVE is on for
the channel and the client's IDENTIFY said ``max_dave_protocol_version`` >= 1;
a client without DAVE gets 0 and downgrades the call to transport-only
encryption (DAVE's transitory phase), as the raw-protocol tests rely on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .gateway import GatewayConnection
from .rtp import MODE_XCHACHA20_RTPSIZE
from .voice_dave import (
    MLS_COMMIT_WELCOME,
    MLS_INVALID_COMMIT_WELCOME,
    MLS_KEY_PACKAGE,
    READY_FOR_TRANSITION,
)
from .voice_records import VoiceConnectionRecord

if TYPE_CHECKING:
    from .voice_server import VoiceServer

log = logging.getLogger(__name__)

# Voice opcodes.
IDENTIFY = 0
SELECT_PROTOCOL = 1
READY = 2
HEARTBEAT = 3
SESSION_DESCRIPTION = 4
SPEAKING = 5
HEARTBEAT_ACK = 6
RESUME = 7
HELLO = 8
RESUMED = 9
CLIENTS_CONNECT = 11
CLIENT_CONNECT = 12
CLIENT_DISCONNECT = 13
# Sent by clients, accepted and ignored: client connect (video), voice backend version.
IGNORED_CLIENT_OPS = frozenset({CLIENT_CONNECT, 16})

# Voice close codes.
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_SESSION_INVALID = 4006
CLOSE_SERVER_NOT_FOUND = 4011
CLOSE_UNKNOWN_PROTOCOL = 4012
CLOSE_DISCONNECTED = 4014
CLOSE_UNKNOWN_ENCRYPTION_MODE = 4016

MODES = [MODE_XCHACHA20_RTPSIZE]  # the only transport encryption the fake implements
MIN_VERSION = 4


class VoiceSocket:
    """One voice WebSocket; ``record`` once IDENTIFY or RESUME succeeded."""

    def __init__(self, conn: GatewayConnection, version: int) -> None:
        self.conn = conn
        self.version = version
        self.record: VoiceConnectionRecord | None = None

    def send_unsequenced(self, op: int, data: Any) -> None:
        self.conn.send(json.dumps({"op": op, "d": data}))

    def close(self, code: int, reason: str) -> None:
        self.conn.close_after_flush(code, reason)


class VoiceGateway:
    def __init__(self, server: VoiceServer) -> None:
        self.server = server
        self.sockets: set[VoiceSocket] = set()
        self.binary_frames = 0  # DAVE/MLS binary frames received

    # -- sending -----------------------------------------------------------------

    def send(self, record: VoiceConnectionRecord, op: int, data: Any) -> None:
        """Send a numbered (v8) message to the record's socket, keeping it for RESUME."""
        record.seq += 1
        frame = json.dumps({"op": op, "d": data, "seq": record.seq})
        record.buffer.append((record.seq, frame))
        if record.socket is not None:
            record.socket.send(frame)

    def send_binary(self, record: VoiceConnectionRecord, op: int, payload: bytes) -> None:
        """A numbered DAVE binary frame: ``[seq u16 BE][opcode][payload]``, kept for RESUME."""
        record.seq += 1
        frame = (record.seq & 0xFFFF).to_bytes(2, "big") + bytes([op]) + payload
        record.buffer.append((record.seq, frame))
        if record.socket is not None:
            record.socket.send(frame)

    # -- connections -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            version = int(request.query.get("v", ""))
        except ValueError:
            version = 0
        if version < MIN_VERSION:
            raise web.HTTPBadRequest(text="voice gateway version ?v=4..8 required")
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        sock = VoiceSocket(GatewayConnection(ws, request), version)
        self.sockets.add(sock)
        sock.send_unsequenced(
            HELLO, {"v": version, "heartbeat_interval": self.server.heartbeat_interval_ms}
        )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._safe_on_frame(sock, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self.binary_frames += 1
                    self._safe_on_binary(sock, msg.data)
                else:
                    break
        finally:
            self.sockets.discard(sock)
            self._detach(sock)
            await sock.conn.stop()
            self.server.changed()
        return ws

    def _attach(self, sock: VoiceSocket, record: VoiceConnectionRecord) -> None:
        old = record.socket
        if old is not None and old is not sock.conn:
            # A second socket took over the session: the old one is done.
            for other in self.sockets:
                if other.conn is old:
                    other.record = None
            old.close_after_flush(CLOSE_SESSION_INVALID, "Session taken over by another socket.")
        record.socket = sock.conn
        sock.record = record

    def _detach(self, sock: VoiceSocket) -> None:
        if sock.record is not None and sock.record.socket is sock.conn:
            sock.record.socket = None
        sock.record = None

    def detach_record(self, record: VoiceConnectionRecord) -> GatewayConnection | None:
        """Unbind the record's socket (the socket stays open); returns it."""
        conn = record.socket
        for sock in self.sockets:
            if sock.conn is conn:
                sock.record = None
        record.socket = None
        return conn

    async def close(self) -> None:
        for sock in list(self.sockets):
            sock.close(1001, "server shutting down")
        for sock in list(self.sockets):
            await sock.conn.flush(timeout=2.0)
            await sock.conn.stop()
            with contextlib.suppress(Exception):
                await sock.conn.ws.close()
        self.sockets.clear()

    # -- frames --------------------------------------------------------------------

    def _safe_on_frame(self, sock: VoiceSocket, raw: str) -> None:
        try:
            self._on_frame(sock, raw)
        except Exception as exc:
            log.exception("fake voice gateway failed on %s", raw[:200])
            self.server.internal_errors.append(f"voice frame {raw[:200]}: {exc!r}")
            sock.close(4000, "Internal error in the fake voice gateway.")
        self.server.changed()

    def _safe_on_binary(self, sock: VoiceSocket, data: bytes) -> None:
        try:
            self._on_binary(sock, data)
        except Exception as exc:
            log.exception("fake voice gateway failed on a binary frame")
            self.server.internal_errors.append(f"voice binary frame {data[:16].hex()}: {exc!r}")
            sock.close(4000, "Internal error in the fake voice gateway.")
        self.server.changed()

    def _on_binary(self, sock: VoiceSocket, data: bytes) -> None:
        record = sock.record
        if record is None:
            sock.close(CLOSE_NOT_AUTHENTICATED, "Not authenticated.")
            return
        if not data:
            sock.close(CLOSE_DECODE_ERROR, "Failed to decode payload.")
            return
        op, payload = data[0], bytes(data[1:])
        call = self.server.dave.calls.get(record.channel_id)
        if call is None or record.dave_endpoint is None:
            return  # no DAVE session on this connection: nothing to do with it
        if op == MLS_KEY_PACKAGE:
            call.on_key_package(record.user_id, payload)
        elif op == MLS_COMMIT_WELCOME:
            call.on_commit_welcome(record.user_id, payload)
        else:
            sock.close(CLOSE_UNKNOWN_OPCODE, "Unknown opcode.")

    def _on_dave_json(self, record: VoiceConnectionRecord, op: int, data: Any) -> None:
        call = self.server.dave.calls.get(record.channel_id)
        transition_id = data.get("transition_id") if isinstance(data, dict) else None
        if call is None or record.dave_endpoint is None or not isinstance(transition_id, int):
            return
        if op == READY_FOR_TRANSITION:
            call.on_ready(record.user_id, transition_id)
        else:
            call.on_invalid_commit_welcome(record.user_id, transition_id)

    def _on_frame(self, sock: VoiceSocket, raw: str) -> None:
        try:
            msg = json.loads(raw)
            op = msg["op"]
            data = msg.get("d")
        except (ValueError, KeyError, TypeError):
            sock.close(CLOSE_DECODE_ERROR, "Failed to decode payload.")
            return
        if op == HEARTBEAT:
            self._heartbeat(sock, data)
        elif op == IDENTIFY:
            self._identify(sock, data if isinstance(data, dict) else {})
        elif op == RESUME:
            self._resume(sock, data if isinstance(data, dict) else {})
        elif sock.record is None:
            sock.close(CLOSE_NOT_AUTHENTICATED, "Not authenticated.")
        elif op == SELECT_PROTOCOL:
            self._select_protocol(sock, sock.record, data if isinstance(data, dict) else {})
        elif op == SPEAKING:
            self.server.on_bot_speaking(sock.record, data if isinstance(data, dict) else {})
        elif op in (READY_FOR_TRANSITION, MLS_INVALID_COMMIT_WELCOME):
            self._on_dave_json(sock.record, op, data)
        elif op not in IGNORED_CLIENT_OPS:
            sock.close(CLOSE_UNKNOWN_OPCODE, "Unknown opcode.")

    def _heartbeat(self, sock: VoiceSocket, data: Any) -> None:
        if isinstance(data, dict):  # v8: {"t": nonce, "seq_ack": n}
            sock.send_unsequenced(HEARTBEAT_ACK, {"t": data.get("t")})
            if sock.record is not None and isinstance(data.get("seq_ack"), int):
                sock.record.last_seq_ack = data["seq_ack"]
        else:  # before v8 the nonce was the whole payload
            sock.send_unsequenced(HEARTBEAT_ACK, data)
        if sock.record is not None:
            sock.record.heartbeat_count += 1

    def _find(self, data: dict[str, Any]) -> VoiceConnectionRecord | None:
        try:
            guild_id = int(data.get("server_id") or 0)
        except (TypeError, ValueError):
            return None
        record = self.server.connections.get(guild_id)
        return None if record is None or record.ended else record

    @staticmethod
    def _credentials_match(record: VoiceConnectionRecord, data: dict[str, Any]) -> bool:
        token = data.get("token")
        return (
            isinstance(token, str)
            and secrets.compare_digest(token, record.token)
            and data.get("session_id") == record.session_id
        )

    def _identify(self, sock: VoiceSocket, data: dict[str, Any]) -> None:
        if sock.record is not None:
            sock.close(CLOSE_ALREADY_AUTHENTICATED, "Already authenticated.")
            return
        record = self._find(data)
        if record is None:
            sock.close(CLOSE_SERVER_NOT_FOUND, "Server not found.")
            return
        if (
            record.invalid
            or str(data.get("user_id")) != str(record.user_id)
            or not self._credentials_match(record, data)
        ):
            sock.close(CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        record.identify_count += 1
        self._attach(sock, record)
        # A new voice session on this connection: fresh numbering, SSRC and key, and
        # a new MLS member (the old one leaves the DAVE group).
        self.server.dave.bot_leave(record)
        record.dave_protocol_version = 0
        record.seq = 0
        record.buffer.clear()
        record.mode = record.secret_key = record.bot_address = record.discovered_address = None
        record.decoder = None
        record.max_dave_protocol_version = data.get("max_dave_protocol_version")
        ssrc = self.server.assign_ssrc(record)
        self.send(
            record,
            READY,
            {
                "ssrc": ssrc,
                "ip": self.server.host,
                "port": self.server.udp_port,
                "modes": list(MODES),
                "experiments": [],
            },
        )

    def _select_protocol(
        self, sock: VoiceSocket, record: VoiceConnectionRecord, data: dict[str, Any]
    ) -> None:
        if data.get("protocol") != "udp":
            sock.close(CLOSE_UNKNOWN_PROTOCOL, "Unknown protocol.")
            return
        inner = data.get("data")
        inner = inner if isinstance(inner, dict) else {}
        mode, address, port = inner.get("mode"), inner.get("address"), inner.get("port")
        if mode not in MODES:
            sock.close(CLOSE_UNKNOWN_ENCRYPTION_MODE, "Unknown encryption mode.")
            return
        if not isinstance(address, str) or not isinstance(port, int) or not 0 < port < 65536:
            sock.close(CLOSE_DECODE_ERROR, "Failed to decode payload.")
            return
        record.mode = mode
        record.bot_address = (address, port)
        record.decoder = None
        key = secrets.token_bytes(32)
        record.secret_key = key
        version = self.server.dave.bot_join(self, record)
        self.send(
            record,
            SESSION_DESCRIPTION,
            {
                "mode": mode,
                "secret_key": list(key),
                "dave_protocol_version": version,
                "audio_codec": "opus",
                "video_codec": None,
                "media_session_id": secrets.token_hex(16),
            },
        )
        record.users = set(self.server.users_in_channel(record))
        if record.users:
            self.send(record, CLIENTS_CONNECT, {"user_ids": [str(u) for u in sorted(record.users)]})
        self.server.dave.bot_start(record)  # op 25, then proposals as key packages come

    def _resume(self, sock: VoiceSocket, data: dict[str, Any]) -> None:
        record = self._find(data)
        if (
            record is None
            or record.invalid
            or record.ssrc is None
            or not self._credentials_match(record, data)
        ):
            sock.close(CLOSE_SESSION_INVALID, "Session no longer valid.")
            return
        record.resume_count += 1
        self._attach(sock, record)
        seq_ack = data.get("seq_ack")
        seq_ack = seq_ack if isinstance(seq_ack, int) else record.seq
        for seq, frame in record.buffer:
            if seq > seq_ack:
                sock.conn.send(frame)
        sock.send_unsequenced(RESUMED, None)
