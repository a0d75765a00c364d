"""Online endpoints on this machine: serving hosts, one router per endpoint, and the supervisor that runs them.

Three parts, each in its own process, meet only through files and HTTP on 127.0.0.1, so each can be read and
tested alone:

**The host** (``localml/serving/host.py``): one serving process of a deployment (``instance_count`` of them).
It runs in the deployment's interpreter (this one for a curated environment, the environment's venv for a conda
spec), so it imports only the standard library at start-up; MLflow and pandas only when it serves an MLflow
model. Started as ``<python> <path of host.py> <spec.json>``; the spec::

    {"endpoint": "diabetes-ep", "deployment": "blue", "instance": 0, "port": 0,
     "model_kind": "mlflow" | "custom", "model_dir": "<folder or null>",
     "code_dir": "<folder or null>", "scoring_script": "score.py or null",
     "max_concurrent_requests": 1, "max_body_bytes": 104857600, "state_file": "<path>"}

``environment_variables`` and ``AZUREML_MODEL_DIR`` come in its environment; its stdout and stderr are the
deployment's log. Once the model is loaded (``init()`` returned) it writes ``state_file`` atomically:
``{"pid": ..., "port": ..., "ready": true}``; when loading fails, ``{"pid": ..., "ready": false, "error": "..."}``,
the traceback on stderr, and exit status 1. Routes: ``GET /live``, ``GET /ready``, ``POST /score``,
``GET /swagger.json``.

**The router** (``localml/serving/router.py``): ``python -m localml.serving.router <endpoint folder> --port N``
serves ``scoring_uri`` (``http://127.0.0.1:N/score``). It reads ``<endpoint folder>/endpoint.json``, which
the supervisor rewrites atomically (``os.replace``) and the router reloads when it changes::

    {"name": "diabetes-ep", "auth_mode": "key",
     "credentials": [{"value": "<key or token>", "expires_at": null}],
     "traffic": {"blue": 80, "green": 20}, "mirror_traffic": {"green": 20},
     "deployments": {"blue": {"instances": ["127.0.0.1:41001"], "max_concurrent_requests_per_instance": 1,
                              "request_timeout_ms": 5000, "max_body_bytes": 104857600}}}

Once listening it writes ``<endpoint folder>/router.json`` (``{"pid": ..., "port": ...}``). It checks
``Authorization: Bearer <credential>``, honours the ``azureml-model-deployment`` header, splits by ``traffic``,
copies ``mirror_traffic`` (answers dropped), names the deployment that answered in the response's
``azureml-model-deployment`` header, and keeps each deployment's live figures over a sliding window at
``GET /.localml/figures?window_seconds=60`` (same auth)::

    {"window_seconds": 60, "deployments": {"blue": {"requests": 120, "mirrored": 0,
        "status": {"2xx": 118, "4xx": 1, "5xx": 1}, "failures": 1, "failure_rate": 0.0083,
        "latency_ms": {"p50": 0.9, "p90": 1.4, "p95": 1.9, "p99": 3.0}}}}

**The supervisor** (``localml/serving/supervisor.py``), used by the ``online_endpoints`` and
``online_deployments`` operations: the catalog is the truth; it starts, checks (pid and start time, as for job
runners) and restarts the routers and hosts, writes the spec and ``endpoint.json`` files, and stops every
process of an endpoint it deletes. Files live under ``<workspace root>/endpoints/<endpoint>/``.
"""
