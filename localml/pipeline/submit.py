"""A pipeline job, checked at submission and planned as the child command jobs its driver submits.

Every check happens here, before any node runs: each node runs a command component; each binding
``${{parent.inputs.x}}`` / ``${{parent.jobs.<node>.outputs.<out>}}`` names a pipeline input or an
output some node declares; the nodes form no cycle; every required input gets a value. Each node
becomes a template (plain data, stored for the driver) of the command job ``<pipeline>_<node>``.
Its outputs' azureml:// URIs are known now, so an input that reads another node's output is that URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from azure.ai.ml import Input, Output, command
from azure.ai.ml.entities import Command, CommandComponent, CommandJobLimits
from azure.core.exceptions import ResourceNotFoundError

from localml.errors import LocalMLValidationError, UnsupportedFeatureError
from localml.execution.command import INPUT_TYPES, output_uri

#: The tag that names the pipeline node a child job runs (its display name is the node's name too, as on Azure).
NODE_TAG = "localml.pipeline_node"
_BINDING = re.compile(
    r"^\$\{\{\s*parent\.(?:inputs\.(?P<input>\w+)|jobs\.(?P<node>\w+)\.outputs\.(?P<output>\w+)|outputs\.(?P<pipeline_output>\w+))\s*\}\}$"
)
_UNSET = object()
#: Azure's untyped port (its Responsible AI components use it): a child job gets the type of what is
#: bound to such an input, and such an output is a folder.
PATH_TYPE = "path"


@dataclass(frozen=True)
class NodeOutputRef:
    node: str
    output: str


@dataclass
class PlannedNode:
    name: str
    node: Command
    component: CommandComponent
    inputs: dict[str, Any] = field(default_factory=dict)  # a literal, an Input or a NodeOutputRef
    outputs: dict[str, Output] = field(default_factory=dict)
    pipeline_outputs: dict[str, str] = field(default_factory=dict)  # node output -> the pipeline output bound to it

    @property
    def depends_on(self) -> list[str]:
        return sorted({value.node for value in self.inputs.values() if isinstance(value, NodeOutputRef)})


def input_values(job) -> dict[str, Any]:
    """The pipeline's inputs that have a value (a literal or an Input), by name."""
    values = {key: getattr(value, "_data", value) for key, value in (job.inputs or {}).items()}
    return {key: value for key, value in values.items() if _has_value(value)}


def _has_value(value) -> bool:
    return value is not None and not (isinstance(value, Input) and value.path is None and value.default is None)


def plan(job, pipeline_inputs: dict[str, Any], component_for: Callable[[str], Any]) -> list[PlannedNode]:
    """The pipeline's nodes, checked, each after the nodes it reads from.

    ``pipeline_inputs`` are the pipeline's input values, pinned; ``component_for`` gives the component
    an ``azureml:name:version`` reference names.
    """
    _check_settings(job)
    if not job.jobs:
        raise LocalMLValidationError("The pipeline has no nodes: call at least one component inside the @dsl.pipeline function.")
    components = {name: _component(name, node, component_for) for name, node in job.jobs.items()}
    nodes = [_plan_node(name, node, components, job, pipeline_inputs) for name, node in job.jobs.items()]
    return _in_order(nodes)


def _check_settings(job) -> None:
    settings = job.settings
    datastore = str(settings.default_datastore or "workspaceblobstore").removeprefix("azureml:")
    if datastore != "workspaceblobstore":
        raise UnsupportedFeatureError(
            f"a pipeline default_datastore other than workspaceblobstore ('{datastore}')", "Leave it unset: outputs go to workspaceblobstore."
        )
    if settings.on_init or settings.on_finalize:
        raise UnsupportedFeatureError("pipeline on_init / on_finalize nodes yet")


def _component(name: str, node, component_for: Callable[[str], Any]) -> CommandComponent:
    if not isinstance(node, Command):
        raise UnsupportedFeatureError(
            f"pipeline node '{name}' of type {getattr(node, 'type', None) or type(node).__name__} yet",
            "Pipeline nodes run command components on localml today (load_component, ml_client.components.get, "
            "command(...)); sweep, AutoML, parallel, spark and pipeline-component nodes do not.",
        )
    component = node.component
    if isinstance(component, str):
        try:
            component = component_for(component)
        except (LocalMLValidationError, ResourceNotFoundError) as error:
            raise node_error(name, error) from None
    if not isinstance(component, CommandComponent):
        raise UnsupportedFeatureError(f"pipeline node '{name}' running a {type(component).__name__} yet", "Use a command component.")
    return component


def _plan_node(name: str, node: Command, components: dict, job, pipeline_inputs: dict) -> PlannedNode:
    component = components[name]
    planned = PlannedNode(name, node, component)
    given = node._build_inputs()
    unknown = sorted(set(given) - set(component.inputs))
    if unknown:
        raise LocalMLValidationError(
            f"Pipeline node '{name}' sets input '{unknown[0]}', which its component '{component.name}' does not declare "
            f"(declared: {', '.join(sorted(component.inputs)) or 'none'})."
        )
    for key, meta in component.inputs.items():
        value = _input_value(name, key, meta, given.get(key), components, job, pipeline_inputs)
        if value is _UNSET:
            if meta.default is not None:
                value = meta.default
            elif meta.optional:
                continue
            else:
                raise LocalMLValidationError(
                    f"Pipeline node '{name}': input '{key}' of component '{component.name}' is required and has no value. "
                    "Give it a value, or bind it to a pipeline input or to another node's output."
                )
        planned.inputs[key] = value
    given_outputs = node._build_outputs()
    for key, meta in component.outputs.items():
        path = getattr(given_outputs.get(key), "path", None)
        if isinstance(path, str) and "${{" in path:
            bound = _binding(path, f"output '{key}' of node '{name}'")["pipeline_output"]
            if bound is None or bound not in (job.outputs or {}):
                raise LocalMLValidationError(
                    f"Pipeline node '{name}': output '{key}' is bound to {path}; bind a node output to one of the "
                    f"pipeline's outputs, ${{{{parent.outputs.<name>}}}} (its outputs: {', '.join(sorted(job.outputs or {})) or 'none'})."
                )
            planned.pipeline_outputs[key] = bound
            path = job.outputs[bound].path
        planned.outputs[key] = Output(type="uri_folder" if meta.type == PATH_TYPE else meta.type, path=path)
    return planned


def _input_value(where: str, key: str, meta, value, components: dict, job, pipeline_inputs: dict) -> Any:
    """What input ``key`` of node ``where`` reads: a literal, an Input, a NodeOutputRef, or _UNSET."""
    path = value.path if isinstance(value, Input) else value
    if not (isinstance(path, str) and "${{" in path):
        return value if _has_value(value) else _UNSET
    match = _binding(path, f"input '{key}' of node '{where}'")
    if match["pipeline_output"]:
        raise LocalMLValidationError(f"Pipeline node '{where}': input '{key}' reads {path}, a pipeline output; read the node output bound to it.")
    if match["input"]:
        name = match["input"]
        if name not in (job.inputs or {}):
            raise LocalMLValidationError(
                f"Pipeline node '{where}': input '{key}' is bound to {path}, but the pipeline has "
                f"no input '{name}' (its inputs: {', '.join(sorted(job.inputs or {})) or 'none'})."
            )
        bound = pipeline_inputs.get(name, _UNSET)
        if bound is _UNSET and meta.default is None and not meta.optional:
            raise LocalMLValidationError(
                f"Pipeline node '{where}': input '{key}' is required and bound to {path}, but the pipeline input "
                f"'{name}' has no value. Pass it when calling the @dsl.pipeline function."
            )
        if isinstance(bound, Input):
            return Input(type=bound.type if meta.type == PATH_TYPE else meta.type, path=bound.path)
        return bound
    node, output = match["node"], match["output"]
    if node not in components:
        raise LocalMLValidationError(
            f"Pipeline node '{where}': input '{key}' reads {path}, but the pipeline has no node '{node}' "
            f"(its nodes: {', '.join(sorted(components))})."
        )
    if output not in components[node].outputs:
        raise LocalMLValidationError(
            f"Pipeline node '{where}': input '{key}' reads {path}, but node '{node}' has no output '{output}' "
            f"(its outputs: {', '.join(sorted(components[node].outputs)) or 'none'})."
        )
    if meta.type not in (*INPUT_TYPES, PATH_TYPE):
        raise LocalMLValidationError(
            f"Pipeline node '{where}': input '{key}' is of type {meta.type}, so it cannot read the output '{output}' of "
            f"node '{node}'. Declare it as one of {', '.join((*INPUT_TYPES, PATH_TYPE))}."
        )
    return NodeOutputRef(node, output)


def _binding(expression: str, what: str) -> re.Match:
    match = _BINDING.match(expression)
    if match is None:
        raise UnsupportedFeatureError(
            f"the pipeline expression '{expression}' ({what}) yet",
            "Bind an input or output as a whole: ${{parent.inputs.<name>}}, ${{parent.jobs.<node>.outputs.<name>}} or ${{parent.outputs.<name>}}.",
        )
    return match


def _in_order(nodes: list[PlannedNode]) -> list[PlannedNode]:
    ordered: list[PlannedNode] = []
    pending = list(nodes)
    while pending:
        done = {node.name for node in ordered}
        ready = [node for node in pending if set(node.depends_on) <= done]
        if not ready:
            raise LocalMLValidationError(
                f"Pipeline nodes {', '.join(node.name for node in pending)} can never start: their inputs read outputs "
                "in a cycle (a node that reads its own output, or nodes that read each other's). Break the cycle."
            )
        ordered += ready
        pending = [node for node in pending if node not in ready]
    return ordered


def node_error(node: str, error: Exception) -> Exception:
    """``error``, raised checking the command job of pipeline node ``node``, with the node named first."""
    message = f"Pipeline node '{node}': {error.message if isinstance(error, LocalMLValidationError) else error}"
    return ResourceNotFoundError(message) if isinstance(error, ResourceNotFoundError) else LocalMLValidationError(message)


def node_template(job, planned: PlannedNode, templates: dict[str, dict]) -> dict:
    """The command job the driver submits for ``planned``; ``templates`` holds those of the nodes it reads from.

    Its code, environment and data inputs are pinned by the checks (see ``pinned``) before it is stored.
    """
    node = planned.node
    name = f"{job.name}_{planned.name}"
    inputs, upstream = {}, []
    for key, value in planned.inputs.items():
        if isinstance(value, NodeOutputRef):
            upstream.append(key)
            read = templates[value.node]["outputs"][value.output]
            declared = planned.component.inputs[key].type
            value = {"type": read["type"] if declared == PATH_TYPE else declared, "path": read["path"]}
        inputs[key] = value
    return {
        "node": planned.name,
        "name": name,
        "depends_on": planned.depends_on,
        "command": planned.component.command,
        "code": planned.component._to_dict().get("code"),  # the dict form: a path made absolute, or azureml:<name>:<version>
        "environment": node.environment or planned.component.environment,
        "environment_variables": dict(node.environment_variables or {}),
        "compute": _without_prefix(node.compute or job.compute or job.settings.default_compute),
        "timeout": node.limits.timeout if node.limits else None,
        "display_name": node.display_name or planned.name,
        "tags": dict(node.tags or {}),
        "experiment_name": job.experiment_name,
        "inputs": inputs,
        "upstream": upstream,  # the inputs that read other nodes' outputs
        "outputs": {key: {"type": output.type, "path": output_uri(name, key, output)[0]} for key, output in planned.outputs.items()},
    }


def _without_prefix(reference: str | None) -> str | None:
    return reference.removeprefix("azureml:") if isinstance(reference, str) else reference


def node_job(template: dict, *, stand_ins: bool = False):
    """The command job of a node's template.

    With ``stand_ins`` (the checks at submission, when no node has run yet) an input that reads another
    node's output is given as its URI in a plain string: there is nothing at that URI to check yet.
    """
    inputs = {}
    for key, value in template["inputs"].items():
        if isinstance(value, dict):
            value = value["path"] if stand_ins and key in template["upstream"] else Input(type=value["type"], path=value["path"])
        inputs[key] = value
    job = command(
        name=template["name"],
        display_name=template["display_name"],
        command=template["command"],
        code=template["code"],
        environment=template["environment"],
        environment_variables=template["environment_variables"] or None,
        inputs=inputs,
        outputs={key: Output(type=output["type"], path=output["path"]) for key, output in template["outputs"].items()},
        compute=template["compute"],
        experiment_name=template["experiment_name"],
        tags={**template["tags"], NODE_TAG: template["node"]},
    )._to_job()
    if template["timeout"]:
        job.limits = CommandJobLimits(timeout=int(template["timeout"]))
    return job


def pinned(template: dict, spec: dict) -> dict:
    """``template`` with what the checks pinned (``spec`` is its command job as stored): uploaded code, the
    environment's name, data inputs as URIs. Literals keep their type (a stored spec turns True into 1)."""
    inputs = {}
    for key, value in template["inputs"].items():
        stored = spec["inputs"][key]
        if key in template["upstream"]:
            inputs[key] = value
        elif isinstance(stored, dict):
            inputs[key] = {"type": stored["type"], "path": stored["path"]}
        else:
            inputs[key] = value if isinstance(value, (int, float, str, bool)) else stored
    return {**template, "code": spec.get("code"), "environment": spec.get("environment"), "inputs": inputs}


def output_uris(nodes: list[PlannedNode], templates: dict[str, dict]) -> dict[str, dict]:
    """The pipeline's outputs: each is the output of the node bound to it, as ``{"type", "path"}``."""
    return {
        bound: templates[node.name]["outputs"][key] for node in nodes for key, bound in node.pipeline_outputs.items()
    }


def stored_spec(job, pipeline_inputs: dict[str, Any], templates: dict[str, dict]) -> dict:
    """The pipeline as stored: its inputs pinned, and each node's component code and data inputs as uploaded."""
    for output in (job.outputs or {}).values():
        if output.type == PATH_TYPE:  # the SDK's YAML form of a pipeline job has no such outputs: here they are folders
            output.type = "uri_folder"
    data = job._to_dict()
    for key, value in pipeline_inputs.items():
        data["inputs"][key] = {"type": value.type, "path": value.path} if isinstance(value, Input) else value
    for name, node in data["jobs"].items():
        template = templates[name]
        if isinstance(node.get("component"), dict) and template["code"]:
            node["component"]["code"] = template["code"]
        for key, value in (node.get("inputs") or {}).items():
            if isinstance(value, dict) and "${{" not in str(value.get("path")) and isinstance(template["inputs"].get(key), dict):
                node["inputs"][key] = template["inputs"][key]
    return data
