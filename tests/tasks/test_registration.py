"""``register_once``: runs of one spec that register at the same instant end with one active version, and every one
of them is given that version; the duplicates the race made are archived, not left beside it."""

from __future__ import annotations

import pytest
from azure.ai.ml.entities import Data, Environment, Model

from localml import LocalMLClient
from tasks.registration import register_once
from tests.concurrency import meet_at_the_catalog

RUNS_AT_ONCE = 4


def model(folder):
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_text("w")
    return Model(name="clf", path=str(folder / "model"), type="custom_model")


def data(folder):
    (folder / "rows.csv").write_text("a,b\n1,2\n")
    return Data(name="rows", path=str(folder / "rows.csv"), type="uri_file")


def environment(folder):
    return Environment(name="env", image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04")


@pytest.mark.parametrize(("group", "entity"), [("models", model), ("data", data), ("environments", environment)])
def test_runs_registering_the_same_thing_at_once_end_with_one_active_version(group, entity, tmp_path):
    client = LocalMLClient(tmp_path / "ws")
    operations = getattr(client, group)
    entities = [entity_of(entity, tmp_path, i) for i in range(RUNS_AT_ONCE)]
    outcomes = meet_at_the_catalog(
        client._workspace.catalog.path, [lambda e=e: register_once(operations, e, "d1") for e in entities]
    )
    assert all(isinstance(outcome, tuple) for outcome in outcomes), outcomes
    assert {found.version for found, _ in outcomes} == {"1"}, "every run is given the earliest version"
    assert sorted(created for _, created in outcomes) == [False] * (RUNS_AT_ONCE - 1) + [True]
    name = outcomes[0][0].name
    assert [v.version for v in operations.list(name=name)] == ["1"]
    archived = [v.version for v in operations.list(name=name, list_view_type="ArchivedOnly")]
    assert sorted(archived) == [str(n) for n in range(2, RUNS_AT_ONCE + 1)], "the duplicates are archived"
    assert register_once(operations, entity_of(entity, tmp_path, "later"), "d1")[0].version == "1"
    assert register_once(operations, entity_of(entity, tmp_path, "other"), "d2")[0].version == str(RUNS_AT_ONCE + 1)


def entity_of(make, tmp_path, key):
    """The entity a run registers; each run's differs in a tag (its run), as on Azure, where every create of a
    version-less asset makes a new version."""
    folder = tmp_path / f"source-{key}"
    folder.mkdir()
    entity = make(folder)
    entity.tags = {"run": str(key)}
    return entity
