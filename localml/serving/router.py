"""One endpoint's router: ``python -m localml.serving.router <endpoint folder> --port N``.

It serves the endpoint's ``scoring_uri`` on 127.0.0.1 as Azure's managed online endpoints do: it checks the
caller's key or token, picks a deployment (the ``azureml-model-deployment`` header, else a weighted draw by
``traffic``), forwards the request over a kept-alive connection to that deployment's least busy instance, copies a
share of the requests to the ``mirror_traffic`` deployment (answers dropped), and keeps each deployment's live
figures (``localml.serving.figures``). ``endpoint.json`` and ``router.json`` are the contract's
(``localml/serving/__init__.py``).

Routes: ``POST /score`` (any method is forwarded), ``GET /swagger.json`` (from the deployment taking the most
traffic), ``GET /.localml/figures?window_seconds=60`` (same auth), and ``GET /``, an unauthenticated liveness
answer (``Healthy``, as Azure's inference server says it) for the supervisor to probe the router itself.

What it answers when something is wrong, following Azure's "Troubleshoot online endpoint deployment and scoring"
(HTTP status codes of managed online endpoints):

====  ====================================================================================================
400   not an HTTP request (the connection is closed after it); 431: headers over 64 KiB
401   no ``Authorization: Bearer <credential>``, or not one of the endpoint's unexpired credentials
      (Azure's body code ``key_auth_access_denied``)
404   no deployment takes traffic and the request names none: "No valid deployments to route to. ..."
      (Azure's wording); a header naming a deployment the endpoint does not have; an unknown route
408   the model took longer than the deployment's ``request_timeout_ms``
411   a chunked request body (ours: Azure's front end takes it; send a Content-Length)
413   a body over the deployment's ``max_body_bytes``; never forwarded
424   the model answered something other than 200: its status and body are passed on, the status in
      ``ms-azureml-model-error-statuscode``, with ``ms-azureml-model-error-reason: model_error``
429   too many pending requests: every instance already had ``max_concurrent_requests_per_instance`` in
      flight until the request's timeout, or 2 x that x ``instance_count`` requests were pending already
502   no instance of the deployment accepts connections, or one broke off mid-answer
====  ====================================================================================================

Every answer names the deployment it came from in ``azureml-model-deployment``. Requests sent with that header are
not mirrored (Azure mirrors only the traffic it splits). The router logs to stderr, and never a credential or a
request body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs

from localml.serving.endpoint_file import Deployment, Endpoint, EndpointFile
from localml.serving.figures import MAX_WINDOW_SECONDS, SlidingWindow
from localml.serving.http11 import (
    HEAD_END, BadMessage, RequestHead, json_response, message_response, response,
)
from localml.serving.upstream import (
    Balancer, Instance, NoInstance, Saturated, UpstreamGone, UpstreamResponse, UpstreamTimeout,
)

log = logging.getLogger("localml.serving.router")

DEPLOYMENT_HEADER = b"azureml-model-deployment"
#: A request whose headers run longer than this is refused (no caller of a scoring route needs more).
MAX_HEAD_BYTES = 64 * 1024
NO_VALID_DEPLOYMENT = ("No valid deployments to route to. Please check that the endpoint has at least one deployment "
                       "with positive weight values or use a deployment specific header to route.")


class Router:
    """What the router knows across connections: the endpoint, each deployment's instances, the figures."""

    def __init__(self, folder: Path):
        self.endpoint_file = EndpointFile(folder / "endpoint.json")
        self.figures = SlidingWindow()
        self._instances: dict[str, Instance] = {}
        self._balancers: dict[str, Balancer] = {}
        self._background: set[asyncio.Task] = set()  # mirrored copies in flight (the loop keeps only weak references)
        self.callers: set[asyncio.Transport] = set()
        self.refresh()

    def close(self) -> None:
        """Hang up on every caller and instance."""
        for transport in self.callers:
            transport.close()
        for instance in self._instances.values():
            instance.close()

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoint_file.endpoint

    def refresh(self) -> None:
        """Re-read ``endpoint.json`` if due; on a change, give each deployment its instances and limit."""
        if not self.endpoint_file.refresh(time.monotonic()):
            return
        deployments = self.endpoint.deployments.values()
        wanted = {address for deployment in deployments for address in deployment.instances}
        for address in set(self._instances) - wanted:
            self._instances.pop(address).close()
        for address in wanted - set(self._instances):
            self._instances[address] = Instance(address)
        for deployment in deployments:
            balancer = self._balancers.setdefault(deployment.name, Balancer())
            balancer.instances = [self._instances[address] for address in deployment.instances]
            balancer.limit = deployment.max_concurrent_requests_per_instance

    def authorized(self, head: RequestHead) -> bool:
        scheme, _, credential = head.headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and self.endpoint.accepts(credential.strip())

    def unauthorized(self, keep_alive: bool) -> bytes:
        code = "key_auth_access_denied" if self.endpoint.auth_mode == "key" else "aml_token_auth_access_denied"
        how = ("one of the endpoint's keys (ml_client.online_endpoints.get_keys)" if self.endpoint.auth_mode == "key"
               else "a current token (ml_client.online_endpoints.get_keys)")
        return message_response(401, f"{code}: send {how} as 'Authorization: Bearer <credential>'", keep_alive)

    def choose(self, head: RequestHead) -> Deployment | bytes:
        """The deployment that serves this request, or the 404 to answer."""
        endpoint = self.endpoint
        wanted = head.headers.get(DEPLOYMENT_HEADER)
        if wanted is not None:
            deployment = endpoint.deployments.get(wanted.decode(errors="replace"))
            if deployment is None:
                return message_response(404, (
                    f"Deployment {wanted.decode(errors='replace')!r} not found in endpoint {endpoint.name!r}: the "
                    f"{DEPLOYMENT_HEADER.decode()} header must name one of {sorted(endpoint.deployments)}"),
                    head.keep_alive)
            return deployment
        deployment = endpoint.busiest if head.path == b"/swagger.json" else endpoint.pick()
        return deployment or message_response(404, NO_VALID_DEPLOYMENT, head.keep_alive)

    def mirror_for(self, head: RequestHead) -> Deployment | None:
        """The mirror deployment if this request is to be copied to it."""
        mirror = self.endpoint.mirror
        if mirror is None or DEPLOYMENT_HEADER in head.headers or head.path != b"/score":
            return None
        deployment, share = mirror
        return deployment if random.random() < share else None

    async def forward(self, deployment: Deployment, head: RequestHead, body: bytes, arrival: float,
                      mirrored: bool = False) -> bytes:
        """The answer of ``deployment`` to the request, as the caller receives it; recorded in the figures."""
        balancer = self._balancers[deployment.name]
        deadline = arrival + deployment.request_timeout_seconds
        first_line = head.method + b" " + head.target + b" HTTP/1.1\r\n"
        rest = b"".join((head.forwarded, b"\r\n" if head.forwarded else b"",
                         b"content-length: %d\r\n\r\n" % len(body), body))
        refuse = Refusal(self.figures, deployment, arrival, mirrored, head.keep_alive)
        while True:
            try:
                instance = await balancer.acquire(deadline)
            except Saturated:
                return refuse(429, (
                    f"Too many pending requests for deployment {deployment.name!r}: each of its "
                    f"{len(deployment.instances)} instance(s) takes {deployment.max_concurrent_requests_per_instance} "
                    "request(s) at a time; retry with backoff, or raise max_concurrent_requests_per_instance or "
                    "instance_count"))
            except NoInstance:
                return refuse(502, f"No instance of deployment {deployment.name!r} accepts connections: see "
                                   "ml_client.online_deployments.get_logs for why it stopped")
            try:
                answer = await instance.exchange(first_line, rest, head.method, deadline)
            except UpstreamTimeout:
                log.warning("deployment %s, instance %s: no answer within %.0f ms", deployment.name, instance.address,
                            deployment.request_timeout_seconds * 1000)
                return refuse(408, f"Request timeout: deployment {deployment.name!r} took longer than its "
                                   f"request_timeout_ms ({deployment.request_timeout_seconds * 1000:.0f})")
            except UpstreamGone as gone:
                log.warning("deployment %s, instance %s: %s", deployment.name, instance.address, gone)
                if gone.answered_partly:
                    return refuse(502, f"An instance of deployment {deployment.name!r} broke off its answer: see "
                                       "ml_client.online_deployments.get_logs")
                instance.mark_down()
                continue  # the next least busy instance of the same deployment
            finally:
                balancer.release(instance)
            self.figures.record(deployment.name, answer.status, _ms_since(arrival), mirrored)
            return model_answer(deployment, answer, head.keep_alive)

    async def mirror(self, deployment: Deployment, head: RequestHead, body: bytes) -> None:
        """Send a copy of a request to the mirror deployment; its answer is only counted in the figures."""
        try:
            await self.forward(deployment, head, body, time.monotonic(), mirrored=True)
        except Exception:
            log.exception("mirroring a request to deployment %s failed", deployment.name)

    def figures_answer(self, head: RequestHead) -> bytes:
        query = parse_qs(head.query.decode(errors="replace"))
        try:
            window = float(query.get("window_seconds", ["60"])[0])
            if not 0 < window <= MAX_WINDOW_SECONDS:
                raise ValueError
        except ValueError:
            return message_response(400, f"window_seconds must be a number of seconds in (0, {MAX_WINDOW_SECONDS}]",
                                    head.keep_alive)
        window = int(window) if window.is_integer() else window
        return json_response(200, self.figures.figures(window, list(self.endpoint.deployments)), head.keep_alive)


def model_answer(deployment: Deployment, answer: UpstreamResponse, keep_alive: bool) -> bytes:
    """The model's answer as the caller gets it: a 200 as it is, anything else as Azure's 424 saying what it was."""
    headers = [*answer.passed_on, answered_by(deployment)]
    if answer.status == 200:
        return response(200, headers, answer.body, keep_alive)
    headers += [b"ms-azureml-model-error-statuscode: %d" % answer.status, b"ms-azureml-model-error-reason: model_error"]
    return response(424, headers, answer.body, keep_alive)


def answered_by(deployment: Deployment) -> bytes:
    """The response header naming the deployment that answered."""
    return DEPLOYMENT_HEADER + b": " + deployment.name.encode()


class Refusal:
    """The router's own answer on a deployment's behalf (408, 413, 429, 502), counted in that deployment's figures."""

    def __init__(self, figures: SlidingWindow, deployment: Deployment, arrival: float, mirrored: bool, keep_alive: bool):
        self.figures, self.deployment, self.arrival = figures, deployment, arrival
        self.mirrored, self.keep_alive = mirrored, keep_alive

    def __call__(self, status: int, message: str) -> bytes:
        self.figures.record(self.deployment.name, status, _ms_since(self.arrival), self.mirrored)
        return message_response(status, message, self.keep_alive, (answered_by(self.deployment),))


def _ms_since(arrival: float) -> float:
    return (time.monotonic() - arrival) * 1000


class ClientConnection(asyncio.Protocol):
    """One caller's connection: requests one at a time, each answered before the next is read."""

    def __init__(self, router: Router):
        self.router = router
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: RequestHead | None = None
        self._deployment: Deployment | None = None
        self._arrival = 0.0
        self._body_length = 0
        self._skip = 0  # bytes of the body of a request answered without it, still to throw away
        self._answering: asyncio.Task | None = None  # while set, what arrives waits in the buffer

    def connection_made(self, transport):
        self.transport = transport
        self.router.callers.add(transport)

    def connection_lost(self, exc):
        self.router.callers.discard(self.transport)

    def data_received(self, data):
        self._buffer += data
        if self._answering is None:
            self._read()

    def _read(self) -> None:
        """Answer the requests the buffer holds, up to one that is forwarded (its answer resumes the reading)."""
        while not self.transport.is_closing():
            if self._skip:
                skipped = min(self._skip, len(self._buffer))
                del self._buffer[:skipped]
                self._skip -= skipped
                if self._skip:
                    return
            if self._head is None:
                end = self._buffer.find(HEAD_END)
                if end < 0:
                    if len(self._buffer) > MAX_HEAD_BYTES:
                        self.transport.write(message_response(
                            431, f"The request's headers are over {MAX_HEAD_BYTES} bytes", keep_alive=False))
                        self.transport.close()
                    return
                self._arrival = time.monotonic()
                block = bytes(self._buffer[:end])
                del self._buffer[:end + 4]
                if not self._take(block):
                    continue
            if len(self._buffer) < self._body_length:
                return
            body = bytes(self._buffer[:self._body_length])
            del self._buffer[:self._body_length]
            head, deployment, self._head, self._deployment = self._head, self._deployment, None, None
            self._answering = asyncio.ensure_future(self._answer(head, deployment, body, self._arrival))
            return

    def _take(self, block: bytes) -> bool:
        """Read a request's head; answer it at once unless it is to be forwarded (then True: read its body)."""
        try:
            head = RequestHead(block)
            length = head.content_length()
        except BadMessage as error:
            chunked = b"transfer-encoding" in block.lower()
            # the body's end is unknown: answer, then close the connection
            self.transport.write(message_response(411 if chunked else 400, str(error), keep_alive=False))
            self.transport.close()
            return False
        decision = self._decide(head, length)
        if isinstance(decision, bytes):
            self._skip = length
            self.transport.write(decision)
            # a caller waiting for "100 Continue" sends no body: the connection cannot tell what comes next
            if not head.keep_alive or _expects_continue(head):
                self.transport.close()
            return False
        if _expects_continue(head):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._head, self._deployment, self._body_length = head, decision, length
        return True

    def _decide(self, head: RequestHead, length: int) -> Deployment | bytes:
        """The deployment to forward the request to, or the answer to give without forwarding it."""
        router = self.router
        router.refresh()
        if head.path == b"/" and head.method == b"GET":
            return response(200, [b"content-type: text/plain"], b"Healthy", head.keep_alive)
        if not router.authorized(head):
            return router.unauthorized(head.keep_alive)
        if head.path == b"/.localml/figures":
            return router.figures_answer(head)
        if head.path not in (b"/score", b"/swagger.json"):
            return message_response(404, f"No route {head.path.decode(errors='replace')!r}: the endpoint serves "
                                         "POST /score and GET /swagger.json", head.keep_alive)
        chosen = router.choose(head)
        if isinstance(chosen, Deployment) and length > chosen.max_body_bytes:
            return Refusal(router.figures, chosen, self._arrival, False, head.keep_alive)(413, (
                f"Payload too large: {length} bytes, and deployment {chosen.name!r} takes at most "
                f"{chosen.max_body_bytes} bytes a request; send fewer rows per request"))
        return chosen

    async def _answer(self, head: RequestHead, deployment: Deployment, body: bytes, arrival: float) -> None:
        router = self.router
        try:
            answer = await router.forward(deployment, head, body, arrival)
        except Exception:
            log.exception("answering a request to deployment %s failed", deployment.name)
            answer, head.keep_alive = message_response(500, "The router failed: see its log", keep_alive=False), False
        self._answering = None
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        mirror = router.mirror_for(head)
        if mirror is not None:
            # started once the live answer is on its way, so the copy can never delay it
            router.spawn(router.mirror(mirror, head, body))
        if not head.keep_alive:
            self.transport.close()
        elif self._buffer:
            self._read()


def _expects_continue(head: RequestHead) -> bool:
    return head.headers.get(b"expect", b"").lower() == b"100-continue"


def write_atomically(path: Path, payload: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload))
    os.replace(partial, path)


async def serve(folder: Path, port: int) -> None:
    loop = asyncio.get_running_loop()
    router = Router(folder)
    server = await loop.create_server(lambda: ClientConnection(router), "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    write_atomically(folder / "router.json", {"pid": os.getpid(), "port": bound})
    log.info("endpoint %s: serving http://127.0.0.1:%d/score", router.endpoint.name or folder.name, bound)
    stopped = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: stopped.done() or stopped.set_result(None))
    async with server:
        await stopped
        router.close()
        await asyncio.sleep(0)  # the closed transports let go of their sockets on the next turn of the loop
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localml.serving.router", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the endpoint's folder, holding endpoint.json")
    parser.add_argument("--port", type=int, required=True, help="the port of scoring_uri (0: any free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s router %(levelname)s %(message)s")
    asyncio.run(serve(args.folder, args.port))


if __name__ == "__main__":
    main()
