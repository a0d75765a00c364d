"""Promotion: the rule (gate passed, strictly better than the champion) and the champion tag moving between
versions, on a real localml workspace; the retrain flow itself runs end to end in tests/e2e/test_deployments.py."""

from __future__ import annotations

import pytest
from prefect.logging import disable_run_logger

from localml import LocalMLClient
from tasks.evaluation import best_candidate, promotion_decision
from tasks.models import ModelRef, find_champion, promote_model, resolve_model


@pytest.mark.parametrize("passed, metric, candidate, champion, promote, words", [
    (True, "AUC_weighted", 0.96, None, True, "there was no champion"),
    (True, "AUC_weighted", 0.96, 0.95, True, "beats the champion: AUC_weighted 0.9600 against"),
    (True, "AUC_weighted", 0.95, 0.95, False, "does not beat the champion"),
    (True, "normalized_root_mean_squared_error", 0.10, 0.12, True, "beats the champion"),
    (True, "normalized_root_mean_squared_error", 0.12, 0.10, False, "does not beat the champion"),
    (False, "AUC_weighted", 0.99, 0.95, False, "failed the review (AUC too low)"),
])
def test_a_candidate_is_promoted_only_when_it_passes_and_strictly_beats_the_champion(passed, metric, candidate, champion, promote, words):
    decided, why = promotion_decision.fn(passed, ["AUC too low"], metric, candidate, "azureml:m:1" if champion else None, champion)
    assert decided == promote and words in why


def test_the_champion_tag_moves_to_the_promoted_version_and_at_champion_names_it(tmp_path, monkeypatch):
    from azure.ai.ml.entities import Model

    monkeypatch.setenv("LOCALML_ROOT", str(tmp_path / "ws"))
    client = LocalMLClient(tmp_path / "ws")
    refs = []
    for number in (1, 2):
        folder = tmp_path / f"model-{number}"
        folder.mkdir()
        (folder / "weights.bin").write_text(str(number))
        model = client.models.create_or_update(Model(name="clf", path=str(folder), type="custom_model", tags={"round": str(number)}))
        refs.append(ModelRef(name=model.name, version=model.version, type="custom_model"))
    assert find_champion.fn("local", "clf") is None
    with pytest.raises(ValueError, match="has no version tagged champion"):
        resolve_model.fn("local", "azureml:clf@champion")

    with disable_run_logger():  # the tasks' own functions, outside a flow run
        promote_model.fn("local", refs[0], None, {"promoted_because": "first"})
        assert resolve_model.fn("local", "azureml:clf@champion").version == "1"
        promote_model.fn("local", refs[1], refs[0], {"promoted_because": "better"})
    assert resolve_model.fn("local", "azureml:clf@champion").version == "2"
    first, second = (client.models.get("clf", version=v).tags for v in ("1", "2"))
    assert first == {"round": "1", "promoted_because": "first", "champion": "false", "replaced_by": "azureml:clf:2"}
    assert second == {"round": "2", "promoted_because": "better", "champion": "true"}


def test_the_candidate_put_forward_passed_its_review_and_scores_best():
    assert best_candidate([True, True], [0.91, 0.95], "AUC_weighted") == 1
    assert best_candidate([True, False], [0.91, 0.99], "AUC_weighted") == 0  # a failed review never goes forward first
    assert best_candidate([True, True], [0.12, 0.10], "normalized_root_mean_squared_error") == 1
    assert best_candidate([False, False], [0.80, 0.82], "AUC_weighted") == 1
