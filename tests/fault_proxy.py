"""A TCP proxy on 127.0.0.1 in front of a real server (the S3 server of tests/s3_server.py) that injects network
faults into chosen requests: a connection reset part-way through a response body, or throttling (HTTP 503 SlowDown,
what S3 answers when it is asked too fast). Clients reach it as they would the server; nothing in them is mocked.

A fault applies to requests whose head (request line and headers) matches a pattern (e.g. `GET /bucket/corpus.jsonl`,
or `GET /[^ ]*/b.jsonl .*range: bytes=[1-9]` for reads that start past the file's first byte), for the next `count`
such requests; `heal()` lets everything through again.
"""
from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass

SLOW_DOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 108\r\nConnection: close\r\n\r\n"
             b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
SLOW_DOWN = SLOW_DOWN.replace(b"Content-Length: 108", b"Content-Length: %d" % len(SLOW_DOWN.split(b"\r\n\r\n", 1)[1]))


@dataclass
class Fault:
    kind: str  # "reset": the response is cut after `after_bytes` bytes and the connection reset; "throttle": a 503
    pattern: re.Pattern
    count: int
    after_bytes: int = 600


class FaultProxy:
    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.faults: list[Fault] = []
        self.injected: list[str] = []  # the request lines that got a fault
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def inject(self, kind: str, pattern: str, count: int, after_bytes: int = 600) -> None:
        with self.lock:
            self.faults.append(Fault(kind, re.compile(pattern.encode(), re.DOTALL | re.IGNORECASE), count, after_bytes))

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def stop(self) -> None:
        self.running = False
        self.server.close()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _fault_for(self, request: bytes) -> Fault | None:
        head, line = request.split(b"\r\n\r\n", 1)[0], request.split(b"\r\n", 1)[0]
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.pattern.search(head):
                    fault.count -= 1
                    self.injected.append(f"{fault.kind}: {line.decode(errors='replace')}")
                    return fault
        return None

    def _serve(self, client: socket.socket) -> None:
        """One client connection: each chunk that starts a request is checked for a fault; the rest is relayed."""
        upstream = socket.create_connection(self.upstream)
        relay = threading.Thread(target=self._relay, args=(upstream, client), daemon=True)
        relay.start()
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                fault = self._fault_for(chunk) if re.match(rb"[A-Z]+ /", chunk) else None
                if fault is not None and fault.kind == "throttle":
                    client.sendall(SLOW_DOWN)
                    break
                if fault is not None:
                    self._cut_response(chunk, client, fault.after_bytes)
                    break
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _reset(client)
            upstream.close()

    def _cut_response(self, request: bytes, client: socket.socket, after_bytes: int) -> None:
        """Send the request (a GET: one chunk) on a connection of its own and relay the first `after_bytes` bytes of
        the response (headers and a part of the body); the caller then resets the client's connection."""
        with socket.create_connection(self.upstream) as upstream:
            upstream.sendall(request)
            sent = 0
            while sent < after_bytes:
                data = upstream.recv(after_bytes - sent)
                if not data:
                    break
                client.sendall(data)
                sent += len(data)

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass


def _reset(connection: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass
