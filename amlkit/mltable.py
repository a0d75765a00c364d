"""Read Azure Machine Learning ``MLTable`` files into pandas, without Azure's ``mltable`` package.

An MLTable is a folder holding a YAML file named ``MLTable`` (``paths:`` where the data is,
``transformations:`` how to read it); ``load_mltable("examples/data/diabetes")`` returns a DataFrame.

Implemented subset of https://learn.microsoft.com/azure/machine-learning/reference-yaml-mltable:
``file`` / ``folder`` / ``pattern`` paths, then one read transformation (``read_delimited``,
``read_parquet`` or ``read_json_lines``) followed by any of ``take``, ``skip``,
``take_random_sample``, ``keep_columns``, ``drop_columns`` and ``convert_column_types``.
Other transformations (``filter``, ``read_delta_lake``, ``extract_columns_from_partition_format``)
raise ``NotImplementedError``. Choices made where Azure is loose or unspecified:

* only empty CSV fields are missing values; text such as ``NA`` or ``null`` stays text;
* ``include_path_column`` adds ``Path`` as the first column, holding the local file path;
* ``folder:`` reads files recursively in sorted order, never the ``MLTable`` file itself;
* YAML booleans are only ``true``/``false`` (YAML 1.2), so ``true_values: [yes]`` means the text;
* converting to ``string`` writes whole floats without ``.0`` (pandas reads ints with gaps as floats).
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Union
from urllib.parse import unquote

import numpy as np
import pandas as pd
import yaml

__all__ = ["MLTableError", "load_mltable", "read_mltable_spec"]

TOP_LEVEL_KEYS = ("paths", "transformations", "type", "metadata", "traits", "$schema")
PATH_KINDS = ("file", "folder", "pattern")
ENCODINGS = {"utf8": "utf-8", "utf8bom": "utf-8-sig", "ascii": "ascii", "latin1": "latin-1",
             "iso88591": "iso-8859-1", "windows1252": "cp1252", "utf16": "utf-16", "utf32": "utf-32"}
READERS = {  # read transformation -> {option: default}
    "read_delimited": {"delimiter": ",", "encoding": "utf8", "header": "all_files_same_headers",
                       "empty_as_string": False, "include_path_column": False,
                       "infer_column_types": True, "support_multi_line": False},
    "read_parquet": {"include_path_column": False},
    "read_json_lines": {"encoding": "utf8", "include_path_column": False, "invalid_lines": "error"},
}
CHOICES = {"header": ("all_files_same_headers", "all_files_different_headers", "from_first_file", "no_header"),
           "invalid_lines": ("error", "drop")}
STEPS = ("take", "skip", "take_random_sample", "keep_columns", "drop_columns", "convert_column_types")
COLUMN_TYPES = {"int": (), "float": (), "string": (), "datetime": ("formats",),
                "boolean": ("true_values", "false_values")}
TRUE_TEXT, FALSE_TEXT = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}


class MLTableError(ValueError):
    """An MLTable file, one of its paths or one of its transformations is invalid."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: ``yes``/``no``/``on``/``off`` stay strings."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {c: [r for r in rs if r[0] != _BOOL]
                                   for c, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _err(src: Path, key: str, message: str) -> MLTableError:
    return MLTableError(f"MLTable file {src}, key '{key}': {message}")


# ------------------------------------------------------------------------------------ the spec

def read_mltable_spec(path: Union[str, os.PathLike]) -> dict:
    """Parse and validate the MLTable at ``path`` and return its YAML content as a dict.

    ``path`` is a folder containing a file named ``MLTable``, or that file. Raises MLTableError
    for invalid content and NotImplementedError for transformations localml does not support.
    """
    return _parse(path)[1]


def _parse(path: Union[str, os.PathLike]) -> tuple[Path, dict, list]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path of an MLTable folder, got {type(path).__name__}.")
    src = Path(path).expanduser().resolve()
    src = src / "MLTable" if src.is_dir() else src
    if not src.is_file():
        raise MLTableError(f"No MLTable file at {src}: expected a folder containing a YAML file named 'MLTable' "
                           "(or the path of that file). Check the path, or create the MLTable file.")
    try:
        spec = yaml.load(src.read_text(encoding="utf-8"), Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MLTableError(f"MLTable file {src} is not valid YAML ({exc}). Fix the syntax; see "
                           "https://learn.microsoft.com/azure/machine-learning/reference-yaml-mltable") from None
    if not isinstance(spec, dict) or not spec:
        raise MLTableError(f"MLTable file {src} is empty or not a YAML mapping (got {type(spec).__name__}). "
                           "It needs at least the keys 'paths' and 'transformations'.")
    unknown = [str(k) for k in spec if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise _err(src, unknown[0], f"unknown top-level key(s) {unknown}; allowed keys are {list(TOP_LEVEL_KEYS)}.")
    if spec.get("type", "mltable") != "mltable":
        raise _err(src, "type", f"must be 'mltable', got {spec['type']!r}. Fix or remove the key.")
    paths = spec.get("paths")
    if not isinstance(paths, list) or not paths:
        raise _err(src, "paths", f"must be a non-empty list such as '- file: ./data.csv', got {paths!r}.")
    for i, entry in enumerate(paths):
        if not (isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in PATH_KINDS):
            raise _err(src, f"paths[{i}]", f"each entry needs exactly one of {list(PATH_KINDS)}, got {entry!r}. "
                                           "Example: '- folder: ./data'.")
        (kind, value), = entry.items()
        if not isinstance(value, str) or not value.strip():
            raise _err(src, f"paths[{i}].{kind}", f"must be a non-empty string, got {value!r}.")
    return src, spec, _parse_transformations(src, spec.get("transformations"))


def _parse_transformations(src: Path, raw: Any) -> list:
    """Validate the transformations and normalise them to ``[(key, name, options)]``."""
    entries = [{k: v} for k, v in raw.items()] if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise _err(src, "transformations", "must be a non-empty list starting with a read transformation, "
                                           f"e.g. '- read_delimited: {{delimiter: \",\"}}'; got {raw!r}.")
    steps = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and len(entry) == 1:
            (name, opts), = entry.items()
        elif isinstance(entry, str):
            name, opts = entry, None
        else:
            raise _err(src, f"transformations[{i}]", f"must be a transformation name, optionally mapped to its "
                                                     f"options, e.g. '- take: 10'; got {entry!r}.")
        key = f"transformations[{i}].{name}"
        if name not in READERS and name not in STEPS:
            raise NotImplementedError(
                f"MLTable file {src}, key '{key}': localml does not support the '{name}' transformation. "
                f"Supported: {', '.join([*READERS, *STEPS])}. Remove it and do that step in pandas after loading.")
        if (i == 0) != (name in READERS):
            raise _err(src, key, f"a read transformation ({', '.join(READERS)}) must come first, and only once.")
        check = _reader_options if i == 0 else _step_options
        steps.append((key, name, check(src, key, name, opts)))
    return steps


def _reader_options(src: Path, key: str, name: str, opts: Any) -> dict:
    opts = {} if opts is None else opts
    if not isinstance(opts, dict):
        raise _err(src, key, f"options must be a mapping such as {{include_path_column: true}}, got {opts!r}.")
    unknown = [str(k) for k in opts if k not in READERS[name]]
    if unknown:
        raise _err(src, f"{key}.{unknown[0]}", f"unknown option(s) {unknown}; {name} accepts {list(READERS[name])}.")
    opts = {**READERS[name], **opts}
    for opt, value in opts.items():
        if isinstance(READERS[name][opt], bool) and not isinstance(value, bool):
            raise _err(src, f"{key}.{opt}", f"must be true or false, got {value!r}.")
        if opt in CHOICES and value not in CHOICES[opt]:
            raise _err(src, f"{key}.{opt}", f"must be one of {list(CHOICES[opt])}, got {value!r}.")
    if "encoding" in opts:
        encoding = re.sub(r"[-_ ]", "", str(opts["encoding"]).lower())  # also accept 'utf-8', 'ISO-8859-1'
        if encoding not in ENCODINGS:
            raise _err(src, f"{key}.encoding", f"unknown encoding {opts['encoding']!r}; use one of {[*ENCODINGS]}.")
        opts["encoding"] = ENCODINGS[encoding]
    if "delimiter" in opts and not (isinstance(opts["delimiter"], str) and opts["delimiter"]):
        raise _err(src, f"{key}.delimiter", f"must be a non-empty string such as ','; got {opts['delimiter']!r}.")
    return opts


def _step_options(src: Path, key: str, name: str, opts: Any) -> Any:
    if name in ("take", "skip"):
        if not isinstance(opts, int) or isinstance(opts, bool) or opts < 0:
            raise _err(src, key, f"must be a non-negative whole number of rows, e.g. '{name}: 100'; got {opts!r}.")
        return opts
    if name == "take_random_sample":
        p, seed = (opts.get("probability"), opts.get("seed")) if isinstance(opts, dict) else (None, None)
        if (not isinstance(opts, dict) or set(opts) - {"probability", "seed"} or isinstance(p, bool)
                or not isinstance(p, (int, float)) or not 0 < p <= 1
                or (seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)))):
            raise _err(src, key, "must be {probability: p, seed: s} with 0 < p <= 1 and an optional integer "
                                 f"seed; got {opts!r}.")
        return {"probability": float(p), "seed": seed}
    if name in ("keep_columns", "drop_columns"):
        return _names(src, key, opts)
    entries = [opts] if isinstance(opts, dict) else opts  # convert_column_types
    if not isinstance(entries, list) or not entries:
        raise _err(src, key, f"must be a list of {{columns: ..., column_type: ...}} entries, got {opts!r}.")
    converts = []
    for j, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"columns", "column_type"}:
            raise _err(src, f"{key}[{j}]", f"needs exactly the keys 'columns' and 'column_type', got {entry!r}.")
        converts.append((_names(src, f"{key}[{j}].columns", entry["columns"]),
                         *_column_type(src, f"{key}[{j}].column_type", entry["column_type"])))
    return converts


def _names(src: Path, key: str, value: Any) -> list:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _err(src, key, f"must be a column name or a list of column names, got {value!r}.")
    return list(dict.fromkeys(names))


def _column_type(src: Path, key: str, value: Any) -> tuple[str, dict]:
    name, params = (value, {}) if isinstance(value, str) else (None, None)
    if isinstance(value, dict) and len(value) == 1:
        (name, params), = value.items()
    if name not in COLUMN_TYPES:
        raise _err(src, key, f"unsupported column_type {value!r}; localml supports {list(COLUMN_TYPES)}, also as "
                             "{datetime: {formats: [...]}} or {boolean: {true_values: [...], false_values: [...]}}.")
    params = {} if params is None else params
    if not isinstance(params, dict) or set(params) - set(COLUMN_TYPES[name]):
        raise _err(src, key, f"{name} accepts a mapping with keys {list(COLUMN_TYPES[name])}, got {params!r}.")
    params = {k: [v] if isinstance(v, str) else v for k, v in params.items()}  # formats: '%Y' is one format
    params = {k: [str(x) for x in v] if isinstance(v, list) else v for k, v in params.items()}
    for opt in {"formats", "true_values", "false_values"} & set(params):
        if not isinstance(params[opt], list) or not params[opt]:
            raise _err(src, f"{key}.{name}.{opt}", f"must be a non-empty list, got {params[opt]!r}.")
    if ("true_values" in params) != ("false_values" in params):
        raise _err(src, f"{key}.boolean", "give both true_values and false_values, or neither.")
    return name, params


# ------------------------------------------------------------------------------------ loading

def load_mltable(path: Union[str, os.PathLike], resolve_uri: Optional[Callable[[str], Path]] = None) -> pd.DataFrame:
    """Read the MLTable at ``path`` (a folder containing ``MLTable``, or that file) into a DataFrame.

    ``resolve_uri`` maps remote URIs in ``paths:`` (``azureml://...``, ``https://...``) to local
    paths; without it such URIs raise MLTableError. Relative paths are relative to the MLTable folder.
    """
    if resolve_uri is not None and not callable(resolve_uri):
        raise TypeError(f"resolve_uri must be None or a callable str -> pathlib.Path, got {resolve_uri!r}.")
    src, spec, steps = _parse(path)
    files = [f for i, entry in enumerate(spec["paths"]) for f in _files(src, i, entry, resolve_uri)]
    (key, reader, opts), *rest = steps
    df = _read(src, key, reader, opts, files)
    for key, name, opts in rest:
        df = _apply(src, key, name, opts, df).reset_index(drop=True)
    return df


def _files(src: Path, i: int, entry: dict, resolve_uri: Optional[Callable]) -> list[Path]:
    (kind, value), = entry.items()
    key = f"paths[{i}].{kind}"
    if "://" in value and not value.lower().startswith("file://"):
        if resolve_uri is None:
            raise _err(src, key, f"{value!r} is a remote URI, and remote paths need a workspace: pass resolve_uri="
                                 "<callable mapping the URI to a local path>, or copy the data next to the MLTable.")
        resolved = resolve_uri(value)
        if not isinstance(resolved, (str, os.PathLike)):
            raise _err(src, key, f"resolve_uri returned {resolved!r} for {value!r}; it must return a local path.")
        target, shown = Path(resolved).expanduser(), f"{value!r} (resolved to {resolved})"
        pattern = str(target)
    else:
        local = os.path.expanduser(unquote(value[len("file://"):]) if value.lower().startswith("file://") else value)
        target, shown = src.parent / local, repr(value)
        pattern = local if os.path.isabs(local) else os.path.join(glob.escape(str(src.parent)), local)
    if kind == "file":
        if not target.is_file():
            raise _err(src, key, f"{shown} is not an existing file ({target}); fix the path or use 'folder:'.")
        return [target]
    if kind == "folder":
        if not target.is_dir():
            raise _err(src, key, f"{shown} is not an existing folder ({target}); fix the path or use 'file:'.")
        matched = sorted(p for p in target.rglob("*") if p.is_file() and p.resolve() != src)
    else:
        found = map(Path, glob.glob(pattern, recursive=True))
        matched = sorted(p for p in found if p.is_file() and p.resolve() != src)
    if not matched:
        raise _err(src, key, f"{shown} matched no files (looked for {pattern}). Check the path and the pattern.")
    return matched


def _read(src: Path, key: str, reader: str, opts: dict, files: list[Path]) -> pd.DataFrame:
    frames, first_columns = [], None
    for f in files:
        try:
            if reader == "read_parquet":
                df = pd.read_parquet(f)
            elif reader == "read_json_lines":
                df = _read_json_lines(src, key, f, opts)
            else:
                df = _read_delimited(src, key, f, opts, first_columns)
        except MLTableError:
            raise
        except (ValueError, OSError) as exc:
            raise _err(src, key, f"could not read {f} ({type(exc).__name__}: {exc}). Check that the file is in the "
                                 f"format {reader} expects and that its options match the file.") from exc
        first_columns = list(df.columns) if first_columns is None else first_columns
        if opts["include_path_column"]:
            if "Path" in df.columns:
                raise _err(src, f"{key}.include_path_column", f"{f} already has a 'Path' column; set this to false.")
            df.insert(0, "Path", str(f))
        frames.append(df)
    return pd.concat(frames, ignore_index=True, sort=False)


def _read_delimited(src: Path, key: str, f: Path, opts: dict, first_columns: Optional[list]) -> pd.DataFrame:
    delimiter, header = opts["delimiter"], opts["header"]
    kwargs = dict(sep=delimiter if len(delimiter) == 1 else re.escape(delimiter), encoding=opts["encoding"],
                  engine="c" if len(delimiter) == 1 else "python", keep_default_na=False,
                  na_values=[] if opts["empty_as_string"] else [""],
                  dtype=None if opts["infer_column_types"] else str)
    if header == "no_header":
        df = pd.read_csv(f, header=None, **kwargs)
        return df.set_axis([f"Column{j + 1}" for j in range(df.shape[1])], axis=1)
    if header == "from_first_file" and first_columns is not None:
        df = pd.read_csv(f, header=None, **kwargs)
        if df.shape[1] != len(first_columns):
            raise _err(src, f"{key}.header", f"{f} has {df.shape[1]} columns but the first file has "
                                             f"{len(first_columns)} ({first_columns}); make the files match.")
        return df.set_axis(first_columns, axis=1)
    df = pd.read_csv(f, **kwargs)
    if header == "all_files_same_headers" and first_columns is not None and list(df.columns) != first_columns:
        raise _err(src, f"{key}.header", f"{f} has columns {list(df.columns)} but the first file has "
                                         f"{first_columns}; use header: all_files_different_headers for such files.")
    return df


def _read_json_lines(src: Path, key: str, f: Path, opts: dict) -> pd.DataFrame:
    records = []
    with open(f, encoding=opts["encoding"]) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except ValueError as exc:
                if opts["invalid_lines"] == "drop":
                    continue
                raise _err(src, f"{key}.invalid_lines", f"{f} line {number} is not a JSON object ({exc}); "
                                                        "fix the file, or set invalid_lines: drop.") from None
            records.append(record)
    return pd.DataFrame.from_records(records)


def _apply(src: Path, key: str, name: str, opts: Any, df: pd.DataFrame) -> pd.DataFrame:
    if name == "take":
        return df.head(opts)
    if name == "skip":
        return df.iloc[opts:]
    if name == "take_random_sample":
        return df[np.random.default_rng(opts["seed"]).random(len(df)) < opts["probability"]]
    if name in ("keep_columns", "drop_columns"):
        _require_columns(src, key, df, opts)
        return df[opts] if name == "keep_columns" else df.drop(columns=opts)
    df = df.copy()
    for j, (columns, column_type, params) in enumerate(opts):
        _require_columns(src, f"{key}[{j}].columns", df, columns)
        for column in columns:
            df[column] = _convert(src, f"{key}[{j}]", df[column], column_type, params)
    return df


def _require_columns(src: Path, key: str, df: pd.DataFrame, columns: list) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise _err(src, key, f"column(s) {missing} not found; available columns: {list(df.columns)}. "
                             "Fix the names (they are case-sensitive).")


def _convert(src: Path, key: str, col: pd.Series, column_type: str, params: dict) -> pd.Series:
    present = col.notna()
    text = col.map(lambda v: v if pd.isna(v) else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    if column_type == "string":
        return text
    if column_type in ("int", "float"):
        out = pd.to_numeric(col, errors="coerce")
        if column_type == "float":
            return _checked(src, key, col, present & out.isna(), "float", out.astype(float))
        bad = present & (out.isna() | (out % 1 != 0))
        if not bad.any():  # plain int64 unless values are missing
            out = out.astype("int64" if present.all() else "Int64")
        return _checked(src, key, col, bad, "int", out)
    if column_type == "datetime":
        if pd.api.types.is_datetime64_any_dtype(col):
            return col
        formats = params.get("formats", ["mixed"])
        out = pd.to_datetime(text, format=formats[0], errors="coerce")
        for fmt in formats[1:]:
            out = out.fillna(pd.to_datetime(text, format=fmt, errors="coerce"))
        return _checked(src, key, col, present & out.isna(), f"datetime with formats {formats}", out)
    explicit = "true_values" in params  # boolean
    true, false = (set(params["true_values"]), set(params["false_values"])) if explicit else (TRUE_TEXT, FALSE_TEXT)
    text = text if explicit else text.str.lower()
    out = pd.Series(pd.NA, index=col.index, dtype="boolean")
    out[text.isin(true)] = True
    out[text.isin(false)] = False
    what = f"boolean (true_values {sorted(true)}, false_values {sorted(false)})"
    return _checked(src, key, col, present & out.isna(), what, out.astype(bool) if out.notna().all() else out)


def _checked(src: Path, key: str, col: pd.Series, bad: pd.Series, what: str, out: pd.Series) -> pd.Series:
    if bad.any():
        examples = list(dict.fromkeys(col[bad].tolist()))[:5]
        raise _err(src, key, f"column '{col.name}' has {int(bad.sum())} value(s) that are not {what}, e.g. "
                             f"{examples}. Fix the data, or choose another column_type.")
    return out
