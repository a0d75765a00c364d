"""``ml_client.online_endpoints``: endpoints served on 127.0.0.1 by a router per endpoint (``localml.serving``).

Azure's rules are checked before anything starts or changes; the catalog keeps each endpoint's settings, keys
and port, and an endpoint whose processes died is brought back by the next operation that reads it.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from azure.ai.ml.entities import EndpointAuthKeys, EndpointAuthToken, ManagedOnlineEndpoint, OnlineEndpoint
from azure.ai.ml.exceptions import MlException
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestTimeoutError,
)

from amlkit import names
from amlkit.traffic import check_traffic
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, not_found
from localml.pollers import DonePoller, WaitingPoller
from localml.serving.records import ENDPOINT_KIND, deployment_rows, endpoint_row, save_endpoint
from localml.serving.supervisor import ServingError, Supervisor, allocate_port
from localml.workspace import LocalWorkspace

AUTH_MODES = ("key", "aml_token")
KEY_TYPES = ("primary", "secondary")
#: An aml_token's life, and when get_keys hands out a new one (Azure's tokens last a day and are refreshed before).
TOKEN_SECONDS = 24 * 3600
TOKEN_REFRESH_SECONDS = 12 * 3600
#: What invoke waits beyond the slowest deployment's request_timeout_ms, for the router's own work.
INVOKE_MARGIN_SECONDS = 10.0
#: The status codes Azure's SDK turns into their own exception types (``validate_response``); others are HttpResponseError.
_STATUS_ERRORS = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 408: ServiceRequestTimeoutError, 409: ResourceExistsError}


class OnlineEndpointOperations:
    def __init__(self, workspace: LocalWorkspace, supervisor: Supervisor):
        self._workspace = workspace
        self._catalog = workspace.catalog
        self._supervisor = supervisor

    def begin_create_or_update(self, endpoint: OnlineEndpoint, *, local: bool = False) -> WaitingPoller:
        """Create the endpoint and start its router, or change its traffic, mirror traffic, tags, description or auth_mode.

        ``.result()`` waits until the router listens at ``scoring_uri`` and returns the endpoint.
        """
        refuse_local(local)
        if not isinstance(endpoint, ManagedOnlineEndpoint):
            raise UnsupportedFeatureError(f"{type(endpoint).__name__}", "localml serves managed online endpoints: use ManagedOnlineEndpoint.")
        name = names.ENDPOINT.check(endpoint.name)
        auth_mode = _auth_mode(endpoint.auth_mode)
        deployments = [row["name"] for row in deployment_rows(self._catalog, name)]
        traffic, mirror_traffic = check_traffic(name, endpoint.traffic, endpoint.mirror_traffic, deployments)
        row = endpoint_row(self._catalog, name)
        settings = {"description": endpoint.description, "tags": dict(endpoint.tags or {}), "traffic": traffic, "mirror_traffic": mirror_traffic}
        if row is None:
            taken = {other["port"] for other in self._catalog.list_resources(ENDPOINT_KIND)}
            row = {"name": name, "auth_mode": auth_mode, "credentials": _new_credentials(auth_mode), "port": allocate_port(taken),
                   "router": None, "provisioning_state": "Creating", "error": None, **settings}
            save_endpoint(self._catalog, row)
            self._supervisor.start_router(name)
        else:
            if auth_mode != row["auth_mode"]:
                row.update(auth_mode=auth_mode, credentials=_new_credentials(auth_mode))
            row.update(settings)
            save_endpoint(self._catalog, row)
            self._supervisor.write_endpoint_file(name)
            self._ensure_running(name)
        return WaitingPoller(lambda: self._supervisor.settle_router(name) != "Creating" and self._supervisor.router_has_read(name),
                             lambda: self._settled(name))

    def get(self, name: str, *, local: bool = False) -> ManagedOnlineEndpoint:
        refuse_local(local)
        self._row(name)
        self._ensure_running(name)
        return self._to_entity(self._row(name))

    def list(self, *, local: bool = False) -> Iterator[ManagedOnlineEndpoint]:
        refuse_local(local)
        rows = self._catalog.list_resources(ENDPOINT_KIND)
        for row in rows:
            self._ensure_running(row["name"])
        return iter([self._to_entity(self._row(row["name"])) for row in rows])

    def restore_all(self) -> list[str]:
        """localml only: bring back every endpoint of the workspace whose processes are gone (after a reboot, say);
        the names of the endpoints that are up. ``amlflows up`` calls it."""
        up = []
        for row in self._catalog.list_resources(ENDPOINT_KIND):
            self._ensure_running(row["name"])
            if self._row(row["name"])["provisioning_state"] == "Succeeded":
                up.append(row["name"])
        return up

    # -- credentials -------------------------------------------------------------------------
    def get_keys(self, name: str) -> EndpointAuthKeys | EndpointAuthToken:
        """The endpoint's two keys (auth_mode key), or a token for its aml_token mode (a new one once the last is half-way through its life)."""
        row = self._row(name)
        if row["auth_mode"] == "key":
            primary, secondary = (c["value"] for c in row["credentials"])
            return EndpointAuthKeys(primary_key=primary, secondary_key=secondary)
        token = row["credentials"][-1]
        if time.time() > token["refresh_after"]:
            now = time.time()
            token = _new_token()
            row["credentials"] = [c for c in row["credentials"] if c["expires_at"] > now] + [token]
            save_endpoint(self._catalog, row)
            self._supervisor.write_endpoint_file(name)
        return EndpointAuthToken(access_token=token["value"], expiry_time_utc=token["expires_at"],
                                 refresh_after_time_utc=token["refresh_after"], token_type="Bearer")

    def begin_regenerate_keys(self, name: str, *, key_type: str = "primary") -> WaitingPoller:
        """Replace one of the endpoint's two keys; once ``.result()`` returns, the old one is refused (401)."""
        row = self._row(name)
        if row["auth_mode"] != "key":
            raise LocalMLValidationError(f"Endpoint '{name}' does not use keys for authentication (its auth_mode is "
                                         f"{row['auth_mode']}): get a fresh token with get_keys instead.")
        if str(key_type).lower() not in KEY_TYPES:
            raise LocalMLValidationError(f"Key type must be 'primary' or 'secondary', not {key_type!r}.")
        row["credentials"][KEY_TYPES.index(str(key_type).lower())] = _new_key()
        save_endpoint(self._catalog, row)
        self._supervisor.write_endpoint_file(name)
        return WaitingPoller(lambda: self._supervisor.router_has_read(name), lambda: None)

    # -- scoring -----------------------------------------------------------------------------
    def invoke(self, endpoint_name: str, *, request_file: str | None = None, deployment_name: str | None = None,
               local: bool = False, **kwargs) -> str:
        """Send ``request_file``'s JSON to ``scoring_uri`` with the endpoint's key, as Azure's SDK does; the response text.

        ``deployment_name`` sends it to that deployment (the ``azureml-model-deployment`` header); otherwise the traffic
        split decides. Error statuses raise what Azure's SDK raises for them (401 ClientAuthenticationError, ...).
        """
        refuse_local(local)
        if request_file is None:
            raise LocalMLValidationError(f"invoke of endpoint '{endpoint_name}' needs request_file: a JSON file of the request body.")
        data = json.loads(Path(request_file).read_bytes())
        row = self._row(endpoint_name)
        deployments = deployment_rows(self._catalog, endpoint_name)
        if deployment_name:
            _check_deployment_name(endpoint_name, deployment_name, [d["name"] for d in deployments])
        self._ensure_running(endpoint_name, raise_failure=True)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer(self.get_keys(endpoint_name))}"}
        if deployment_name:
            headers["azureml-model-deployment"] = deployment_name
        timeout = max((d["request_settings"]["request_timeout_ms"] for d in deployments), default=0) / 1000 + INVOKE_MARGIN_SECONDS
        request = urllib.request.Request(_uri(row, "score"), data=json.dumps(data).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read().decode("utf-8")
        except urllib.error.HTTPError as response:
            with response:  # the error holds the connection: closed now, not whenever it is collected
                raise _response_error(response.code, response.reason, response.read()) from None

    # -- delete ------------------------------------------------------------------------------
    def begin_delete(self, name: str | None = None, *, local: bool = False) -> DonePoller:
        """Stop the endpoint's router and every deployment's hosts, and forget it; no process is left behind."""
        refuse_local(local)
        self._row(name)
        self._supervisor.remove(name)
        return DonePoller(None)

    # -- helpers -----------------------------------------------------------------------------
    def _row(self, name: str) -> dict:
        row = endpoint_row(self._catalog, name)
        if row is None:
            raise not_found("Online endpoint", name, known=[r["name"] for r in self._catalog.list_resources(ENDPOINT_KIND)])
        return row

    def _ensure_running(self, name: str, raise_failure: bool = False) -> None:
        """Bring back what died; a failure is recorded in the endpoint's state, and raised only when asked (invoke)."""
        try:
            self._supervisor.ensure_running(name)
        except ServingError as error:
            if raise_failure:
                failure = HttpResponseError(message=f"(ServiceUnavailable) {error}")
                failure.status_code, failure.reason = 503, "Service Unavailable"
                raise failure from None

    def _settled(self, name: str) -> ManagedOnlineEndpoint:
        row = self._row(name)
        if row["provisioning_state"] == "Failed":
            raise HttpResponseError(message=f"(EndpointProvisioningFailed) {row['error']}")
        return self._to_entity(row)

    def _to_entity(self, row: dict) -> ManagedOnlineEndpoint:
        traffic = dict(row["traffic"])
        for deployment in deployment_rows(self._catalog, row["name"]):  # as Azure's get: deployments without traffic show 0
            key = deployment["name"].lower()
            if not traffic.get(key) and not row["mirror_traffic"].get(key):
                traffic[key] = 0
        return ManagedOnlineEndpoint(
            name=row["name"],
            auth_mode=row["auth_mode"],
            description=row["description"],
            tags=row["tags"],
            traffic=traffic,
            mirror_traffic=row["mirror_traffic"],
            scoring_uri=_uri(row, "score"),
            openapi_uri=_uri(row, "swagger.json"),
            provisioning_state=row["provisioning_state"],
            properties={"localml.error": row["error"]} if row["error"] else {},
        )


def bearer(keys: EndpointAuthKeys | EndpointAuthToken) -> str:
    """What a request's ``Authorization: Bearer`` carries, as Azure's SDK picks it: the primary key, or the token."""
    return keys.primary_key if isinstance(keys, EndpointAuthKeys) else keys.access_token


def _uri(row: dict, route: str) -> str:
    return f"http://127.0.0.1:{row['port']}/{route}"


def refuse_local(local: bool) -> None:
    """Azure's ``local=True`` runs endpoints in Docker; localml's are local already."""
    if local:
        raise UnsupportedFeatureError(
            "local=True (Azure's Docker-based local endpoints)", "localml's endpoints run on this machine already: drop local=True."
        )


def _auth_mode(mode: str | None) -> str:
    mode = (mode or "key").lower()
    if mode == "aad_token":
        raise UnsupportedFeatureError("auth_mode 'aad_token' (Microsoft Entra ID tokens)", "Use auth_mode 'key' or 'aml_token'.")
    if mode not in AUTH_MODES:
        raise LocalMLValidationError(f"auth_mode {mode!r} is not one of Azure's: use 'key' or 'aml_token'.")
    return mode


def _new_key() -> dict:
    return {"value": secrets.token_urlsafe(24), "expires_at": None}


def _new_token() -> dict:
    now = time.time()
    return {"value": secrets.token_urlsafe(32), "expires_at": now + TOKEN_SECONDS, "refresh_after": now + TOKEN_REFRESH_SECONDS}


def _new_credentials(auth_mode: str) -> list[dict]:
    """Two keys (primary, secondary) for key auth; one token for aml_token, more as get_keys refreshes it."""
    return [_new_key(), _new_key()] if auth_mode == "key" else [_new_token()]


def _check_deployment_name(endpoint: str, deployment: str, known: list[str]) -> None:
    """As Azure's SDK checks ``deployment_name`` before an invoke (its messages, and what to do)."""
    if not known:
        raise LocalMLValidationError(f"No deployment exists for this endpoint ('{endpoint}'): create one with "
                                     "online_deployments.begin_create_or_update first.")
    if deployment.lower() not in {name.lower() for name in known}:
        raise LocalMLValidationError(f"Deployment name {deployment} not found for this endpoint ('{endpoint}'); "
                                     f"its deployments: {', '.join(sorted(known))}.")


def _response_error(status: int, reason: str, body: bytes) -> Exception:
    """The exception Azure's SDK raises for an error answer (``azure.ai.ml._utils._endpoint_utils.validate_response``)."""
    text = body.decode("utf-8", errors="replace")
    try:
        answer = json.loads(text) if status != 204 else {}
    except ValueError:
        return MlException(message=text, no_personal_data_message=text)
    detail = answer.get("error", {}).get("message") if isinstance(answer, dict) and isinstance(answer.get("error"), dict) else None
    error = _STATUS_ERRORS.get(status, HttpResponseError)(message=f"({status} {reason}) {detail or text}")
    error.status_code, error.reason = status, reason
    return error
