"""The voice server's UDP socket on 127.0.0.1: one socket for every voice connection.

Datagrams are told apart like on Discord's media servers: 74-byte IP discovery
requests are answered with the sender's address; RTP is routed by SSRC;
RTCP and keep-alives (discord-ext-voice-recv sends an 8-byte counter every few
seconds) are counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]


class VoiceUdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None
        self.errors: list[str] = []  # socket-level errors (e.g. ICMP port unreachable)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # On loopback this is usually "connection refused": a bot socket that closed
        # while packets were still being sent to it. Not an error of the fake.
        log.debug("voice UDP error: %r", exc)
        self.errors.append(repr(exc))

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def open_udp(host: str, on_datagram: Callable[[bytes, Address], None]) -> VoiceUdpProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: VoiceUdpProtocol(on_datagram), local_addr=(host, 0)
    )
    return protocol
