"""A throwaway certificate authority for the loopback voice server's ``wss://``.

discord.py hard-codes ``wss://{endpoint}/?v=8`` for the voice WebSocket, so the
fake voice server must speak TLS with a certificate the bot trusts. The CA and
the server certificate (for ``127.0.0.1`` and ``localhost``) are made with
``trustme`` once per process, on first use, and never written to disk.

The bot trusts it through its own HTTP session: discord.py opens the voice
WebSocket with ``client.http.ws_connect``, i.e. the ``aiohttp.ClientSession``
built on the ``connector`` passed to ``discord.Client``::

    connector = aiohttp.TCPConnector(limit=0, ssl=client_ssl_context())
    bot = commands.Bot(..., connector=connector)  # inside a running event loop
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

_lock = threading.Lock()
_material: tuple[Any, Any] | None = None  # (trustme.CA, trustme.LeafCert)

HOSTS = ("127.0.0.1", "localhost")


def _ca_and_cert() -> tuple[Any, Any]:
    global _material
    with _lock:
        if _material is None:
            try:
                import trustme
            except ImportError as exc:  # a test-only dependency, not one of the core's
                raise RuntimeError(
                    "the fake Discord voice server needs 'trustme' for its TLS certificate: "
                    "pip install trustme (it is in requirements-test.txt)"
                ) from exc
            ca = trustme.CA(organization_name="Hark FakeDiscord test CA")
            _material = (ca, ca.issue_cert(*HOSTS))
        return _material


def server_ssl_context() -> ssl.SSLContext:
    """TLS for the voice WebSocket server (certificate for 127.0.0.1 and localhost)."""
    _, cert = _ca_and_cert()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def client_ssl_context() -> ssl.SSLContext:
    """A client context that trusts the test CA (and verifies host names as usual)."""
    ca, _ = _ca_and_cert()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def ca_pem() -> bytes:
    """The test CA certificate, PEM-encoded (e.g. for ``SSL_CERT_FILE`` in a subprocess)."""
    ca, _ = _ca_and_cert()
    return ca.cert_pem.bytes()
