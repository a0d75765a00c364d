"""localml: an Azure Machine Learning workspace on this machine.

It takes the same ``azure.ai.ml`` entities as ``MLClient`` and runs jobs in
local processes, tracked in a local MLflow store. It never imports Prefect.
"""

__all__ = ["LocalMLClient"]


def __getattr__(name: str):
    # lazy, so the job runner (a process per job) starts without loading the whole SDK surface
    if name == "LocalMLClient":
        from localml.client import LocalMLClient

        return LocalMLClient
    raise AttributeError(f"module 'localml' has no attribute '{name}'")
