"""localml: an Azure Machine Learning workspace on this machine.

It takes the same ``azure.ai.ml`` entities as ``MLClient`` and runs jobs in
local processes, tracked in a local MLflow store. It never imports Prefect.
"""

from localml.client import LocalMLClient

__all__ = ["LocalMLClient"]
