"""What tasks/batch.py reads and checks without a workspace: a batch job's predictions file, the input to score."""

import pytest

from tasks.batch import batch_input_type, check_batch_input, read_predictions


def test_a_batch_job_s_predictions_file_is_read_with_or_without_a_header(tmp_path):
    (tmp_path / "azure.csv").write_text("0,1,/mnt/inputs/patient-data-0.csv\n1,0,/mnt/inputs/patient-data-0.csv\n")
    (tmp_path / "header.csv").write_text("row,prediction,file\n0,1,patient-data-3.csv\n")
    assert read_predictions(tmp_path / "azure.csv") == [
        {"file": "patient-data-0.csv", "row": "0", "prediction": "1"}, {"file": "patient-data-0.csv", "row": "1", "prediction": "0"}]
    assert read_predictions(tmp_path / "header.csv") == [{"file": "patient-data-3.csv", "row": "0", "prediction": "1"}]


def test_the_input_to_score_is_a_folder_of_files_a_file_an_asset_reference_or_a_uri(tmp_path):
    (tmp_path / "day" / ".hidden").mkdir(parents=True)
    (tmp_path / "day" / ".hidden" / "notes.csv").write_text("x\n")
    with pytest.raises(ValueError, match="has no files to score"):  # hidden files are not scored
        check_batch_input(str(tmp_path / "day"))
    (tmp_path / "day" / "patients.csv").write_text("Age\n30\n")
    assert check_batch_input(str(tmp_path / "day")) == str(tmp_path / "day")
    assert batch_input_type(str(tmp_path / "day")) == "uri_folder"
    assert batch_input_type(str(tmp_path / "day" / "patients.csv")) == "uri_file"
    assert check_batch_input("azureml:patient-data@latest") == "azureml:patient-data@latest"
    assert check_batch_input("azureml://datastores/workspaceblobstore/paths/patients/") == "azureml://datastores/workspaceblobstore/paths/patients/"
    assert batch_input_type("azureml:patient-data:1") == "uri_folder"
