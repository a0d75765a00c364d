"""The router's side towards the hosts: kept-alive connections per instance, and the least busy instance per deployment.

A connection is reused only after a complete answer: one that timed out, broke, or said ``Connection: close`` is
closed, so a late answer can never be read as the next request's.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from localml.serving.http11 import HEAD_END, BadMessage, ResponseHead, dechunk

log = logging.getLogger("localml.serving.router")

#: How long an instance that refused a connection is left out before it is tried again.
DOWN_SECONDS = 1.0
#: Azure lets 2 x max_concurrent_requests_per_instance x instance_count requests be pending (in flight or
#: waiting) per deployment; the next one is answered 429 at once.
PENDING_PER_SLOT = 2


class UpstreamGone(Exception):
    """The instance refused, closed or reset the connection; ``answered_partly`` if some of an answer had come."""

    def __init__(self, answered_partly: bool):
        super().__init__("closed the connection mid-answer" if answered_partly else "refused or closed the connection")
        self.answered_partly = answered_partly


class UpstreamTimeout(Exception):
    """No complete answer before the request's deadline."""


class Saturated(Exception):
    """Every instance of the deployment is busy and stayed busy (or too many requests are pending already)."""


class NoInstance(Exception):
    """The deployment has no instance that accepts connections."""


class UpstreamResponse:
    __slots__ = ("status", "passed_on", "body")

    def __init__(self, head: ResponseHead, body: bytes):
        self.status = head.status
        self.passed_on = head.passed_on
        self.body = body


class UpstreamConnection(asyncio.Protocol):
    """One kept-alive connection to a host, carrying one request at a time."""

    def __init__(self, on_lost):
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self._buffer = bytearray()
        self._method = b""
        self._head: ResponseHead | None = None
        self._body_start = 0
        self._answer: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport):
        self.transport = transport

    def send(self, request: bytes, method: bytes, deadline: float) -> asyncio.Future:
        """Write ``request``; the future gives its ``UpstreamResponse`` or raises UpstreamGone/UpstreamTimeout."""
        loop = asyncio.get_running_loop()
        self.reusable = False
        self._method = method
        self._head = None
        self._answer = loop.create_future()
        self._timer = loop.call_at(deadline, self._time_out)
        self.transport.write(request)
        return self._answer

    def data_received(self, data):
        if self._answer is None or self._answer.done():
            self.transport.abort()  # bytes nobody asked for: this connection can no longer be trusted
            return
        self._buffer += data
        try:
            answer = self._complete_answer()
        except (BadMessage, ValueError) as error:
            log.error("an instance answered something that is not HTTP (%s): closing the connection", error)
            self._fail(UpstreamGone(answered_partly=True))
            return
        if answer is not None:
            self._timer.cancel()
            self.reusable = self._head.keep_alive and not self._buffer
            if not self.reusable:
                self.transport.close()
            self._answer.set_result(answer)

    def _complete_answer(self) -> UpstreamResponse | None:
        if self._head is None:
            end = self._buffer.find(HEAD_END)
            if end < 0:
                return None
            self._head = ResponseHead(bytes(self._buffer[:end]), self._method)
            self._body_start = end + 4
        head = self._head
        if head.chunked:
            decoded = dechunk(self._buffer, self._body_start)
            if decoded is None:
                return None
            body, end = decoded
        elif head.length >= 0:
            end = self._body_start + head.length
            if len(self._buffer) < end:
                return None
            body = bytes(self._buffer[self._body_start:end])
        else:
            return None  # the body ends with the connection: connection_lost completes it
        del self._buffer[:end]
        return UpstreamResponse(head, body)

    def connection_lost(self, exc):
        self._on_lost(self)
        if self._answer is None or self._answer.done():
            return
        self._timer.cancel()
        if self._head is not None and self._head.length == -1:
            self._answer.set_result(UpstreamResponse(self._head, bytes(self._buffer[self._body_start:])))
        else:
            self._answer.set_exception(UpstreamGone(answered_partly=bool(self._buffer)))

    def _time_out(self):
        self._fail(UpstreamTimeout())

    def _fail(self, error: Exception):
        self._timer.cancel()
        if not self._answer.done():
            self._answer.set_exception(error)
        self.transport.abort()


class Instance:
    """One serving process: its idle connections and how many requests it has in flight."""

    def __init__(self, address: str):
        self.address = address
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.host_header = b"host: " + address.encode() + b"\r\n"
        self.in_flight = 0
        self.down_until = 0.0
        self._idle: list[UpstreamConnection] = []
        self._open: set[UpstreamConnection] = set()  # idle or carrying a request

    async def exchange(self, first_line: bytes, rest: bytes, method: bytes, deadline: float) -> UpstreamResponse:
        """Send one request (its first line, then its headers and body) and wait for the answer until ``deadline``."""
        request = first_line + self.host_header + rest
        connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._keep(connection, await connection.send(request, method, deadline))
            except UpstreamGone as gone:
                if gone.answered_partly:
                    raise
                # the host closed this idle connection just as it was reused: a fresh one settles it
        connection = await self._connect()
        return self._keep(connection, await connection.send(request, method, deadline))

    def mark_down(self) -> None:
        """Leave this instance out for a moment: it refuses connections."""
        self.down_until = asyncio.get_running_loop().time() + DOWN_SECONDS

    def _keep(self, connection: UpstreamConnection, response: UpstreamResponse) -> UpstreamResponse:
        if connection.reusable:
            self._idle.append(connection)
        return response

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(lambda: UpstreamConnection(self._forget), self.host, self.port)
        except OSError:
            raise UpstreamGone(answered_partly=False) from None
        self._open.add(connection)
        return connection

    def _forget(self, connection: UpstreamConnection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        """Close every connection to this instance; a request still on one is answered as if the instance died."""
        for connection in list(self._open):
            connection.transport.abort()


class Balancer:
    """A deployment's instances: each request goes to the least busy one, within its concurrency limit."""

    def __init__(self):
        self.instances: list[Instance] = []
        self.limit = 1
        self.pending = 0  # in flight or waiting for a free instance
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self, deadline: float) -> Instance:
        """The least busy live instance, once one has room; Saturated, NoInstance otherwise."""
        loop = asyncio.get_running_loop()
        if self.pending >= PENDING_PER_SLOT * self.limit * max(1, len(self.instances)):
            raise Saturated()
        self.pending += 1
        try:
            while True:
                instance = self._least_busy(loop.time())
                if instance.in_flight < self.limit:
                    instance.in_flight += 1
                    return instance
                await self._wait(loop, deadline)
        except BaseException:
            self.pending -= 1
            raise

    def release(self, instance: Instance) -> None:
        instance.in_flight -= 1
        self.pending -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _least_busy(self, now: float) -> Instance:
        live = [instance for instance in self.instances if instance.down_until <= now]
        if not live:
            raise NoInstance()
        return min(live, key=_in_flight)

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()


def _in_flight(instance: Instance) -> int:
    return instance.in_flight


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(Saturated())
