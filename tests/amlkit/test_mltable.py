"""Tests for amlkit.mltable: real MLTable folders written to tmp_path, no mocks."""

import pathlib
import shutil

import pandas as pd
import pytest

from amlkit.mltable import MLTableError, load_mltable, read_mltable_spec

DIABETES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "data" / "diabetes"


def make_table(folder, mltable, files=None):
    """Write the MLTable text and the data files {relative name: text} into folder; return folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLTable").write_text(mltable)
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


CSV_TABLE = "paths:\n  - file: ./data.csv\ntransformations:\n  - read_delimited:\n      delimiter: ','\n"


def csv_table(tmp_path, steps="", csv="a,b,c\n1,x,1.5\n2,y,2.5\n3,z,3.5\n"):
    return make_table(tmp_path, CSV_TABLE + steps, {"data.csv": csv})


# --------------------------------------------------------------------------- read_delimited

def test_csv_defaults_infer_types_and_accept_file_path(tmp_path):
    folder = csv_table(tmp_path)
    df = load_mltable(folder)
    assert list(df.columns) == ["a", "b", "c"]
    assert df["a"].dtype == "int64" and df["c"].dtype == "float64"
    assert df["b"].tolist() == ["x", "y", "z"]
    pd.testing.assert_frame_equal(load_mltable(str(folder / "MLTable")), df)


def test_real_sample_format_with_type_key_and_bare_reader(tmp_path):
    make_table(tmp_path, "type: mltable\n# comment\npaths:\n  - file: data.csv\ntransformations:\n  - read_delimited\n",
               {"data.csv": "a;b\n1;2\n"})
    assert load_mltable(tmp_path).columns.tolist() == ["a;b"]  # default delimiter is ','
    make_table(tmp_path, "paths: [{file: data.csv}]\ntransformations: [{read_delimited: {delimiter: ';'}}]\n")
    assert load_mltable(tmp_path).to_dict("list") == {"a": [1], "b": [2]}


def test_transformations_as_mapping_and_tab_delimiter(tmp_path):
    make_table(tmp_path, 'paths:\n  - file: d.tsv\ntransformations:\n  read_delimited:\n    delimiter: "\\t"\n  take: 1\n',
               {"d.tsv": "a\tb\n1\t2\n3\t4\n"})
    assert load_mltable(tmp_path).to_dict("list") == {"a": [1], "b": [2]}


def test_infer_column_types_false_reads_strings(tmp_path):
    make_table(tmp_path, "paths:\n  - file: d.csv\ntransformations:\n  - read_delimited: {infer_column_types: false}\n",
               {"d.csv": "a,b\n01,2.50\n"})
    assert load_mltable(tmp_path).iloc[0].tolist() == ["01", "2.50"]


def test_empty_fields_are_missing_unless_empty_as_string(tmp_path):
    csv = "a,b\nx,1\n,2\nNA,3\n"
    make_table(tmp_path, "paths:\n  - file: d.csv\ntransformations:\n  - read_delimited\n", {"d.csv": csv})
    df = load_mltable(tmp_path)
    assert pd.isna(df.loc[1, "a"]) and df.loc[2, "a"] == "NA"  # only empty fields are missing
    make_table(tmp_path, "paths:\n  - file: d.csv\ntransformations:\n  - read_delimited: {empty_as_string: true}\n")
    assert load_mltable(tmp_path)["a"].tolist() == ["x", "", "NA"]


def test_encoding_latin1_and_unknown_encoding(tmp_path):
    make_table(tmp_path, "paths:\n  - file: d.csv\ntransformations:\n  - read_delimited: {encoding: latin1}\n")
    (tmp_path / "d.csv").write_bytes("name\ncaf\u00e9\n".encode("latin-1"))
    assert load_mltable(tmp_path)["name"].tolist() == ["caf\u00e9"]
    make_table(tmp_path, "paths:\n  - file: d.csv\ntransformations:\n  - read_delimited: {encoding: klingon}\n")
    with pytest.raises(MLTableError, match=r"encoding.*klingon.*utf8"):
        load_mltable(tmp_path)


TWO_FILES = "paths:\n  - file: one.csv\n  - file: two.csv\ntransformations:\n  - read_delimited:\n      header: {}\n"


def test_header_all_files_same_headers_skips_each_header(tmp_path):
    make_table(tmp_path, TWO_FILES.format("all_files_same_headers"), {"one.csv": "a,b\n1,2\n", "two.csv": "a,b\n3,4\n"})
    assert load_mltable(tmp_path).to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    (tmp_path / "two.csv").write_text("a,c\n3,4\n")
    with pytest.raises(MLTableError, match=r"two\.csv.*all_files_different_headers"):
        load_mltable(tmp_path)


def test_header_all_files_different_headers_unions_columns(tmp_path):
    make_table(tmp_path, TWO_FILES.format("all_files_different_headers"),
               {"one.csv": "a,b\n1,2\n", "two.csv": "b,c\n3,4\n"})
    df = load_mltable(tmp_path)
    assert list(df.columns) == ["a", "b", "c"]
    assert df["b"].tolist() == [2, 3] and pd.isna(df.loc[1, "a"]) and pd.isna(df.loc[0, "c"])


def test_header_from_first_file_treats_later_first_lines_as_data(tmp_path):
    make_table(tmp_path, TWO_FILES.format("from_first_file"), {"one.csv": "a,b\n1,2\n", "two.csv": "3,4\n5,6\n"})
    assert load_mltable(tmp_path).to_dict("list") == {"a": [1, 3, 5], "b": [2, 4, 6]}


def test_header_no_header_names_columns(tmp_path):
    make_table(tmp_path, TWO_FILES.format("no_header"), {"one.csv": "1,2\n", "two.csv": "3,4\n"})
    assert load_mltable(tmp_path).to_dict("list") == {"Column1": [1, 3], "Column2": [2, 4]}


def test_unknown_header_value_is_rejected(tmp_path):
    make_table(tmp_path, TWO_FILES.format("first_row"), {"one.csv": "a\n1\n", "two.csv": "a\n2\n"})
    with pytest.raises(MLTableError, match=r"header.*no_header.*first_row"):
        read_mltable_spec(tmp_path)


# --------------------------------------------------------------------------- paths

def test_folder_path_reads_all_files_recursively_in_sorted_order(tmp_path):
    files = {"data/z.csv": "v\n4\n", "data/a.csv": "v\n1\n", "data/sub/b.csv": "v\n3\n", "data/m.csv": "v\n2\n"}
    make_table(tmp_path, "paths:\n  - folder: ./data\ntransformations:\n  - read_delimited\n", files)
    assert load_mltable(tmp_path)["v"].tolist() == [1, 2, 3, 4]


def test_folder_dot_does_not_read_the_mltable_file(tmp_path):
    make_table(tmp_path, "paths:\n  - folder: .\ntransformations:\n  - read_delimited\n", {"x.csv": "v\n1\n"})
    assert load_mltable(tmp_path)["v"].tolist() == [1]


def test_pattern_paths_concatenate_in_entry_order(tmp_path):
    files = {"p/x1.csv": "v\n1\n", "p/x2.csv": "v\n2\n", "p/deep/x3.csv": "v\n3\n", "p/y.txt": "v\n9\n", "q.csv": "v\n0\n"}
    mltable = "paths:\n  - pattern: p/**/*.csv\n  - file: q.csv\ntransformations:\n  - read_delimited\n"
    make_table(tmp_path, mltable, files)
    assert load_mltable(tmp_path)["v"].tolist() == [3, 1, 2, 0]


def test_pattern_matching_nothing_names_the_entry(tmp_path):
    make_table(tmp_path, "paths:\n  - pattern: '*.parquet'\ntransformations:\n  - read_parquet\n")
    with pytest.raises(MLTableError, match=r"paths\[0\]\.pattern.*matched no files"):
        load_mltable(tmp_path)


def test_missing_file_and_file_uri(tmp_path):
    data = tmp_path / "elsewhere" / "d.csv"
    make_table(tmp_path / "t", f"paths:\n  - file: file://{data}\ntransformations:\n  - read_delimited\n")
    with pytest.raises(MLTableError, match=r"paths\[0\]\.file.*is not an existing file"):
        load_mltable(tmp_path / "t")
    data.parent.mkdir()
    data.write_text("v\n7\n")
    assert load_mltable(tmp_path / "t")["v"].tolist() == [7]


def test_include_path_column(tmp_path):
    mltable = "paths:\n  - file: one.csv\n  - file: two.csv\ntransformations:\n  - read_delimited: {include_path_column: true}\n"
    make_table(tmp_path, mltable, {"one.csv": "v\n1\n", "two.csv": "v\n2\n"})
    df = load_mltable(tmp_path)
    assert list(df.columns) == ["Path", "v"]
    assert [pathlib.Path(p) for p in df["Path"]] == [(tmp_path / "one.csv").resolve(), (tmp_path / "two.csv").resolve()]


def test_azureml_uri_resolved_through_resolve_uri(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "y.csv").write_text("v\n5\n")
    uri = "azureml://datastores/x/paths/y.csv"
    make_table(tmp_path / "t", f"paths:\n  - file: {uri}\ntransformations:\n  - read_delimited\n")
    asked = []

    def resolve(u):
        asked.append(u)
        return store / u.rsplit("/", 1)[1]

    assert load_mltable(tmp_path / "t", resolve_uri=resolve)["v"].tolist() == [5]
    assert asked == [uri]
    with pytest.raises(MLTableError, match=r"paths\[0\]\.file.*azureml://.*remote paths need a workspace.*resolve_uri"):
        load_mltable(tmp_path / "t")


# --------------------------------------------------------------------------- parquet and json lines

def test_read_parquet_with_path_column(tmp_path):
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(tmp_path / "one.parquet")
    pd.DataFrame({"a": [3], "b": ["z"]}).to_parquet(tmp_path / "two.parquet")
    make_table(tmp_path, "paths:\n  - pattern: '*.parquet'\ntransformations:\n  - read_parquet:\n      include_path_column: true\n")
    df = load_mltable(tmp_path)
    assert df[["a", "b"]].to_dict("list") == {"a": [1, 2, 3], "b": ["x", "y", "z"]}
    assert [pathlib.Path(p).name for p in df["Path"]] == ["one.parquet", "one.parquet", "two.parquet"]


JSONL = '{"a": 1, "b": "x"}\n\n{"a": 2, "b": "y"}\nnot json\n[1, 2]\n'


def test_read_json_lines_invalid_lines_error_by_default(tmp_path):
    make_table(tmp_path, "paths:\n  - file: d.jsonl\ntransformations:\n  - read_json_lines\n", {"d.jsonl": JSONL})
    with pytest.raises(MLTableError, match=r"d\.jsonl line 4.*invalid_lines: drop"):
        load_mltable(tmp_path)


def test_read_json_lines_invalid_lines_drop(tmp_path):
    make_table(tmp_path, "paths:\n  - file: d.jsonl\ntransformations:\n  - read_json_lines:\n      invalid_lines: drop\n",
               {"d.jsonl": JSONL})
    assert load_mltable(tmp_path).to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_read_json_lines_round_trips_pandas_output(tmp_path):
    expected = pd.DataFrame({"a": [1, 2], "f": [0.5, 1.5], "s": ["u", "v"]})
    expected.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    make_table(tmp_path, "paths:\n  - file: d.jsonl\ntransformations:\n  - read_json_lines: {encoding: utf8}\n")
    pd.testing.assert_frame_equal(load_mltable(tmp_path), expected)


# --------------------------------------------------------------------------- transformations after the read

def test_take_and_skip_in_order(tmp_path):
    df = load_mltable(csv_table(tmp_path, "  - skip: 1\n  - take: 1\n"))
    assert df["a"].tolist() == [2] and df.index.tolist() == [0]
    assert load_mltable(csv_table(tmp_path, "  - take: 2\n  - skip: 1\n"))["a"].tolist() == [2]


def test_take_random_sample_is_seeded_and_probability_checked(tmp_path):
    csv = "v\n" + "\n".join(map(str, range(200))) + "\n"
    steps = "  - take_random_sample: {probability: 0.5, seed: 7}\n"
    first, second = load_mltable(csv_table(tmp_path, steps, csv)), load_mltable(tmp_path)
    pd.testing.assert_frame_equal(first, second)
    assert 50 < len(first) < 150 and first["v"].is_monotonic_increasing
    csv_table(tmp_path, "  - take_random_sample: {probability: 1.5}\n")
    with pytest.raises(MLTableError, match=r"take_random_sample.*probability"):
        load_mltable(tmp_path)


def test_keep_and_drop_columns_list_or_string(tmp_path):
    assert load_mltable(csv_table(tmp_path, "  - keep_columns: [c, a]\n")).columns.tolist() == ["c", "a"]
    assert load_mltable(csv_table(tmp_path, "  - keep_columns: b\n")).columns.tolist() == ["b"]
    assert load_mltable(csv_table(tmp_path, "  - drop_columns: [a, b]\n")).columns.tolist() == ["c"]
    assert load_mltable(csv_table(tmp_path, "  - drop_columns: c\n")).columns.tolist() == ["a", "b"]


@pytest.mark.parametrize("step", ["keep_columns: [a, nope, Zed]", "drop_columns: nope", "convert_column_types:\n"
                                  "      - columns: [a, nope]\n        column_type: float"])
def test_unknown_columns_are_named_with_available_ones(tmp_path, step):
    csv_table(tmp_path, f"  - {step}\n")
    with pytest.raises(MLTableError) as info:
        load_mltable(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MLTable") in message and "transformations[1]" in message
    assert "'nope'" in message and "available columns: ['a', 'b', 'c']" in message


CONVERT = """  - convert_column_types:
      - columns: [n, i]
        column_type: int
      - columns: f
        column_type: float
      - columns: flag
        column_type:
          boolean:
            true_values: ['yes', 'Y']
            false_values: ['no']
      - columns: when
        column_type:
          datetime:
            formats: ['%d/%m/%Y', '%Y-%m-%d']
      - columns: s
        column_type: string
"""


def test_convert_column_types(tmp_path):
    csv = "n,i,f,flag,when,s\n1,1.0,1,yes,31/12/2023,7\n2,,2,no,2024-01-02,8\n3,3,3.5,Y,,\n"
    df = load_mltable(csv_table(tmp_path, CONVERT, csv))
    assert df["n"].dtype == "int64" and df["n"].tolist() == [1, 2, 3]
    assert str(df["i"].dtype) == "Int64" and df["i"].tolist()[0] == 1 and pd.isna(df["i"][1])
    assert df["f"].dtype == "float64" and df["f"].tolist() == [1.0, 2.0, 3.5]
    assert df["flag"].dtype == bool and df["flag"].tolist() == [True, False, True]
    assert df["when"].tolist()[:2] == [pd.Timestamp("2023-12-31"), pd.Timestamp("2024-01-02")] and pd.isna(df["when"][2])
    assert df["s"].tolist()[:2] == ["7", "8"] and pd.isna(df["s"][2])


@pytest.mark.parametrize("column_type, csv, bad", [
    ("int", "v\n1\n2.5\n", "2.5"), ("float", "v\n1\nabc\n", "abc"),
    ("{boolean: {true_values: ['yes'], false_values: ['no']}}", "v\nyes\nmaybe\n", "maybe"),
    ("{datetime: {formats: ['%Y-%m-%d']}}", "v\n2024-01-02\n02/01/2024\n", "02/01/2024")])
def test_convert_column_types_reports_unconvertible_values(tmp_path, column_type, csv, bad):
    csv_table(tmp_path, f"  - convert_column_types:\n      - {{columns: v, column_type: {column_type}}}\n", csv)
    with pytest.raises(MLTableError, match=rf"column 'v'.*{bad}"):
        load_mltable(tmp_path)


def test_unknown_column_type_is_rejected(tmp_path):
    csv_table(tmp_path, "  - convert_column_types:\n      - {columns: a, column_type: decimal}\n")
    with pytest.raises(MLTableError, match=r"column_type.*decimal.*boolean"):
        read_mltable_spec(tmp_path)


@pytest.mark.parametrize("step, name", [("filter: 'col(\"a\") > 1'", "filter"),
                                        ("extract_columns_from_partition_format: '{x}/'", "extract_columns_from_partition_format"),
                                        ("read_delta_lake", "read_delta_lake")])
def test_unsupported_transformation_raises_not_implemented(tmp_path, step, name):
    csv_table(tmp_path, f"  - {step}\n")
    with pytest.raises(NotImplementedError, match=rf"localml does not support the '{name}'.*read_delimited.*convert_column_types"):
        load_mltable(tmp_path)


# --------------------------------------------------------------------------- spec validation

def test_read_mltable_spec_returns_the_yaml(tmp_path):
    spec = read_mltable_spec(csv_table(tmp_path, "  - take: 2\n"))
    assert spec == {"paths": [{"file": "./data.csv"}],
                    "transformations": [{"read_delimited": {"delimiter": ","}}, {"take": 2}]}


def test_missing_mltable_file_says_a_folder_is_expected(tmp_path):
    with pytest.raises(MLTableError, match=r"No MLTable file at .*folder containing a YAML file named 'MLTable'"):
        read_mltable_spec(tmp_path)
    with pytest.raises(MLTableError, match="No MLTable file"):
        load_mltable(tmp_path / "absent")


@pytest.mark.parametrize("text, match", [
    ("", r"is empty"), ("paths: [file: x\n", r"not valid YAML"), ("- just\n- a list\n", r"empty or not a YAML mapping"),
    ("paths: [{file: x}]\ntransformations: [read_parquet]\ncolumns: [a]\n", r"'columns'.*unknown top-level key"),
    ("type: dataset\npaths: [{file: x}]\ntransformations: [read_parquet]\n", r"'type'.*must be 'mltable'"),
    ("transformations: [read_parquet]\n", r"'paths'.*non-empty list"),
    ("paths: [{file: x, folder: y}]\ntransformations: [read_parquet]\n", r"'paths\[0\]'.*exactly one of"),
    ("paths: [{file: x}]\n", r"'transformations'.*read transformation"),
    ("paths: [{file: x}]\ntransformations: [{take: 1}]\n", r"'transformations\[0\]\.take'.*must come first"),
    ("paths: [{file: x}]\ntransformations: [read_parquet, read_parquet]\n", r"'transformations\[1\]\.read_parquet'.*only once"),
    ("paths: [{file: x}]\ntransformations: [{read_parquet: {delimiter: ','}}]\n", r"read_parquet\.delimiter.*unknown option"),
    ("paths: [{file: x}]\ntransformations: [{read_delimited: {empty_as_string: yes}}]\n", r"empty_as_string.*true or false"),
    ("paths: [{file: x}]\ntransformations: [read_parquet, {take: -1}]\n", r"take.*non-negative"),
])
def test_invalid_specs_name_file_and_key(tmp_path, text, match):
    make_table(tmp_path, text)
    with pytest.raises(MLTableError, match=match) as info:
        read_mltable_spec(tmp_path)
    assert str(tmp_path / "MLTable") in str(info.value)


# --------------------------------------------------------------------------- the DP-100 sample

@pytest.mark.skipif(not (DIABETES / "MLTable").is_file(), reason="examples/data/diabetes is not in this checkout")
def test_diabetes_sample(tmp_path):
    for name in ("MLTable", "diabetes.csv"):
        shutil.copyfile(DIABETES / name, tmp_path / name)
    df = load_mltable(tmp_path)
    assert df.shape == (10000, 10)
    assert {"PatientID", "Diabetic"} <= set(df.columns) and set(df["Diabetic"]) == {0, 1}
