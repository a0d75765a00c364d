"""What the endpoint router's hop costs: one-row requests through the router, next to the same requests sent
straight to the host behind it.

    python benchmarks/bench_router_hop.py [--requests 3000] [--rounds 3]

The host is a stand-in that answers a fixed one-row prediction at once (raw asyncio, as fast as a host can be), so
the difference is the router's own work: reading and checking the request, choosing the deployment and the
instance, forwarding over a kept-alive connection, passing the answer back, recording the figures. The client is
a kept-alive raw socket sending one request after another (the cheapest client, so it adds the least noise to
either path). Rounds alternate direct and routed; it prints p50/p90/p99 of each and the hop (routed - direct).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key"
ANSWER = b'[0]'
BODY = json.dumps({"input_data": {"columns": ["a", "b", "c"], "index": [0], "data": [[1.0, 2.0, 3.0]]}}).encode()


class FixedAnswer(asyncio.Protocol):
    """A host that answers every request with the same one-row prediction (requests arrive whole on localhost)."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(ANSWER), ANSWER))


def start_host() -> int:
    ready = threading.Event()
    port = []

    async def serve():
        server = await asyncio.get_running_loop().create_server(FixedAnswer, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    ready.wait()
    return port[0]


def timings(port: int, count: int, authorization: bool) -> list[float]:
    """Milliseconds of ``count`` sequential requests over one kept-alive connection."""
    request = (b"POST /score HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               + (b"authorization: Bearer " + KEY.encode() + b"\r\n" if authorization else b"")
               + b"content-length: %d\r\n\r\n" % len(BODY) + BODY)
    times = []
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter()
            connection.sendall(request)
            received = b""
            while not received.endswith(ANSWER):
                received += connection.recv(65536)
            times.append((time.perf_counter() - started) * 1000)
            assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return times


def percentiles(times: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(times, n=100)
    return {"p50": statistics.median(times), "p90": cuts[89], "p99": cuts[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    host_port = start_host()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "endpoint.json").write_text(json.dumps({
            "name": "bench", "auth_mode": "key", "credentials": [{"value": KEY, "expires_at": None}],
            "traffic": {"blue": 100}, "mirror_traffic": {},
            "deployments": {"blue": {"instances": [f"127.0.0.1:{host_port}"], "max_concurrent_requests_per_instance": 1,
                                     "request_timeout_ms": 5000, "max_body_bytes": 1 << 20}},
        }))
        router = subprocess.Popen([sys.executable, "-m", "localml.serving.router", str(folder), "--port", "0"],
                                  cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
        try:
            while not (folder / "router.json").exists():
                time.sleep(0.02)
            router_port = json.loads((folder / "router.json").read_text())["port"]
            timings(router_port, 200, True)  # warm up both paths
            timings(host_port, 200, False)
            direct, routed = [], []
            for _ in range(args.rounds):
                direct += timings(host_port, args.requests, False)
                routed += timings(router_port, args.requests, True)
        finally:
            router.terminate()
            router.wait()
    print(f"{args.rounds} rounds x {args.requests} one-row requests, one after another over keep-alive (ms)")
    print("           p50     p90     p99")
    for name, times in (("direct", direct), ("routed", routed)):
        print(f"{name:8} " + " ".join(f"{value:7.3f}" for value in percentiles(times).values()))
    hop = {key: percentiles(routed)[key] - percentiles(direct)[key] for key in ("p50", "p90", "p99")}
    print("hop      " + " ".join(f"{value:7.3f}" for value in hop.values()))


if __name__ == "__main__":
    main()
