"""The little of HTTP/1.1 the router speaks: request and response heads, bodies by Content-Length or chunks.

Hand-written rather than a framework because the router's whole hop has a budget of a few tenths of a
millisecond: these functions touch each header once and allocate nothing large.
"""

from __future__ import annotations

import json
from http import HTTPStatus

HEAD_END = b"\r\n\r\n"
#: Headers that describe one connection, not the request: the router sets its own on each side.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"content-length", b"host", b"expect",
})
#: ... and the caller's credential never reaches the model.
NOT_FORWARDED = HOP_BY_HOP | {b"authorization"}
_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus}


class BadMessage(ValueError):
    """A request or response the router cannot read."""


class RequestHead:
    """A request's first line and headers (names lower-cased; the last of a repeated header wins)."""

    __slots__ = ("method", "target", "path", "query", "headers", "forwarded", "keep_alive")

    def __init__(self, block: bytes):
        lines = block.split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ")
        except ValueError:
            raise BadMessage(f"a request line needs a method, a target and a version, not {lines[0][:80]!r}") from None
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition(b"?")
        headers = {}
        forwarded = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise BadMessage(f"a header line needs a colon: {line[:80]!r}")
            name = name.strip().lower()
            headers[name] = value = value.strip()
            if name not in NOT_FORWARDED:
                forwarded.append(line)
        self.headers = headers
        # what goes on to the model: the caller's own headers, one line each, ready to be joined
        self.forwarded = b"\r\n".join(forwarded)
        connection = headers.get(b"connection", b"").lower()
        self.keep_alive = connection != b"close" if version == b"HTTP/1.1" else connection == b"keep-alive"

    def content_length(self) -> int:
        if b"transfer-encoding" in self.headers:
            raise BadMessage("send the body with a Content-Length: the endpoint does not take chunked requests")
        try:
            return int(self.headers.get(b"content-length", b"0"))
        except ValueError:
            raise BadMessage(f"Content-Length is not a number: {self.headers[b'content-length'][:40]!r}") from None


def response(status: int, headers: list[bytes], body: bytes, keep_alive: bool) -> bytes:
    """A whole response: ``headers`` are ``b"name: value"`` lines."""
    return b"".join((
        _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode(),
        *[line + b"\r\n" for line in headers],
        b"content-length: %d\r\n" % len(body),
        b"" if keep_alive else b"connection: close\r\n",
        b"\r\n",
        body,
    ))


def json_response(status: int, payload, keep_alive: bool, headers: tuple[bytes, ...] = ()) -> bytes:
    return response(status, [b"content-type: application/json", *headers], json.dumps(payload).encode(), keep_alive)


def message_response(status: int, message: str, keep_alive: bool, headers: tuple[bytes, ...] = ()) -> bytes:
    """An error answer as Azure's inference server words them: ``{"message": ...}``."""
    return json_response(status, {"message": message}, keep_alive, headers)


class ResponseHead:
    """An upstream response's status, the headers to pass on, and how its body ends."""

    __slots__ = ("status", "passed_on", "length", "chunked", "keep_alive")

    def __init__(self, block: bytes, method: bytes):
        lines = block.split(b"\r\n")
        try:
            self.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise BadMessage(f"not an HTTP status line: {lines[0][:80]!r}") from None
        self.passed_on = []
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            headers[name] = value.strip()
            if name not in HOP_BY_HOP:
                self.passed_on.append(line)
        self.chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if method == b"HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        elif self.chunked:
            self.length = None
        else:
            length = headers.get(b"content-length")
            self.length = int(length) if length is not None else -1  # -1: the body ends when the connection does
        self.keep_alive = self.length != -1 and headers.get(b"connection", b"").lower() != b"close"


def dechunk(buffer: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """The body of a chunked message starting at ``start``, and where it ends; None while it is incomplete."""
    parts = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        except ValueError:
            raise BadMessage("a chunk size is not a hexadecimal number") from None
        if size == 0:
            trailer_end = buffer.find(HEAD_END, line_end)  # with no trailer, the size line's own CRLF starts it
            return (b"".join(parts), trailer_end + 4) if trailer_end >= 0 else None
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        parts.append(bytes(buffer[chunk_start:chunk_start + size]))
        position = chunk_start + size + 2
