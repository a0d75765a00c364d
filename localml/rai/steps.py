"""The programs behind localml's Responsible AI components, with the arguments of Azure's built-ins:

    python -m localml.rai.steps constructor --title ... --task_type classification --model_input MODEL
        --train_dataset TRAIN --test_dataset TEST --target_column_name Diabetic --output_path OUT
    python -m localml.rai.steps explanation --rai_insights_dashboard OUT --explanation_path EXPL
    python -m localml.rai.steps erroranalysis | counterfactual | causal ...
    python -m localml.rai.steps gather --constructor OUT --insight_1 EXPL ... --dashboard DASH --ux_json UX

The constructor checks everything and saves the model and rows; each insight step reads that folder and
writes ``insight.json``; the gather step puts them together with the fairness analysis and writes the
dashboard page. Arguments Azure accepts but localml does not use are accepted and noted in the log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

INSIGHT_FILE = "insight.json"
GATHERED_FILE = "rai_insights.json"
DASHBOARD_FILE = "dashboard.html"


def log(message: str) -> None:
    print(f"[rai] {message}", flush=True)


def read_table(path: str) -> pd.DataFrame:
    """An MLTable folder, a Parquet or CSV file, or a folder of them (Azure's components take all of these)."""
    from amlkit.mltable import load_mltable

    source = Path(path)
    if (source / "MLTable").is_file():
        return load_mltable(str(source))
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix in (".parquet", ".csv"))
    if not files:
        raise SystemExit(f"No MLTable file, Parquet or CSV data in {path}.")
    return pd.concat([pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in files], ignore_index=True)


def _json(text: str | None, default):
    if text in (None, "", "null", "None"):
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _save(folder: str, kind: str, result: dict, started: float) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    result = {"kind": kind, "seconds": round(time.time() - started, 2), **result}
    (Path(folder) / INSIGHT_FILE).write_text(json.dumps(result, indent=2, default=str))
    log(f"{kind} done in {result['seconds']} s")


# -- steps --------------------------------------------------------------------------------------

def constructor(args) -> None:
    from amlkit.rai.review import build_review, model_metrics

    model = args.model_input or args.model_info_path
    if not model:
        raise SystemExit("Give the model to review: --model_input (an MLflow model).")
    metadata = _json(args.feature_metadata, {})
    review = build_review(
        model, read_table(args.train_dataset), read_table(args.test_dataset), args.target_column_name, args.task_type,
        categorical=_json(args.categorical_column_names, []) or metadata.get("categorical_features", []),
        max_test_rows=args.maximum_rows_for_test_dataset,
    )
    cohorts = metadata.get("cohort_features", {})
    review.check_features(list(cohorts), "Cohort feature")
    review.save(Path(args.output_path))
    metrics = model_metrics(review)
    overview = {"title": args.title, "task": review.task, "target": review.target, "rows": len(review.test),
                "metrics": metrics, "cohort_features": cohorts, "model": args.model_info or str(model)}
    (Path(args.output_path) / "overview.json").write_text(json.dumps(overview, indent=2, default=str))
    log(f"review of {overview['model']}: {len(review.test)} test rows, " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


def explanation(args) -> None:
    from amlkit.rai.explanation import explain
    from amlkit.rai.review import Review

    started = time.time()
    _save(args.explanation_path, "explanation", explain(Review.load(Path(args.rai_insights_dashboard))), started)


def erroranalysis(args) -> None:
    from amlkit.rai.error_analysis import analyze_errors
    from amlkit.rai.review import Review

    started = time.time()
    features = _json(args.filter_features, None)
    result = analyze_errors(Review.load(Path(args.rai_insights_dashboard)), args.max_depth, args.min_child_samples, features)
    _save(args.error_analysis_path, "error_analysis", result, started)


def counterfactual(args) -> None:
    from amlkit.rai.counterfactuals import counterfactuals
    from amlkit.rai.review import Review

    started = time.time()
    desired = _json(args.desired_class, "opposite")
    result = counterfactuals(
        Review.load(Path(args.rai_insights_dashboard)), total_cfs=args.total_CFs, rows=args.rows,
        time_budget_seconds=args.time_budget_seconds, method=args.method, desired_class=desired,
        desired_range=_json(args.desired_range, None), features_to_vary=_json(args.features_to_vary, "all"),
    )
    _save(args.counterfactual_path, "counterfactual", result, started)


def causal(args) -> None:
    from amlkit.rai.causal import causal_effects
    from amlkit.rai.review import Review

    started = time.time()
    treatments = _json(args.treatment_features, [])
    result = causal_effects(Review.load(Path(args.rai_insights_dashboard)), list(treatments), alpha=args.alpha)
    _save(args.causal_path, "causal", result, started)


def gather(args) -> None:
    from amlkit.rai import dashboard
    from amlkit.rai.fairness import fairness_by_first_cohort_feature
    from amlkit.rai.review import Review

    folder = Path(args.constructor)
    overview = json.loads((folder / "overview.json").read_text())
    insights = {"overview": overview}
    for path in filter(None, (args.insight_1, args.insight_2, args.insight_3, args.insight_4)):
        result = json.loads((Path(path) / INSIGHT_FILE).read_text())
        insights[result.pop("kind")] = result
    cohorts = overview.get("cohort_features") or {}
    if cohorts:
        insights["fairness"] = fairness_by_first_cohort_feature(Review.load(folder), cohorts)
    out = Path(args.dashboard)
    out.mkdir(parents=True, exist_ok=True)
    (out / GATHERED_FILE).write_text(json.dumps(insights, indent=2, default=str))
    dashboard.write(insights, overview["title"], out / DASHBOARD_FILE)
    Path(args.ux_json).mkdir(parents=True, exist_ok=True)
    (Path(args.ux_json) / "ux.json").write_text(json.dumps(insights, default=str))
    log(f"dashboard with {', '.join(k for k in insights if k != 'overview')}: {out / DASHBOARD_FILE}")


# -- command line -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localml.rai.steps")
    steps = parser.add_subparsers(dest="step", required=True)

    p = steps.add_parser("constructor")
    p.add_argument("--title", default="Responsible AI review")
    p.add_argument("--task_type", required=True)
    p.add_argument("--model_info_path")
    p.add_argument("--model_input")
    p.add_argument("--model_info")
    p.add_argument("--train_dataset", required=True)
    p.add_argument("--test_dataset", required=True)
    p.add_argument("--target_column_name", required=True)
    p.add_argument("--maximum_rows_for_test_dataset", type=int, default=5000)
    p.add_argument("--categorical_column_names", default="[]")
    p.add_argument("--classes", default="[]")
    p.add_argument("--feature_metadata", default="{}")
    p.add_argument("--use_model_dependency", default="False")
    p.add_argument("--output_path", required=True)

    p = steps.add_parser("explanation")
    p.add_argument("--comment", default="")
    p.add_argument("--rai_insights_dashboard", required=True)
    p.add_argument("--explanation_path", required=True)

    p = steps.add_parser("erroranalysis")
    p.add_argument("--rai_insights_dashboard", required=True)
    p.add_argument("--max_depth", type=int, default=3)
    p.add_argument("--num_leaves", type=int, default=31)
    p.add_argument("--min_child_samples", type=int, default=20)
    p.add_argument("--filter_features", default="null")
    p.add_argument("--error_analysis_path", required=True)

    p = steps.add_parser("counterfactual")
    p.add_argument("--rai_insights_dashboard", required=True)
    p.add_argument("--total_CFs", type=int, default=10)
    p.add_argument("--method", default="random")
    p.add_argument("--desired_class")
    p.add_argument("--desired_range")
    p.add_argument("--permitted_range")
    p.add_argument("--features_to_vary", default="all")
    p.add_argument("--feature_importance", default="True")
    # localml's bounds (counterfactuals are the slow part): test rows explained, and seconds for all of them
    p.add_argument("--rows", type=int, default=5)
    p.add_argument("--time_budget_seconds", type=float, default=60.0)
    p.add_argument("--counterfactual_path", required=True)

    p = steps.add_parser("causal")
    p.add_argument("--rai_insights_dashboard", required=True)
    p.add_argument("--treatment_features", required=True)
    p.add_argument("--heterogeneity_features", default="null")
    p.add_argument("--nuisance_model", default="linear")
    p.add_argument("--heterogeneity_model", default="linear")
    p.add_argument("--alpha", type=float, default=0.05)
    for unused in ("--upper_bound_on_cat_expansion", "--treatment_cost", "--min_tree_leaf_samples", "--max_tree_depth",
                   "--skip_cat_limit_checks", "--categories", "--n_jobs", "--verbose", "--random_state"):
        p.add_argument(unused)
    p.add_argument("--causal_path", required=True)

    p = steps.add_parser("gather")
    p.add_argument("--constructor", required=True)
    for number in range(1, 5):
        p.add_argument(f"--insight_{number}")
    p.add_argument("--dashboard", required=True)
    p.add_argument("--ux_json", required=True)
    p.add_argument("--component_name")
    p.add_argument("--component_version")
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # dice-ml's progress bars would fill the job's log
    args = _parser().parse_args(argv)
    globals()[args.step](args)


if __name__ == "__main__":
    main(sys.argv[1:])
