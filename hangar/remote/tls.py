"""TLS in front of the hangar server: decrypt on the public port, relay to the plain one.

waitress (the WSGI server) speaks plain HTTP only. With ``hangar server --tls-cert C
--tls-key K`` the WSGI server listens on a loopback-only ephemeral port and a
:class:`TLSFrontend` listens on the public address: it completes the TLS handshake with
each client and relays the decrypted bytes both ways (asyncio's TLS transport, on one
background thread). Everything else, including push credentials, then travels encrypted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Optional

from hangar.errors import ServerConfigError

log = logging.getLogger("hangar.server")

_CHUNK = 1 << 18
#: seconds a relay waits for its peer to take bytes before dropping the connection: a client
#: that stops reading would otherwise hold its relay, and the server behind it, for good
WRITE_TIMEOUT = 30.0
#: seconds a client has to complete the TLS handshake
HANDSHAKE_TIMEOUT = 10.0


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2+) from PEM files; ``ValueError`` naming a bad one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ServerConfigError(f"cannot load the TLS certificate {certfile!r} / key {keyfile!r}: {exc}") from exc
    return ctx


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
    except TimeoutError:  # the peer stopped reading: drop it, which ends the other pump too
        writer.transport.abort()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except (ConnectionError, ssl.SSLError, OSError, RuntimeError):
                writer.close()
        else:  # a TLS stream: closing sends close_notify
            writer.close()


class TLSFrontend:
    """Accept TLS on ``(ip, port)`` and relay each connection to ``127.0.0.1:target_port``.

    ``start()`` binds and returns once listening (``port=0`` picks a free port, see
    :attr:`port`); ``close()`` stops accepting and drops open relays.
    """

    def __init__(self, ip: str, port: int, target_port: int, context: ssl.SSLContext) -> None:
        self.ip, self.port, self.target_port = ip, port, target_port
        self._context = context
        self._loop = asyncio.new_event_loop()
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="hangar-tls", daemon=True)
        #: the streams of open relays, aborted by close()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        writers = [client_w]
        self._writers.add(client_w)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            writers.append(up_w)
            self._writers.add(up_w)
            await asyncio.gather(_pump(client_r, up_w), _pump(up_r, client_w))
        except OSError as exc:
            log.warning("TLS frontend: the server on port %s refused a relay: %s", self.target_port, exc)
        finally:
            # a pump that ended with write_eof leaves its writer half open: close both here, also
            # when close() cancels the relay (else each is an "unclosed StreamWriter" at exit)
            for w in writers:
                w.close()
                self._writers.discard(w)

    def start(self) -> None:
        async def listen() -> asyncio.base_events.Server:
            return await asyncio.start_server(self._relay, self.ip, self.port, ssl=self._context,
                                              ssl_handshake_timeout=HANDSHAKE_TIMEOUT, limit=_CHUNK)

        self._server = self._loop.run_until_complete(listen())
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread.start()

    def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None

        async def shut() -> None:
            server.close()
            open_streams = list(self._writers)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # let the relays run their finally blocks, then drop their connections at once (a TLS
            # close waits for the peer's close_notify): none is left to the loop's close
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in open_streams:
                w.transport.abort()
            await asyncio.sleep(0)  # connection_lost callbacks run on the next turn

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
