"""A fault-injecting HTTP reverse proxy in front of an S3 server, for tests.

The fetch stage must survive what the real S3 does under load: throttling
(503 SlowDown), internal errors, dropped connections, bodies cut short and
responses that stall. A local moto server never does any of these, so this
proxy sits between the client and the server and does them on purpose, for
a chosen fraction of GET and HEAD requests, reproducibly from a seed, and
on chosen keys: the first request of each, or every request. It can also
add a fixed latency to every request, which turns a loopback server into
something with the round-trip cost of a remote one, so that concurrency can
be measured. It records every request's line and headers, so a test can
check what a client sent (no signature, no credentials).

Everything else is forwarded faithfully (method, path, query, headers
including Range, request and response bodies streamed), so the client sees
the real server's answers whenever no fault is injected.

Run it in-process as a context manager (``with FaultProxy(url, faults) as
proxy``) or as its own process::

    python -m tests.support.faultproxy --upstream http://127.0.0.1:5000 --latency 0.05
"""

from __future__ import annotations

import argparse
import http.client
import logging
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from workflow_scripts.logs import configure_logging

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
# Headers that describe one hop, not the message (RFC 9110 section 7.6.1);
# the proxy manages its own connections on each side.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message>"
    "<RequestId>faultproxy</RequestId></Error>"
)
FAULT_KINDS = ("slowdown", "internal_error", "reset", "truncate", "corrupt", "slow")
_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass(frozen=True)
class Request:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Faults:
    """What the proxy does to GET and HEAD requests.

    Each fraction is the probability that one such request gets that fault;
    they must add up to at most 1. ``latency`` (seconds) is added to every
    request of any method. ``truncate`` sends the full headers and part of
    the body; ``corrupt`` flips one byte of the body while keeping its
    length, the one fault only a checksum can catch. Both need a body: on
    a HEAD or an empty body they drop the connection instead. ``slow``
    answers nothing for ``slow_seconds`` and then hangs up: set longer than
    the client's read timeout, it is a request that times out.

    ``first_hits`` pairs a key fragment with a fault kind: the first GET or
    HEAD whose (decoded) path contains the fragment gets that fault, so a
    test can make sure that every kind of object meets one. ``broken`` key
    fragments get a 500 InternalError on every request, an object that
    never comes. Both come before the random draw, which they leave as it is.
    """

    slowdown: float = 0.0
    internal_error: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    corrupt: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 0.0
    latency: float = 0.0
    seed: int = 0
    first_hits: tuple[tuple[str, str], ...] = ()
    broken: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fractions = [getattr(self, name) for name in FAULT_KINDS]
        if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
            raise ValueError(f"fault fractions must be >= 0 and add up to <= 1: {self}")
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency}")
        unknown = [kind for _, kind in self.first_hits if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; choose from {FAULT_KINDS}")
        slow_wanted = self.slow > 0 or any(kind == "slow" for _, kind in self.first_hits)
        if slow_wanted and self.slow_seconds <= 0:
            raise ValueError("slow faults need slow_seconds > 0 (longer than the client's read timeout)")

    def choose(self, draw: float) -> str | None:
        """The fault for a uniform draw in [0, 1), or None to forward."""
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if draw < edge:
                return kind
        return None


class _Server(ThreadingHTTPServer):
    """The listening server; carries the proxy's state for its handlers."""

    # A client opening dozens of connections at once must not see refusals.
    request_queue_size = 256
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        """A client that hung up first (after a timeout, say) is expected, not worth a traceback."""
        log.debug("connection from %s ended with an error", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Forwards one request upstream, or answers it with a fault."""

    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            # S3 clients send a Content-Length; nothing here needs more.
            self.send_error(501, "request bodies without Content-Length are not supported")
            return
        proxy = self.server.proxy
        fault, where = proxy.next_fault(self.command, self.path, self.headers.items())
        if proxy.faults.latency:
            time.sleep(proxy.faults.latency)
        if fault in _ERRORS:
            self._send_error_xml(*_ERRORS[fault])
        elif fault == "reset":
            self._reset()
        elif fault == "slow":
            self._stall(proxy.faults.slow_seconds)
        else:
            self._forward(fault, where)

    def _send_error_xml(self, status: int, code: str, message: str) -> None:
        body = _ERROR_XML.format(code=code, message=message).encode()
        self._discard_request_body()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset and no response at all."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _stall(self, seconds: float) -> None:
        """Answer nothing for ``seconds``, then hang up without a response."""
        self._discard_request_body()
        time.sleep(seconds)
        self.close_connection = True

    def _forward(self, fault: str | None, where: float) -> None:
        upstream = self.server.proxy.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                conn.request(self.command, self.path, body=self._request_body(), headers=headers)
                response = conn.getresponse()
            except OSError as error:
                self.send_error(502, f"upstream {upstream.netloc} unreachable: {error}")
                return
            self._relay(response, fault, where)
        finally:
            conn.close()

    def _request_body(self) -> _Limited | None:
        """The request body as a stream for http.client, or None."""
        length = int(self.headers.get("Content-Length") or 0)
        return _Limited(self.rfile, length) if length else None

    def _discard_request_body(self) -> None:
        """Read an unused request body so the connection stays usable."""
        body = self._request_body()
        while body is not None and body.read(_CHUNK):
            pass

    def _relay(self, response: http.client.HTTPResponse, fault: str | None, where: float) -> None:
        """Send the upstream response; ``where`` (0..1) places a cut or a flipped byte."""
        length = response.getheader("Content-Length")
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        if fault in ("truncate", "corrupt") and not (has_body and length and int(length) > 0):
            # Nothing to cut or flip: a dropped connection is the nearest fault.
            self._reset()
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if has_body and length is None:
            # Unknown length: the end of the body is the end of the connection.
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if not has_body:
            return
        if fault == "truncate":
            self._send_truncated(response, int(int(length) * where))
        elif fault == "corrupt":
            self._send_corrupted(response, where)
        else:
            self._copy(response, None)

    def _copy(self, response: http.client.HTTPResponse, limit: int | None) -> None:
        """Stream the upstream body to the client, at most ``limit`` bytes."""
        remaining = limit
        while remaining is None or remaining > 0:
            chunk = response.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not chunk:
                return
            self.wfile.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)

    def _send_truncated(self, response: http.client.HTTPResponse, cut: int) -> None:
        """Full headers were sent; send only the first ``cut`` bytes, then hang up."""
        self._copy(response, cut)
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send_corrupted(self, response: http.client.HTTPResponse, where: float) -> None:
        """Send the body with one byte inverted, so only its length is right."""
        body = bytearray(response.read())
        body[int(len(body) * where)] ^= 0xFF
        self.wfile.write(body)


class _Limited:
    """A file-like view of the next ``length`` bytes of a stream."""

    def __init__(self, stream, length: int) -> None:
        self.stream = stream
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self.stream.read(size)
        self.remaining -= len(data)
        return data


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream``; a context manager.

    ``counts`` tallies requests by method and faults by kind, so a test can
    check how many GETs a run made and which faults it survived;
    ``faults_by_path`` the faults each path got; ``requests`` holds every
    request as it arrived (method, path, headers).
    """

    def __init__(self, upstream: str, faults: Faults = Faults(), host: str = "127.0.0.1", port: int = 0):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = parts
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self.faults_by_path: Counter[str] = Counter()
        self.requests: list[Request] = []
        self._first_hits_left = dict(faults.first_hits)
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def next_fault(self, method: str, path: str, headers: Sequence[tuple[str, str]] = ()) -> tuple[str | None, float]:
        """Record and count a request, and decide its fault, and where in the body it strikes.

        Both numbers are drawn under one lock, so the sequence of random
        outcomes depends on the seed alone, however the requests interleave.
        """
        with self._lock:
            self.requests.append(Request(method, path, tuple(headers)))
            self.counts["requests"] += 1
            self.counts[method] += 1
            if method not in ("GET", "HEAD"):
                return None, 0.0
            fault, where = self.faults.choose(self._rng.random()), self._rng.random()
            fault = self._chosen(unquote(path)) or fault
            if fault:
                self.counts[fault] += 1
                self.faults_by_path[path] += 1
            return fault, where

    def _chosen(self, path: str) -> str | None:
        """The fault ``broken`` or ``first_hits`` give this path, if any (under the lock)."""
        if any(fragment in path for fragment in self.faults.broken):
            return "internal_error"
        fragment = next((f for f in self._first_hits_left if f in path), None)
        return None if fragment is None else self._first_hits_left.pop(fragment)

    def serve(self) -> None:
        """Serve in the calling thread until interrupted (the command line)."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def start(self) -> FaultProxy:
        # A short poll interval keeps stop() quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; prints the endpoint URL on stdout once listening."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://host:port of the S3 server")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    numbers = [f for f in fields(Faults) if isinstance(f.default, (int, float))]
    for field in numbers:
        kind = int if field.name == "seed" else float
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=field.default)
    args = parser.parse_args(argv)
    configure_logging()
    faults = Faults(**{f.name: getattr(args, f.name) for f in numbers})
    proxy = FaultProxy(args.upstream, faults, port=args.port)
    print(proxy.endpoint_url, flush=True)
    log.info("proxy %s -> %s with %s", proxy.endpoint_url, args.upstream, faults)
    proxy.serve()


if __name__ == "__main__":
    main()
