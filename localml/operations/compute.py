"""``ml_client.compute``: compute targets as caps on how many jobs run at once."""

from __future__ import annotations

from typing import Iterator

from azure.ai.ml.entities import AmlCompute

from amlkit import names
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, not_found
from localml.pollers import DonePoller
from localml.workspace import LocalWorkspace

#: Names that mean "no compute target": the job runs at once on this machine, uncapped.
LOCAL_COMPUTE_NAMES = frozenset({"", "local", "serverless"})


class ComputeOperations:
    def __init__(self, workspace: LocalWorkspace):
        self._catalog = workspace.catalog

    def begin_create_or_update(self, compute: AmlCompute) -> DonePoller:
        if not isinstance(compute, AmlCompute):
            raise UnsupportedFeatureError(
                f"compute of type {type(compute).__name__}", "Use AmlCompute: its max_instances caps parallel jobs."
            )
        if not compute.name or compute.name.lower() in LOCAL_COMPUTE_NAMES:
            raise LocalMLValidationError(f"'{compute.name}' cannot name a compute target; choose another name.")
        names.COMPUTE.check(compute.name)
        max_instances = compute.max_instances or 1
        if max_instances < 1:
            raise LocalMLValidationError(f"Compute '{compute.name}': max_instances must be at least 1, got {max_instances}.")
        record = {
            "name": compute.name,
            "size": compute.size,
            "min_instances": compute.min_instances or 0,
            "max_instances": max_instances,
            "idle_time_before_scale_down": compute.idle_time_before_scale_down,
            "description": compute.description,
        }
        self._catalog.put_resource("compute", compute.name, record)
        return DonePoller(self._to_entity(record))

    def get(self, name: str) -> AmlCompute:
        record = self._catalog.get_resource("compute", name)
        if record is None:
            raise not_found("Compute", name, known=[r["name"] for r in self._catalog.list_resources("compute")])
        return self._to_entity(record)

    def list(self) -> Iterator[AmlCompute]:
        return iter([self._to_entity(r) for r in self._catalog.list_resources("compute")])

    def max_instances(self, name: str | None) -> int | None:
        """How many jobs may run at once on ``name`` (None: uncapped); an unknown name is an error."""
        if name is None or name.lower() in LOCAL_COMPUTE_NAMES:
            return None
        return self.get(name).max_instances

    @staticmethod
    def _to_entity(record: dict) -> AmlCompute:
        compute = AmlCompute(
            name=record["name"],
            size=record.get("size"),
            min_instances=record.get("min_instances"),
            max_instances=record["max_instances"],
            idle_time_before_scale_down=record.get("idle_time_before_scale_down"),
            description=record.get("description"),
        )
        compute._provisioning_state = "Succeeded"
        return compute
