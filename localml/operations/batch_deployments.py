"""``ml_client.batch_deployments``: what a batch endpoint scores with, and how (mini-batches, retries, output).

A batch deployment runs nothing until its endpoint is invoked, so creating one only checks it and stores it:
the endpoint, the compute, the model (registered as Azure registers a local ``Model(path=...)``), the scoring
script, the environment and the settings, with Azure's defaults for what is unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from azure.ai.ml.entities import (
    BatchDeployment,
    BatchRetrySettings,
    CodeConfiguration,
    Environment,
    Model,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
    PipelineComponentBatchDeployment,
)

from amlkit import names
from amlkit.references import parse_asset_reference
from localml.batch import DEPLOYMENT_KIND, deployment_row, deployment_rows, endpoint_row, save_deployment
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, not_found
from localml.execution.command import upload_code
from localml.operations.environments import is_curated
from localml.pollers import DonePoller
from localml.workspace import LocalWorkspace

#: Azure's defaults for what a batch deployment leaves unset (``ModelBatchDeploymentSettings``, ``BatchRetrySettings``).
DEFAULTS = {
    "mini_batch_size": 10, "instance_count": 1, "max_concurrency_per_instance": 1, "error_threshold": -1,
    "output_action": "append_row", "output_file_name": "predictions.csv", "logging_level": "info",
}
RETRY_DEFAULTS = {"max_retries": 3, "timeout": 30}
OUTPUT_ACTIONS = ("append_row", "summary_only")
LOGGING_LEVELS = ("debug", "info", "warning")


class BatchDeploymentOperations:
    def __init__(self, workspace: LocalWorkspace, models, environments, compute):
        self._workspace = workspace
        self._catalog = workspace.catalog
        self._models = models
        self._environments = environments
        self._compute = compute

    def begin_create_or_update(self, deployment: BatchDeployment, **kwargs) -> DonePoller:
        """Check and store the deployment; ``.result()`` returns it (it has no process until an invoke)."""
        if isinstance(deployment, PipelineComponentBatchDeployment) or not isinstance(deployment, BatchDeployment):
            raise UnsupportedFeatureError(f"{type(deployment).__name__} yet", "localml runs model batch deployments: use ModelBatchDeployment.")
        name = names.DEPLOYMENT.check(deployment.name)
        endpoint = deployment.endpoint_name or ""
        if endpoint_row(self._catalog, endpoint) is None:
            raise not_found("Batch endpoint", endpoint, known=[r["name"] for r in self._catalog.list_resources("batch_endpoint")])
        settings = self._settings(deployment)
        compute = self._checked_compute(deployment)
        served = self._served(deployment)
        row = {
            "name": name, "endpoint_name": endpoint, "compute": compute, "settings": settings, **served,
            "description": deployment.description, "tags": dict(deployment.tags or {}),
            "properties": dict(deployment.properties or {}), "provisioning_state": "Succeeded",
        }
        save_deployment(self._catalog, row)
        return DonePoller(self._to_entity(row))

    def get(self, name: str, endpoint_name: str) -> ModelBatchDeployment:
        return self._to_entity(self.row(endpoint_name, name))

    def list(self, endpoint_name: str) -> Iterator[ModelBatchDeployment]:
        self._endpoint(endpoint_name)
        return iter([self._to_entity(row) for row in deployment_rows(self._catalog, endpoint_name)])

    def begin_delete(self, name: str, endpoint_name: str) -> DonePoller:
        """Forget the deployment; refused while it is its endpoint's default (as on Azure), and jobs it ran stay."""
        row = self.row(endpoint_name, name)
        default = (self._endpoint(endpoint_name).get("defaults") or {}).get("deployment_name")
        if default and default.lower() == row["name"].lower():
            raise LocalMLValidationError(
                f"Deployment '{row['name']}' is the default deployment of batch endpoint '{endpoint_name}' and cannot be "
                "deleted: set another default (endpoint.defaults = {'deployment_name': ...}) or delete the endpoint."
            )
        self._catalog.delete_resource(DEPLOYMENT_KIND, f"{endpoint_name}/{row['name'].lower()}")
        return DonePoller(None)

    def row(self, endpoint_name: str, name: str) -> dict:
        """The stored deployment; the endpoint's absence is the error reported first."""
        self._endpoint(endpoint_name)
        row = deployment_row(self._catalog, endpoint_name, name or "")
        if row is None:
            known = [r["name"] for r in deployment_rows(self._catalog, endpoint_name)]
            raise not_found(f"Deployment of batch endpoint '{endpoint_name}'", name, known=known)
        return row

    def _endpoint(self, name: str) -> dict:
        row = endpoint_row(self._catalog, name or "")
        if row is None:
            raise not_found("Batch endpoint", name, known=[r["name"] for r in self._catalog.list_resources("batch_endpoint")])
        return row

    # -- checks ---------------------------------------------------------------------------------
    def _settings(self, deployment: BatchDeployment) -> dict:
        where = f"Batch deployment '{deployment.name}'"
        given = deployment._settings  # ModelBatchDeploymentSettings, also behind the flat BatchDeployment arguments
        settings = {key: getattr(given, key, None) for key in DEFAULTS}
        if deployment.resources is not None and deployment.resources.instance_count is not None:
            settings["instance_count"] = deployment.resources.instance_count
        settings = {key: default if settings[key] is None else settings[key] for key, default in DEFAULTS.items()}
        action = str(getattr(settings["output_action"], "value", settings["output_action"])).lower()
        if action not in OUTPUT_ACTIONS:
            raise LocalMLValidationError(f"{where}: output_action {action!r} is not one of Azure's: use 'append_row' or 'summary_only'.")
        if action == "summary_only" and given.output_file_name:
            raise LocalMLValidationError(
                f"{where}: output_action is summary_only, which writes no output file, yet output_file_name is "
                f"'{given.output_file_name}'. Drop output_file_name, or use output_action append_row."
            )
        settings["output_action"] = action
        for key, least in (("mini_batch_size", 1), ("instance_count", 1), ("max_concurrency_per_instance", 1), ("error_threshold", -1)):
            if not isinstance(settings[key], int) or settings[key] < least:
                raise LocalMLValidationError(f"{where}: {key} is {settings[key]!r}; it must be a whole number of at least {least}.")
        if str(settings["logging_level"]).lower() not in LOGGING_LEVELS:
            raise LocalMLValidationError(f"{where}: logging_level {settings['logging_level']!r} is not one of {', '.join(LOGGING_LEVELS)}.")
        settings["logging_level"] = str(settings["logging_level"]).lower()
        retry = given.retry_settings or BatchRetrySettings()
        settings["retry_settings"] = {key: default if getattr(retry, key) is None else getattr(retry, key) for key, default in RETRY_DEFAULTS.items()}
        if settings["retry_settings"]["max_retries"] < 0 or settings["retry_settings"]["timeout"] <= 0:
            raise LocalMLValidationError(f"{where}: retry_settings {settings['retry_settings']} must have max_retries of at "
                                         "least 0 and a timeout (seconds per mini-batch) above 0.")
        variables = given.environment_variables or deployment.environment_variables or {}
        settings["environment_variables"] = {str(k): str(v) for k, v in variables.items()}
        return settings

    def _checked_compute(self, deployment: BatchDeployment) -> str:
        compute = str(deployment.compute or "").removeprefix("azureml:")
        if not compute:
            raise LocalMLValidationError(f"Batch deployment '{deployment.name}' names no compute: give compute='<cluster name>' "
                                         "(create one with ml_client.compute.begin_create_or_update(AmlCompute(...))).")
        self._compute.max_instances(compute)  # an unknown compute is an error now, as on Azure
        return compute

    def _served(self, deployment: BatchDeployment) -> dict:
        """The model, scoring code and environment; every check comes first, then a local model or code is copied in."""
        where = f"Batch deployment '{deployment.name}'"
        model, code = deployment.model, deployment.code_configuration
        if model is None:
            raise LocalMLValidationError(f"{where} has no model: give model=<a registered Model> or 'azureml:<name>:<version>'.")
        registered = self._registered(where, model)
        model_type = registered["type"] if registered else (model.type or "custom_model")
        if code is None and model_type != "mlflow_model":
            raise LocalMLValidationError(
                f"{where}: its model is a {model_type}, so it needs a batch scoring script: give code_configuration="
                "CodeConfiguration(code='./src', scoring_script='score.py') (with init() and run(mini_batch)) and an "
                "environment, or deploy an MLflow model (type mlflow_model), which needs none."
            )
        code_folder = self._code_folder(where, code) if code is not None else None
        environment = self._environment(where, deployment.environment, needed=code is not None)
        if registered is None:  # a Model(path=...): registered now, as Azure's SDK does
            model.type = model_type
            entity = self._models.create_or_update(model)
            registered = {"name": entity.name, "version": entity.version, "type": entity.type, "path": entity.path}
        served = {"model": f"azureml:{registered['name']}:{registered['version']}", "model_type": registered["type"],
                  "model_path": registered["path"], "model_kind": "custom" if code else "mlflow",
                  "code": None, "code_path": None, "scoring_script": None, "environment": environment}
        if code_folder is not None:
            reference = upload_code(self._workspace, code.code)
            served.update(code=reference, code_path=self._catalog.get_asset("code", reference.split(":")[1], "1")["path"],
                          scoring_script=str(code.scoring_script))
        return served

    def _registered(self, where: str, model: str | Model) -> dict | None:
        """The stored model a deployment names, or None for a ``Model(path=...)`` still to register."""
        if isinstance(model, str):
            reference = parse_asset_reference(model, require_prefix=False)
            if reference is None:
                raise LocalMLValidationError(f"{where}: model '{model}' is not a model reference; use azureml:<name>:<version>, "
                                             "azureml:<name>@latest or a Model entity.")
            return self._models.resolve_reference(model)
        if model.name and model.version:
            return self._models.resolve_reference(f"{model.name}:{model.version}")
        if model.path:
            return None
        return self._models.resolve_reference(f"{model.name}@latest")

    def _code_folder(self, where: str, code: CodeConfiguration) -> Path:
        if code.code and str(code.code).startswith("azureml:"):
            reference = upload_code(self._workspace, code.code)  # checks the snapshot exists, copies nothing
            folder = self._workspace.resolve_uri(self._catalog.get_asset("code", reference.split(":")[1], "1")["path"])
        else:
            folder = self._workspace.resolve_uri(str(code.code or ""))
        script = str(code.scoring_script or "")
        if not script or not (folder / script).is_file():
            found = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
            raise LocalMLValidationError(
                f"{where}: scoring script {script!r} is not in its code folder {code.code} (Python files there: "
                f"{', '.join(found) or 'none'}). Set code_configuration.scoring_script to the file defining init() and run(mini_batch)."
            )
        return folder

    def _environment(self, where: str, environment: str | Environment | None, needed: bool) -> str | None:
        """What the job runs in: a curated name (localml's own interpreter), or a registered environment (its conda
        spec built as a venv by the job's runner; an inline Environment is registered now, as Azure does)."""
        if environment is None:
            if needed:
                raise LocalMLValidationError(f"{where} runs a scoring script, so it needs an environment: name a curated one "
                                             "('AzureML-sklearn-1.5@latest' runs on localml's own interpreter) or give an "
                                             "Environment with a conda_file.")
            return None
        if isinstance(environment, Environment):
            if environment.name and is_curated(environment.name):
                return environment.name
            registered = self._environments.create_or_update(environment)
            environment = f"{registered.name}:{registered.version}"
        reference = environment.removeprefix("azureml:")
        self._environments.runtime_for(reference)  # an unknown environment is an error now
        return reference

    # -- reading back ----------------------------------------------------------------------------
    def _to_entity(self, row: dict) -> ModelBatchDeployment:
        settings = row["settings"]
        append = settings["output_action"] == "append_row"
        return ModelBatchDeployment(
            name=row["name"],
            endpoint_name=row["endpoint_name"],
            model=row["model"],
            code_configuration=CodeConfiguration(code=row["code"], scoring_script=row["scoring_script"]) if row["code"] else None,
            environment=row["environment"],
            compute=row["compute"],
            description=row["description"],
            tags=row["tags"],
            properties=row["properties"],
            provisioning_state=row["provisioning_state"],
            settings=ModelBatchDeploymentSettings(
                mini_batch_size=settings["mini_batch_size"],
                instance_count=settings["instance_count"],
                max_concurrency_per_instance=settings["max_concurrency_per_instance"],
                output_action=settings["output_action"],
                output_file_name=settings["output_file_name"] if append else None,
                retry_settings=BatchRetrySettings(**settings["retry_settings"]),
                environment_variables=settings["environment_variables"],
                error_threshold=settings["error_threshold"],
                logging_level=settings["logging_level"],
            ),
        )
