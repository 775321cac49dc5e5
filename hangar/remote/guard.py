"""waitress with limits per connection: what a slow or hostile client can hold, and for how long.

Stock waitress keeps a half-sent request open for ``channel_timeout`` however slowly its
bytes trickle in, buffers a whole request body before the application sees a byte of it,
and lets a task thread wait forever for a client that stopped reading its answer. Against
a real server (measured at ca89ead) 200 idle half-sent requests locked every client out and
eight clients that never read blocked every worker. Here:

* a request's head must arrive within :data:`HEADER_TIMEOUT` seconds of its first byte
  (:data:`HEADER_TIMEOUT_UNDER_PRESSURE` once three quarters of :data:`CONNECTION_LIMIT`
  connections are open), and a request that is not an authenticated push must arrive
  whole within :data:`REQUEST_TIMEOUT`;
* push requests (upload, git receive-pack) are checked for credentials as soon as their
  head is parsed: a wrong or missing password is answered ``401`` before any body byte
  is buffered; have/download bodies larger than their limit are refused from the head;
* an answer that makes no progress for :data:`WRITE_TIMEOUT` seconds (the client stopped
  reading) closes the connection, which frees the task thread blocked on it;
* a connection holds at most :data:`BUFFER` bytes of request or answer in memory
  (more goes to a temporary file).

The checks run in the server's main loop every :data:`CHECK_INTERVAL` seconds.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import BadRequest, Error, RequestEntityTooLarge

#: seconds a client has to send a request's head (request line and headers)
HEADER_TIMEOUT = 10.0
#: the same once three quarters of the connection limit are in use
HEADER_TIMEOUT_UNDER_PRESSURE = 1.0
#: seconds a client has to send a whole request that is not an authenticated push
REQUEST_TIMEOUT = 60.0
#: seconds without a byte moving, either way, before a connection is closed
IDLE_TIMEOUT = 30
#: seconds an answer may make no progress (the client does not read) before the connection closes
WRITE_TIMEOUT = 30.0
#: most connections open at once; more wait in the listen backlog
CONNECTION_LIMIT = 1000
#: bytes of one connection's request or answer held in memory (the rest spills to a file)
BUFFER = 1 << 20
#: bytes of answer a task thread may queue before it waits for the client to read
OUTBUF_HIGH_WATERMARK = 16 << 20
#: worker threads that run requests
THREADS = 16
#: how often the limits are checked
CHECK_INTERVAL = 1
#: most connections accepted in one turn of the main loop
ACCEPT_BATCH = 64


class Unauthorized(Error):
    """``401`` with the challenge git and libgit2 need before they send credentials."""

    code = 401
    reason = "Unauthorized"

    def to_response(self, ident=None):  # noqa: ANN001, ANN201 - waitress' signature
        status, headers, body = super().to_response(ident)
        return status, [*headers, ("WWW-Authenticate", 'Basic realm="hangar"')], body


class Screen:
    """What the application says about a request from its head alone (see :func:`make_server`).

    ``needs_push_auth(path, query)``: whether the request pushes; ``authorized(header)``:
    whether the ``Authorization`` header allows pushing; ``body_limit(path)``: most body
    bytes the endpoint takes without credentials, or None for no limit below the global one;
    ``chunked_ok(path)``: whether a body of unannounced length (chunked) is accepted there
    (git sends fetch negotiations over 1 MiB chunked; such a body is bounded by the global
    limit and :data:`REQUEST_TIMEOUT` only).
    """

    def __init__(self, needs_push_auth: Callable[[str, str], bool], authorized: Callable[[str], bool],
                 body_limit: Callable[[str], Optional[int]], chunked_ok: Callable[[str], bool]) -> None:
        self.needs_push_auth = needs_push_auth
        self.authorized = authorized
        self.body_limit = body_limit
        self.chunked_ok = chunked_ok


def _parser_class(screen: Screen) -> type:
    class Parser(HTTPRequestParser):
        trusted = False  # an authenticated push: exempt from REQUEST_TIMEOUT

        def received(self, data: bytes) -> int:
            finished = self.headers_finished
            n = super().received(data)
            if self.headers_finished and not finished and self.error is None and not self.empty:
                self._screen()
            return n

        def _refuse(self, error: Error) -> None:
            self.error = error
            self.completed = True
            self.expect_continue = False
            # the body is never read: its buffer (a temporary file beyond 512 KiB) is closed now,
            # not left to the garbage collector (a ResourceWarning at shutdown)
            self.close()

        def _screen(self) -> None:
            path, query = self.path or "", self.query or ""
            if "\x00" in path or "\x00" in query:
                return self._refuse(BadRequest("a NUL byte in the request path"))
            if screen.needs_push_auth(path, query):
                if not screen.authorized(self.headers.get("AUTHORIZATION", "")):
                    return self._refuse(Unauthorized("push requires valid credentials"))
                self.trusted = True
                return None
            limit = screen.body_limit(path)
            if self.chunked and not screen.chunked_ok(path):
                return self._refuse(RequestEntityTooLarge(f"{path} takes a body with a Content-Length only"))
            if limit is not None and self.content_length > limit:
                return self._refuse(RequestEntityTooLarge(f"{path} takes at most {limit} body bytes"))
            return None

    return Parser


class _Channel(HTTPChannel):
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        return super().received(data)

    def handle_close(self) -> None:
        # a request whose body never finished holds its buffer (a temporary file beyond waitress's
        # inbuf_overflow, 512 KiB): waitress leaves it to the garbage collector, a ResourceWarning
        # per abandoned upload; the body of a request a task runs is the task's to close
        request = self.request
        if request is not None and not request.completed:
            request.close()
        super().handle_close()


class GuardedServer(TcpWSGIServer):
    """A waitress TCP server whose main loop enforces the limits of this module."""

    stopping = False

    def run(self) -> None:
        """Serve until :meth:`request_stop`; then stop the task threads (connections still open
        are :meth:`close`'s to close).

        A stop is a flag the loop checks between turns (each at most ``asyncore_loop_timeout``,
        1 s): a ``SystemExit`` raised by a signal handler could land inside ``handle_accept``
        between ``accept()`` and the new connection's registration and leak that socket.
        """
        try:
            while not self.stopping:
                self.asyncore.loop(timeout=self.adj.asyncore_loop_timeout, map=self._map,
                                   use_poll=self.adj.asyncore_use_poll, count=1)
        finally:
            self.task_dispatcher.shutdown()

    def request_stop(self) -> None:
        """Make :meth:`run` return after the current loop turn (safe in a signal handler)."""
        self.stopping = True

    def handle_accept(self) -> None:
        # stock waitress accepts one connection per loop turn, and a turn costs a call per
        # open connection: after a burst of 900 connections a new client waited 1.3 s in
        # the listen backlog; accepting up to ACCEPT_BATCH per turn drains it in 1/64 the turns
        for _ in range(ACCEPT_BATCH):
            before = len(self._map)
            if before >= CONNECTION_LIMIT:
                return
            super().handle_accept()
            if len(self._map) == before:  # nothing was waiting
                return

    def close(self) -> None:
        """Stop listening and close every open connection.

        waitress closes only the listening socket: connections still open at shutdown (a client's
        kept-alive one, or one whose peer already hung up) were left to the interpreter's exit,
        one ``ResourceWarning: unclosed socket`` each. ``handle_close`` (not ``close``): it also
        closes a half-received request's body and the answer buffers, which spill to temporary
        files beyond :data:`BUFFER` (``close`` left them open: a ``ResourceWarning`` at every stop
        during an upload).
        """
        super().close()
        for channel in list(self._map.values()):
            # request bodies still held (one arriving, or queued for a task that will not run
            # now): their buffers are temporary files beyond 512 KiB, a ResourceWarning each
            for request in (getattr(channel, "request", None), *getattr(channel, "requests", ())):
                if request is not None:
                    request.close()
            if isinstance(channel, HTTPChannel):
                channel.handle_close()  # also its answer buffers (files, for large answers)
            else:  # waitress's trigger (its handle_close is close)
                channel.close()

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle channels without a running request
        pressure = len(self.active_channels) >= CONNECTION_LIMIT * 3 // 4
        head_limit = HEADER_TIMEOUT_UNDER_PRESSURE if pressure else HEADER_TIMEOUT
        for channel in list(self.active_channels.values()):
            req = channel.request
            stalled_answer = channel.total_outbufs_len and now - channel.last_activity > WRITE_TIMEOUT
            slow_head = (req is not None and not req.headers_finished
                         and now - channel.request_started > head_limit)
            slow_request = (req is not None and not req.completed and not getattr(req, "trusted", False)
                            and now - channel.request_started > REQUEST_TIMEOUT)
            if stalled_answer or slow_head or slow_request:
                # handle_close (not will_close): a socket whose peer stopped reading never
                # becomes writable, so a close left to handle_write would never happen; it
                # also wakes a task thread waiting for room in the answer buffer
                channel.handle_close()


def make_server(app: Callable, screen: Screen, ip: str, port: int, max_body: int) -> GuardedServer:
    """A :class:`GuardedServer` for WSGI ``app`` on ``ip:port`` (not started)."""
    adj = Adjustments(host=ip, port=port, threads=THREADS, ident="hangar", max_request_body_size=max_body,
                      inbuf_overflow=BUFFER, outbuf_overflow=BUFFER, outbuf_high_watermark=OUTBUF_HIGH_WATERMARK,
                      recv_bytes=1 << 18, channel_timeout=IDLE_TIMEOUT, cleanup_interval=CHECK_INTERVAL,
                      connection_limit=CONNECTION_LIMIT, asyncore_use_poll=True, max_request_header_size=64 << 10)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    channel = type("Channel", (_Channel,), {"parser_class": _parser_class(screen)})
    server = GuardedServer(app, {}, True, None, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])
    server.channel_class = channel
    return server
