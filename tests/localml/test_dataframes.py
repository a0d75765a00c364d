"""Reading any data asset as a DataFrame: ml_client.data.to_dataframe."""

import pytest
from azure.ai.ml.entities import Data

from localml import LocalMLClient
from tests.conftest import REPO

SAMPLE = REPO / "examples" / "data" / "diabetes"


@pytest.fixture
def ml_client(tmp_path):
    return LocalMLClient(tmp_path / "ws")


def test_mltable_uri_file_and_plain_paths_read_as_the_same_table(ml_client):
    table = ml_client.data.create_or_update(Data(name="diabetes", path=str(SAMPLE), type="mltable"))
    csv = ml_client.data.create_or_update(Data(name="diabetes-csv", path=str(SAMPLE / "diabetes.csv"), type="uri_file"))
    from_table = ml_client.data.to_dataframe(f"azureml:{table.name}:{table.version}")
    from_csv = ml_client.data.to_dataframe(f"azureml:{csv.name}@latest")
    from_path = ml_client.data.to_dataframe(str(SAMPLE / "diabetes.csv"))
    assert from_table.shape == from_csv.shape == from_path.shape == (10000, 10)
    assert list(from_table.columns) == list(from_csv.columns)
    assert from_table["Diabetic"].sum() == from_csv["Diabetic"].sum()


def test_a_folder_without_mltable_is_not_a_table(ml_client, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="Cannot read"):
        ml_client.data.to_dataframe(str(folder))
