"""One serving process of an online deployment: ``<python> host.py <spec.json>`` (the contract is in ``__init__.py``).

It runs in the deployment's interpreter, which may be a bare venv built from a user's conda spec, so at import it
uses only the standard library and never ``localml`` (whose package imports the Azure SDK); it imports MLflow,
pandas and numpy only when it serves an MLflow model.

HTTP/1.1 with keep-alive on 127.0.0.1, on asyncio: ``GET /live`` answers 200 from the start, loading included;
``GET /ready`` 200 once the model is loaded (``init()`` returned); ``POST /score``; ``GET /swagger.json``. Loading
and predictions run on one pool of ``max_concurrent_requests`` threads, so a long prediction never blocks ``/live``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import http
import importlib.util
import inspect
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

#: How long a refused request's unread body is drained before the connection closes (see ``_refuse``)
LINGER_SECONDS = 1.0
#: Request line and headers together; beyond it a request is refused with 431
HEAD_LIMIT_BYTES = 64 * 1024


# --------------------------------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Spec:
    endpoint: str
    deployment: str
    instance: int
    port: int
    model_kind: str
    model_dir: str | None
    code_dir: str | None
    scoring_script: str | None
    max_concurrent_requests: int
    max_body_bytes: int
    state_file: str

    @classmethod
    def read(cls, path: str) -> Spec:
        fields = json.loads(Path(path).read_text())
        missing = sorted(set(cls.__dataclass_fields__) - set(fields))
        if missing:
            raise ValueError(f"The host spec {path} lacks {', '.join(missing)}: see localml/serving/__init__.py")
        spec = cls(**{name: fields[name] for name in cls.__dataclass_fields__})
        if spec.model_kind not in ("mlflow", "custom"):
            raise ValueError(f"The host spec {path} has model_kind {spec.model_kind!r}: it must be 'mlflow' or 'custom'")
        return spec


def write_state(path: str, state: dict) -> None:
    """Write the state file whole or not at all: its readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".state-", suffix=".partial", delete=False) as partial:
        try:
            json.dump(state, partial)
        except BaseException:
            os.unlink(partial.name)
            raise
    os.replace(partial.name, path)


# --------------------------------------------------------------------------------------------------- HTTP


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    keep_alive: bool


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers)


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message})


class Refused(Exception):
    """A request the host answers without reading it whole, then closes the connection."""

    def __init__(self, reply: Reply):
        super().__init__(reply.body.decode())
        self.reply = reply


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body_bytes: int) -> Request | None:
    """The next request on a connection, or None once the client has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise Refused(error_reply(431, f"The request line and headers exceed {HEAD_LIMIT_BYTES} bytes.")) from None
    request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise Refused(error_reply(400, f"Malformed request line {request_line[:100]!r}: expected 'METHOD /path HTTP/1.1'."))
    method, target, version = parts
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise Refused(error_reply(411, "Chunked request bodies are not accepted: send the body with a Content-Length."))
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise Refused(error_reply(400, f"Content-Length {headers['content-length']!r} is not a number.")) from None
    if length > max_body_bytes:
        raise Refused(error_reply(
            413, f"The body is {length} bytes; this deployment accepts at most {max_body_bytes}: send fewer rows per request."))
    if headers.get("expect", "").lower() == "100-continue":  # curl asks so for bodies over 1 kB, then waits a second
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return Request(method, target.split("?", 1)[0], headers, body, keep_alive)


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    known = reply.status in http.HTTPStatus._value2member_map_  # a score.py may answer any status
    head = [
        f"HTTP/1.1 {reply.status} {http.HTTPStatus(reply.status).phrase if known else 'Status'}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body


# --------------------------------------------------------------------------------------------------- MLflow models


class BadInput(Exception):
    """A request the model cannot take: the message says what is wrong and what the model expects."""


#: MLflow's request formats: Azure's ``input_data`` (answered with the bare list) and MLflow's own (``{"predictions"}``)
REQUEST_FORMATS = ("input_data", "dataframe_split", "dataframe_records", "inputs", "instances")
#: The column types this host checks and converts itself: MLflow type -> (accepts a JSON value, numpy dtype, wording)
COLUMN_TYPES = {
    "long": (lambda value: type(value) is int, "int64", "an integer"),
    "integer": (lambda value: type(value) is int, "int32", "an integer"),
    "double": (lambda value: type(value) in (int, float) or value is None, "float64", "a number or null"),
    "float": (lambda value: type(value) in (int, float) or value is None, "float32", "a number or null"),
    "boolean": (lambda value: type(value) is bool, "bool", "true or false"),
    "string": (lambda value: type(value) is str, "object", "a string"),
}
#: An example value of each column type, for the OpenAPI document of a model saved without an input example
EXAMPLE_VALUES = {"long": 0, "integer": 0, "double": 0.0, "float": 0.0, "boolean": False, "string": ""}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object", type(None): "null"}
OPENAPI_TYPES = {
    "long": {"type": "integer", "format": "int64"}, "integer": {"type": "integer", "format": "int32"},
    "double": {"type": "number", "format": "double"}, "float": {"type": "number", "format": "float"},
    "boolean": {"type": "boolean"}, "string": {"type": "string"},
}


class Columns:
    """The model's input columns (name, MLflow type): a request's values checked and turned into a DataFrame.

    MLflow's own schema enforcement costs about 0.3 ms a call, as much as a one-row LightGBM prediction; this one
    builds the DataFrame enforcement would have built (the signature's columns, in its order, of its dtypes) and
    hands it to the model's predict function directly.
    """

    def __init__(self, columns: list[tuple[str, str]]):
        self.columns = columns
        self.names = [name for name, _ in columns]
        self.expected = ", ".join(f"{name} ({kind})" for name, kind in columns)

    def from_request(self, request_format: str, payload: Any) -> Any:
        """The DataFrame of one request's rows; BadInput naming what is wrong."""
        if request_format in ("input_data", "dataframe_split"):
            given = self._from_split(payload, request_format)
        elif request_format == "dataframe_records" or isinstance(payload, list):
            given = self._from_records(payload, request_format)
        elif isinstance(payload, dict):
            given = payload
        else:
            raise BadInput(f"'{request_format}' must be an object of columns or a list of records; "
                           f"the model expects the columns {self.expected}.")
        return self._frame(given)

    def _from_split(self, payload: Any, where: str) -> dict[str, Any]:
        if not (isinstance(payload, dict) and isinstance(payload.get("columns"), list) and isinstance(payload.get("data"), list)):
            raise BadInput(f"'{where}' must be an object with 'columns' (the column names) and 'data' (a list of rows); "
                           f"the model expects the columns {self.expected}.")
        columns, rows = payload["columns"], payload["data"]
        for number, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadInput(f"Row {number} of '{where}.data' is {json.dumps(row)[:200]}: each row must be a list of "
                               f"{len(columns)} values, one per name in 'columns'.")
        return dict(zip(columns, zip(*rows))) if rows else dict.fromkeys(columns, ())

    def _from_records(self, records: Any, where: str) -> dict[str, Any]:
        if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
            raise BadInput(f"'{where}' must be a list of records, objects such as {{\"{self.names[0]}\": ...}}; "
                           f"the model expects the columns {self.expected}.")
        for number, record in enumerate(records):
            missing = [name for name in self.names if name not in record]
            if missing:
                raise BadInput(f"Record {number} of '{where}' lacks the column(s) {', '.join(missing)}; "
                               f"the model expects the columns {self.expected}.")
        return {name: [record[name] for record in records] for name in self.names}

    def _frame(self, given: dict[str, Any]) -> Any:
        import numpy as np
        import pandas as pd

        missing = [name for name in self.names if name not in given]
        if missing:
            raise BadInput(f"Missing column(s) {', '.join(missing)}; the model expects the columns {self.expected}.")
        arrays = {}
        for name, kind in self.columns:
            values = given[name]
            accepts, dtype, wording = COLUMN_TYPES[kind]
            if not isinstance(values, (list, tuple)):
                values = [values]  # MLflow's ``inputs`` may give one row's scalars
            if not values:
                raise BadInput(f"The request holds no rows: send at least one; the model expects the columns {self.expected}.")
            wrong = next((number for number, value in enumerate(values) if not accepts(value)), None)
            if wrong is not None:
                value = values[wrong]
                raise BadInput(f"Column {name} expects {kind} ({wording}) but row {wrong} holds {json.dumps(value)[:100]} "
                               f"({JSON_TYPES.get(type(value), type(value).__name__)}); the model expects the columns {self.expected}.")
            try:
                arrays[name] = np.array(values, dtype=dtype)
            except OverflowError:
                raise BadInput(f"Column {name} holds a value out of range for {kind} ({dtype}).") from None
        rows = {len(array) for array in arrays.values()}
        if len(rows) > 1:
            raise BadInput(f"The columns hold different numbers of values ({sorted(rows)}): give every column one value per row.")
        return pd.DataFrame(arrays, copy=False)  # the arrays are this request's own


def use_one_thread(raw_model: Any) -> None:
    """Make the model predict on its caller's thread alone.

    LightGBM and XGBoost otherwise start their OpenMP threads on every predict call: at one row that costs far more
    than the prediction (8 ms against 0.6 ms for a 50-tree LightGBM on a busy 2-core machine). Concurrency comes
    from the host's own threads (``max_concurrent_requests``), as with Azure's workers.
    """
    module = type(raw_model).__module__
    if hasattr(raw_model, "get_params") and hasattr(raw_model, "set_params"):  # scikit-learn's API, pipelines too
        jobs = {key: 1 for key in raw_model.get_params(deep=True) if key == "n_jobs" or key.endswith("__n_jobs")}
        if jobs:
            raw_model.set_params(**jobs)
    elif module.startswith("lightgbm"):  # a native Booster: its thread count is an argument of each predict call
        # (reset_parameter would do it once, but crashes LightGBM 4.7 on a Booster loaded from a file)
        raw_model.predict = functools.partial(type(raw_model).predict, raw_model, num_threads=1)
    elif module.startswith("xgboost"):
        raw_model.set_param({"nthread": 1})


class MlflowModel:
    """An MLflow model (no scoring script), answering Azure's request format and MLflow's own."""

    def __init__(self, model_dir: str, spec: Spec):
        import mlflow.pyfunc

        self.pyfunc = mlflow.pyfunc.load_model(model_dir)
        try:
            use_one_thread(self.pyfunc.get_raw_model())
        except NotImplementedError:  # a flavour that does not expose its model: it keeps its own threading
            pass
        self.schema = self.pyfunc.metadata.get_input_schema()
        self.columns = self._checked_columns()
        self.openapi = self._openapi(model_dir, spec)

    def _checked_columns(self) -> Columns | None:
        """The columns this host checks itself; None when MLflow's enforcement must do it (no signature, tensors,
        optional columns, other types, type hints)."""
        from mlflow.types import DataType

        metadata = self.pyfunc.metadata
        if self.schema is None or self.schema.is_tensor_spec() or metadata._is_signature_from_type_hint() \
                or metadata._is_type_hint_from_example():
            return None
        specs = self.schema.inputs
        kinds = [spec.type.name if isinstance(spec.type, DataType) else None for spec in specs]
        if any(spec.name is None or not spec.required or kind not in COLUMN_TYPES for spec, kind in zip(specs, kinds)):
            return None
        return Columns([(spec.name, kind) for spec, kind in zip(specs, kinds)])

    def score(self, request: Request) -> Reply:
        try:
            payload = json.loads(request.body)
        except ValueError as error:
            return error_reply(400, f"The body is not valid JSON ({error}). Send {{\"input_data\": {{\"columns\": [...], "
                                    f"\"index\": [...], \"data\": [[...]]}}}}{self._expecting()}.")
        formats = [name for name in REQUEST_FORMATS if isinstance(payload, dict) and name in payload]
        if len(formats) != 1:
            keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            return error_reply(400, f"Unknown request format (got {keys}): send an object with exactly one of "
                                    f"{', '.join(REQUEST_FORMATS)}{self._expecting()}.")
        request_format = formats[0]
        try:
            predictions = self._predict(request_format, payload[request_format], payload.get("params"))
        except BadInput as error:
            return error_reply(400, str(error))
        except Exception as error:
            traceback.print_exc()
            return error_reply(500, f"The model failed on this input: {type(error).__name__}: {error}. "
                                    "Its traceback is in the deployment's log.")
        return Reply(200, self._json(predictions if request_format == "input_data" else {"predictions": predictions}))

    def _predict(self, request_format: str, payload: Any, params: dict | None) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.proto_json_utils import _get_jsonable_obj

        if self.columns is not None and params is None:
            # what PyFuncModel.predict calls once its schema enforcement is done
            return _get_jsonable_obj(self.pyfunc._predict_fn(self.columns.from_request(request_format, payload)))
        from mlflow.pyfunc.scoring_server import infer_and_parse_data

        try:
            mlflow_format = "dataframe_split" if request_format == "input_data" else request_format
            data = infer_and_parse_data({mlflow_format: payload}, self.schema)
            return _get_jsonable_obj(self.pyfunc.predict(data, params=params))
        except MlflowException as error:
            raise BadInput(f"{error.message}{self._expecting()}") from None

    def _expecting(self) -> str:
        return f"; the model expects the columns {self.columns.expected}" if self.columns else ""

    @staticmethod
    def _json(payload: Any) -> bytes:
        from mlflow.utils.proto_json_utils import NumpyEncoder

        return json.dumps(payload, cls=NumpyEncoder).encode()

    def _openapi(self, model_dir: str, spec: Spec) -> dict:
        if self.columns is None:
            return openapi_document(spec, {"type": "object"}, None)
        names = self.columns.names
        example_row = self._saved_example_row(model_dir) or [EXAMPLE_VALUES[kind] for _, kind in self.columns.columns]
        row = {"type": "object", "required": names, "properties": {name: OPENAPI_TYPES[kind] for name, kind in self.columns.columns}}
        split = {
            "type": "object", "required": ["columns", "data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string", "enum": names}},
                "index": {"type": "array", "items": {"type": "integer"}},
                "data": {"type": "array", "items": {"type": "array", "description": f"One row, in the order of columns: {self.columns.expected}"}},
            },
        }
        body = {"type": "object", "properties": {
            "input_data": split, "dataframe_split": split, "dataframe_records": {"type": "array", "items": row},
            "inputs": {"type": "object", "properties": {name: {"type": "array", "items": OPENAPI_TYPES[kind]} for name, kind in self.columns.columns}},
        }}
        return openapi_document(spec, body, {"input_data": {"columns": names, "index": [0], "data": [example_row]}})

    def _saved_example_row(self, model_dir: str) -> list | None:
        """The first row of the input example saved with the model, in the signature's column order."""
        info = self.pyfunc.metadata.saved_input_example_info or {}
        try:
            saved = json.loads(Path(model_dir, info["artifact_path"]).read_text())
            first = dict(zip(saved["columns"], saved["data"][0]))
            return [first[name] for name in self.columns.names]
        except (KeyError, IndexError, TypeError, ValueError, OSError):
            return None


# --------------------------------------------------------------------------------------------------- custom models


def load_scoring_script(code_dir: str, scoring_script: str, calls: str) -> Any:
    """The scoring script as a module, checked to define ``init()`` and ``run()`` (``calls`` says how they are called)."""
    path = os.path.join(code_dir, scoring_script)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No scoring script {scoring_script!r} in {code_dir}: code_configuration.scoring_script "
                                "names a file of code_configuration.code.")
    sys.path.append(code_dir)  # the script imports its sibling modules, as on Azure
    module_spec = importlib.util.spec_from_file_location("entry_module", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    for function in ("init", "run"):
        if not callable(getattr(script, function, None)):
            raise AttributeError(f"The scoring script {scoring_script} defines no {function}() function: {calls}")
    return script


class ScoringScript:
    """A ``score.py`` with ``init()`` and ``run(raw_data)``, called as Azure's inference server calls them
    (``azureml-inference-server-http``): the script loaded by path as ``entry_module`` with its folder on sys.path,
    ``init()`` once, ``run()`` with the body as a string (and ``request_headers`` when it takes them), its return
    value sent as JSON, errors as ``{"message": ...}``."""

    def __init__(self, code_dir: str, scoring_script: str, spec: Spec):
        script = load_scoring_script(code_dir, scoring_script, "Azure calls init() once, then run(raw_data) for each request.")
        self.run = script.run
        self.takes_headers = "request_headers" in inspect.signature(script.run).parameters
        self.openapi = openapi_document(spec, {"type": "object"}, None)
        script.init()

    def score(self, request: Request) -> Reply:
        try:
            raw_data = request.body.decode("utf-8")
        except UnicodeDecodeError as error:
            return json_reply(400, {"message": f"Input cannot be decoded as UTF-8: {error}"})
        started = time.perf_counter()
        try:
            if self.takes_headers:
                result = self.run(raw_data, request_headers={name.title(): value for name, value in request.headers.items()})
            else:
                result = self.run(raw_data)
        except Exception:
            print(f"Encountered Exception: {traceback.format_exc()}", file=sys.stderr, flush=True)
            return json_reply(500, {"message": "An unexpected error occurred in scoring script. Check the logs for more info."},
                              (("x-ms-run-function-failed", "True"),))
        timing = ("x-ms-run-fn-exec-ms", f"{(time.perf_counter() - started) * 1000:.3f}")
        return self._reply(result, timing)

    @staticmethod
    def _reply(result: Any, timing: tuple[str, str]) -> Reply:
        if hasattr(result, "status_code") and hasattr(result, "get_data"):  # an AMLResponse, or any Flask response
            failed = str(result.status_code >= 500)
            headers = tuple((name, value) for name, value in result.headers.items() if name.lower() not in ("content-type", "content-length"))
            return Reply(result.status_code, result.get_data(), (*headers, ("x-ms-run-function-failed", failed), timing),
                         result.headers.get("Content-Type", "text/html; charset=utf-8"))
        try:  # as the server's AMLResponse(json_str=True): None becomes {}
            body = json.dumps({} if result is None else result).encode()
        except (TypeError, ValueError):
            print(f"Encountered Exception: {traceback.format_exc()}", file=sys.stderr, flush=True)
            return json_reply(500, {"message": "An unexpected internal error occurred. Check the logs for more info."})
        return Reply(200, body, (("x-ms-run-function-failed", "False"), timing))


def openapi_document(spec: Spec, request_schema: dict, example: dict | None) -> dict:
    """The OpenAPI 3 document of the host's routes; ``request_schema`` and ``example`` describe /score's body."""
    body = {"schema": request_schema, **({"example": example} if example is not None else {})}
    probe = {"get": {"responses": {"200": {"description": "up"}, "503": {"description": "still loading"}}}}
    return {
        "openapi": "3.0.1",
        "info": {"title": f"{spec.endpoint} / {spec.deployment}", "version": "1.0"},
        "paths": {
            "/score": {"post": {
                "requestBody": {"required": True, "content": {"application/json": body}},
                "responses": {
                    "200": {"description": "The predictions: a list for input_data, {\"predictions\": [...]} for MLflow's formats"},
                    "400": {"description": "Input the model cannot take: {\"error\": \"...\"} says what is wrong and what it expects"},
                    "413": {"description": "A body over the deployment's size limit"},
                    "500": {"description": "The model failed; the traceback is in the deployment's log"},
                },
            }},
            "/live": probe,
            "/ready": probe,
        },
    }


def load_model(spec: Spec) -> MlflowModel | ScoringScript:
    if spec.model_kind == "custom":
        return ScoringScript(spec.code_dir, spec.scoring_script, spec)
    return MlflowModel(spec.model_dir, spec)


# --------------------------------------------------------------------------------------------------- the host


class Host:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.model: MlflowModel | ScoringScript | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(spec.max_concurrent_requests, thread_name_prefix="score")

    async def serve(self) -> int:
        """Listen, load the model, write the state file; serve until stopped. The exit status."""
        listener = socket.create_server(("127.0.0.1", self.spec.port))
        port = listener.getsockname()[1]
        server = await asyncio.start_server(self.serve_connection, sock=listener, limit=HEAD_LIMIT_BYTES)
        try:
            self.model = await asyncio.get_running_loop().run_in_executor(self.pool, load_model, self.spec)
        except (Exception, SystemExit) as error:
            traceback.print_exc()
            write_state(self.spec.state_file, {"pid": os.getpid(), "ready": False, "error": f"{type(error).__name__}: {error}"})
            return 1
        write_state(self.spec.state_file, {"pid": os.getpid(), "port": port, "ready": True})
        print(f"Serving {self.spec.endpoint}/{self.spec.deployment} instance {self.spec.instance} on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()
        return 0

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await read_request(reader, writer, self.spec.max_body_bytes)
                except Refused as refused:
                    await self._refuse(reader, writer, refused.reply)
                    return
                if request is None:
                    return
                try:
                    reply = await self.answer(request)
                except Exception as error:  # a fault of this host's: the request fails, the host keeps serving
                    traceback.print_exc()
                    reply = error_reply(500, f"The host failed on this request: {type(error).__name__}: {error}.")
                writer.write(encode_reply(reply, request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request: nothing to answer
        finally:
            writer.close()

    async def answer(self, request: Request) -> Reply:
        route = (request.method, request.path)
        if route == ("GET", "/live"):
            return json_reply(200, {"live": True})
        if route == ("GET", "/ready"):
            return json_reply(200, {"ready": True}) if self.model else error_reply(503, "The model is still loading.")
        if route == ("GET", "/swagger.json") and self.model:
            return json_reply(200, self.model.openapi)
        if route == ("POST", "/score") and self.model:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self.model.score, request)
        if request.path in ("/score", "/swagger.json") and not self.model:
            return error_reply(503, "The model is still loading: wait until GET /ready answers 200.")
        if request.path in ("/live", "/ready", "/swagger.json", "/score"):
            return error_reply(405, f"{request.method} {request.path} is not served: POST /score; GET /live, /ready, /swagger.json.")
        return error_reply(404, f"No route {request.path}: POST /score; GET /live, /ready, /swagger.json.")

    @staticmethod
    async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """Answer, then drain what the client still sends for a moment before closing: closing a socket with unread
        data resets the connection, and the client may lose the answer (the lingering close of HTTP servers)."""
        writer.write(encode_reply(reply, keep_alive=False))
        await writer.drain()
        writer.write_eof()
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while await reader.read(1 << 16):
                    pass
        except (TimeoutError, ConnectionError):
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python host.py <spec.json>  (the spec is described in localml/serving/__init__.py)", file=sys.stderr)
        return 2
    # Run as a script, Python puts this file's folder first on sys.path: a user's ``import router`` would find ours
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    sys.stdout.reconfigure(line_buffering=True)  # the deployment's log shows what score.py prints as it prints it
    spec = Spec.read(argv[1])
    return asyncio.run(Host(spec).serve())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
