"""The HTTP layer of ``dcgan serve``: uvicorn's HTTP/1.1 protocol with the guards it lacks.

Why a module of its own: these are fixes to how uvicorn (0.3x+, h11) treats connections, not to
what the service answers, and the app (``serve.py``) never sees them. Left to itself, uvicorn

- answers what h11 refuses (a malformed or oversized head) with a plain-text 400;
- has no deadline for a request's headers: a client sending a byte a second holds its connection;
- answers over its connection cap with a plain-text 503;
- after answering a request whose body it has not read, either reads the rest of that body,
  however large, to keep the connection (a 10 GB upload refused at once is still received), or,
  when the answer says ``Connection: close``, closes at once: the kernel then resets the
  connection, and a client still sending its body gets ``ECONNRESET`` and often never reads the
  answer.

``GuardedH11Protocol`` answers all of these with JSON ``{"error": ...}``, and ends a connection
whose request body is unread with a *lingering close*: the answer carries ``Connection: close``,
the write side is shut (the client reads the answer, then end of stream), and what the client still
sends is read and dropped, never kept, until it closes or ``Limits.linger`` seconds pass.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from typing import TYPE_CHECKING

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from .serve import Limits

MAX_HEAD_BYTES = 16 * 1024  # request line + headers; more is a 431 (h11's own default)
JSON_TYPE = "application/json"
log = logging.getLogger("uvicorn.error")  # uvicorn's error log: same format, same --log-level


def guarded_protocol(limits: Limits) -> type:
    """``GuardedH11Protocol`` bound to ``limits`` (uvicorn builds one protocol per connection),
    with its own set of lingering connections."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "lingerers": set()})


def json_error_bytes(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for answers given outside h11's
    request cycle (no request parsed yet, or one h11 refused)."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: {JSON_TYPE}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


async def send_json_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def head_size(scope: dict) -> int:
    """Bytes of a parsed request line and headers, near enough (h11 checks only a head that
    arrives in pieces: one that comes in a single read is parsed whatever its size)."""
    return (len(scope["raw_path"]) + len(scope["query_string"]) + 16
            + sum(len(name) + len(value) + 4 for name, value in scope["headers"]))


class LingeringTransport:
    """The connection's transport as uvicorn's protocol and request cycles see it, except that
    ``close`` goes through ``GuardedH11Protocol.close_connection`` (which may linger) and that,
    while the connection lingers, it is closing and takes no more writes."""

    def __init__(self, transport: asyncio.Transport, protocol: "GuardedH11Protocol"):
        self._transport, self._protocol = transport, protocol

    def close(self) -> None:
        self._protocol.close_connection()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def write(self, data) -> None:
        if not self._protocol.lingering:
            self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with what it lacks (see the module docstring): a deadline for
    each request's headers, JSON errors for the requests it refuses itself, a JSON 503 above the
    connection cap, and a lingering close for a connection whose request body is unread."""

    limits: Limits  # set by guarded_protocol
    lingerers: set  # the connections now lingering, all of them (guarded_protocol gives each server one)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # checked in _app instead, so that the 503 is JSON too
        self.inner_app, self.app = self.app, self._app
        self.header_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.raw_transport: asyncio.Transport | None = None

    async def _app(self, scope, receive, send) -> None:
        async def send_closing(message) -> None:
            """An answer given while the request's body is still coming closes the connection
            (with a lingering close): the rest of the body is not read into a request cycle."""
            if message["type"] == "http.response.start" and self.conn.their_state is h11.SEND_BODY:
                headers = [(name, value) for name, value in message.get("headers", [])
                           if name.lower() != b"connection"]
                message = {**message, "headers": headers + [(b"connection", b"close")]}
            await send(message)

        # This connection and this task are counted already; lingering ones are not: they are
        # closing, hold no buffers, and are bounded by the cap themselves (close_connection).
        cap, open_now = self.limits.max_connections, len(self.connections) - len(self.lingerers)
        if open_now > cap or len(self.tasks) > cap:
            log.warning("%d connections open (limit %d): answered 503", open_now, cap)
            await send_json_error(send_closing, 503, f"server busy: over {cap} connections; retry later")
        elif head_size(scope) > MAX_HEAD_BYTES:
            await send_json_error(send_closing, 431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
        else:
            await self.inner_app(scope, receive, send_closing)

    # -- the connection, and its lingering close --------------------------------------------------

    def connection_made(self, transport) -> None:
        self.raw_transport = transport
        super().connection_made(LingeringTransport(transport, self))
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # dropped: nothing a refused client sends is kept, or parsed
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc) -> None:
        self._stop_header_timer()
        self.lingerers.discard(self)
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        super().connection_lost(exc)

    def close_connection(self) -> None:
        """Close the connection: at once when the client has sent all it meant to (or is gone),
        or when ``limits.max_connections`` connections linger already; otherwise linger, so that
        a client still sending reads the answer rather than a reset: shut the write side once the
        answer is out, drop whatever arrives, and close when the client does or after
        ``limits.linger`` seconds, whichever is first."""
        raw = self.raw_transport
        if self.lingering or raw.is_closing():
            return
        if not self._client_still_sending() or len(self.lingerers) >= self.limits.max_connections:
            raw.close()
            return
        self.lingering = True
        self.lingerers.add(self)
        self._stop_header_timer()
        self._unset_keepalive_if_required()
        if self.cycle is not None:
            self.cycle.body = bytearray()  # body bytes that came before the answer, unread
        if raw.can_write_eof():
            raw.write_eof()  # after what is buffered: the client reads the answer, then end of stream
        raw.resume_reading()  # flow control may have paused it; the kernel buffer must drain
        self.linger_timer = self.loop.call_later(self.limits.linger, self._linger_over)

    def _client_still_sending(self) -> bool:
        """Whether the client may still be sending: a body not received to its end, a request
        h11 refused part-way, or bytes of a next request not yet parsed."""
        buffered, client_closed = self.conn.trailing_data
        if client_closed:
            return False
        return self.conn.their_state in (h11.SEND_BODY, h11.ERROR) or bool(buffered)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: a connection with no request in progress, lingering or
        not, closes now (uvicorn waits for every connection to close before it exits)."""
        if self.lingering or self.cycle is None or self.cycle.response_complete:
            self.raw_transport.close()
        else:
            super().shutdown()

    def _linger_over(self) -> None:
        self.linger_timer = None
        self.raw_transport.abort()  # a client that has not read its answer by now drops it

    # -- the header deadline: armed while a request's headers are awaited -----------------------

    def _watch_headers(self) -> None:
        """Arm the timer while a new connection, or one whose client sent bytes since its last
        request, awaits a request's headers; stop it once they are complete. (An idle keep-alive
        connection is left to uvicorn's keep-alive timeout, which any byte received cancels.)"""
        awaiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if awaiting:
            if self.header_timer is None:
                self.header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)
        else:
            self._stop_header_timer()

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            log.info("%s - request headers not complete within %g s: closed", self._peer(), self.limits.header_timeout)
            self._refuse(408, f"request headers not received within {self.limits.header_timeout:g} s")

    # -- requests h11 refuses ------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn's plain-text 400, as JSON; 431 when the head outgrew h11's buffer."""
        buffered = len(self.conn.trailing_data[0])
        if buffered > MAX_HEAD_BYTES:
            self._refuse(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
        else:
            self._refuse(400, "invalid HTTP request: malformed request line or headers, a missing Host header, "
                              "or a bad or conflicting Content-Length")

    def _refuse(self, status: int, message: str) -> None:
        self.transport.write(json_error_bytes(status, message))
        self.transport.close()

    def _peer(self) -> str:
        return "%s:%d" % self.client if self.client else "client"
