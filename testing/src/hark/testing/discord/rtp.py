"""RTP as Discord voice uses it: packet layout, transport encryption, IP discovery.

Discord sends one Opus frame (20 ms, 48 kHz stereo) per RTP packet, payload
type 0x78. With the ``aead_xchacha20_poly1305_rtpsize`` mode the packet is::

    RTP header (12 bytes + 4 per CSRC) [+ 4-byte extension header if X is set]
    ciphertext (extension body, if any, then the Opus frame) + 16-byte tag
    4-byte big-endian nonce counter

The unencrypted part (header plus extension header) is the AEAD's additional
data; the 24-byte XChaCha20 nonce is the counter followed by 20 zero bytes.
This mirrors ``VoiceClient._encrypt_aead_xchacha20_poly1305_rtpsize`` in
discord.py (which sends no extension) and ``PacketDecryptor`` in
discord-ext-voice-recv (which strips one, as Discord's packets carry one).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

MODE_XCHACHA20_RTPSIZE = "aead_xchacha20_poly1305_rtpsize"
OPUS_PAYLOAD_TYPE = 0x78
OPUS_SILENCE = b"\xf8\xff\xfe"  # what clients send after speech (discord.py: 5 of them)
SAMPLE_RATE = 48_000
CHANNELS = 2
FRAME_SECONDS = 0.02
SAMPLES_PER_FRAME = 960
FRAME_BYTES = SAMPLES_PER_FRAME * CHANNELS * 2  # 3840 bytes of s16le stereo
PCM_BYTES_PER_SECOND = SAMPLE_RATE * CHANNELS * 2

ONE_BYTE_EXTENSION_PROFILE = b"\xbe\xde"  # RFC 8285
AUDIO_LEVEL_EXTENSION_ID = 1  # RFC 6464; voice-recv calls it "audio_power"

IP_DISCOVERY_SIZE = 74
IP_DISCOVERY_REQUEST = 1
IP_DISCOVERY_RESPONSE = 2

_HEADER = struct.Struct(">BBHII")


class RtpError(ValueError):
    """A datagram that is not a valid (or not a decryptable) RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    """A decrypted RTP packet."""

    sequence: int
    timestamp: int
    ssrc: int
    payload_type: int
    marker: bool
    payload: bytes  # the Opus frame
    extension: bytes = b""  # the (decrypted) header extension body, if any

    @property
    def is_silence(self) -> bool:
        return self.payload == OPUS_SILENCE


def peek_ssrc(datagram: bytes) -> int:
    if len(datagram) < 12 or datagram[0] >> 6 != 2:
        raise RtpError("not an RTP packet")
    return _HEADER.unpack_from(datagram)[4]


def is_rtcp(datagram: bytes) -> bool:
    """RTCP packet types 200-204 sit where RTP has marker + payload type."""
    return len(datagram) >= 2 and 200 <= datagram[1] <= 204


def audio_level_extension(level: int) -> bytes:
    """A one-element RFC 8285 extension body (one 32-bit word): the RFC 6464 level."""
    return bytes([(AUDIO_LEVEL_EXTENSION_ID << 4) | 0, max(0, min(127, level)), 0, 0])


def encrypt_rtpsize(
    key: bytes,
    *,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    nonce: int,
    extension: bytes = b"",
    payload_type: int = OPUS_PAYLOAD_TYPE,
) -> bytes:
    """Build an encrypted ``aead_xchacha20_poly1305_rtpsize`` packet.

    ``extension`` (a multiple of 4 bytes) becomes a one-byte-header extension
    whose 4-byte header is authenticated but not encrypted, like Discord's.
    """
    if len(extension) % 4:
        raise ValueError("the extension body must be a whole number of 32-bit words")
    first = 0x80 | (0x10 if extension else 0)
    header = _HEADER.pack(
        first, payload_type & 0x7F, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )
    if extension:
        header += ONE_BYTE_EXTENSION_PROFILE + struct.pack(">H", len(extension) // 4)
    counter = struct.pack(">I", nonce & 0xFFFFFFFF)
    sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(
        extension + payload, header, counter + bytes(20), key
    )
    return header + sealed + counter


def decrypt_rtpsize(key: bytes, datagram: bytes) -> RtpPacket:
    """Parse and decrypt an ``aead_xchacha20_poly1305_rtpsize`` packet."""
    if len(datagram) < 12 + 16 + 4:
        raise RtpError(f"packet too short ({len(datagram)} bytes)")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(datagram)
    if first >> 6 != 2:
        raise RtpError(f"RTP version {first >> 6}")
    fixed = 12 + 4 * (first & 0x0F)
    extended = bool(first & 0x10)
    aad_size = fixed + (4 if extended else 0)
    if len(datagram) < aad_size + 16 + 4:
        raise RtpError("packet too short for its header")
    words = struct.unpack_from(">H", datagram, fixed + 2)[0] if extended else 0
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            datagram[aad_size:-4], datagram[:aad_size], datagram[-4:] + bytes(20), key
        )
    except Exception as exc:  # nacl.exceptions.CryptoError
        raise RtpError(f"decryption failed: {exc}") from exc
    if len(plain) < 4 * words:
        raise RtpError("extension longer than the payload")
    extension, payload = plain[: 4 * words], plain[4 * words :]
    if first & 0x20 and payload:  # padding: the last byte counts the padding bytes
        payload = payload[: -payload[-1]]
    return RtpPacket(
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        payload=payload,
        extension=extension,
    )


# -- IP discovery ----------------------------------------------------------------
# 74 bytes: type (2), length 70 (2), ssrc (4), address (64, NUL-padded ASCII), port (2).


def is_ip_discovery_request(datagram: bytes) -> bool:
    return (
        len(datagram) == IP_DISCOVERY_SIZE
        and struct.unpack_from(">H", datagram)[0] == IP_DISCOVERY_REQUEST
    )


def parse_ip_discovery(datagram: bytes) -> tuple[int, int, str, int]:
    """-> (type, ssrc, address, port)."""
    if len(datagram) != IP_DISCOVERY_SIZE:
        raise RtpError("not an IP discovery packet")
    kind, length, ssrc = struct.unpack_from(">HHI", datagram)
    if length != 70:
        raise RtpError(f"IP discovery length {length}")
    address = datagram[8:72].split(b"\0", 1)[0].decode("ascii")
    port = struct.unpack_from(">H", datagram, 72)[0]
    return kind, ssrc, address, port


def ip_discovery_packet(kind: int, ssrc: int, address: str = "", port: int = 0) -> bytes:
    packet = bytearray(IP_DISCOVERY_SIZE)
    struct.pack_into(">HHI", packet, 0, kind, 70, ssrc)
    encoded = address.encode("ascii")[:63]
    packet[8 : 8 + len(encoded)] = encoded
    struct.pack_into(">H", packet, 72, port)
    return bytes(packet)
