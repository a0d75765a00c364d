"""The review as one self-contained HTML page: every plot inlined as PNG, every table as HTML, no scripts
or styles fetched from anywhere, so it opens from a file, an artifact store or an e-mail."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from amlkit.plots import new_figure, png

SECTIONS = ("overview", "explanations", "error-analysis", "counterfactuals", "causal", "fairness")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #1d2733; }
h1 { margin-bottom: 0.2rem; } section { border-top: 1px solid #ccd5df; padding: 0.5rem 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccd5df; padding: 0.25rem 0.6rem; text-align: right; } th { background: #eef2f6; }
td:first-child, th:first-child { text-align: left; } .note { color: #5b6b7c; font-size: 0.9rem; }
.pass { color: #17703a; font-weight: bold; } .fail { color: #a31d1d; font-weight: bold; }
"""

# counts the pictures that really decoded, so a headless browser test can tell a page that renders
READY_SCRIPT = """
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = images.length;
  document.body.dataset.sections = document.querySelectorAll("section[id]").length;
});
"""


def render(insights: dict, title: str) -> str:
    """The page for ``insights`` (the gathered output of every step; a missing step shows as not computed)."""
    parts = [
        _overview(insights.get("overview", {}), insights.get("scorecard")),
        _explanations(insights.get("explanation")),
        _errors(insights.get("error_analysis")),
        _counterfactuals(insights.get("counterfactual")),
        _causal(insights.get("causal")),
        _fairness(insights.get("fairness")),
    ]
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>"
        f"<p class='note'>Responsible AI review: explanations, error analysis, counterfactuals, causal analysis, fairness.</p>"
        + "".join(parts)
        + f"<script>{READY_SCRIPT}</script></body></html>"
    )


def write(insights: dict, title: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(insights, title), encoding="utf-8")
    return path


# -- sections -----------------------------------------------------------------------------------

def _section(key: str, heading: str, body: str | None) -> str:
    content = body if body is not None else "<p class='note'>Not computed in this review.</p>"
    return f"<section id='{key}'><h2>{heading}</h2>{content}</section>"


def _overview(overview: dict, scorecard: dict | None) -> str:
    body = _table(["metric", "value"], [[k, _n(v)] for k, v in overview.get("metrics", {}).items()])
    body += f"<p>{overview.get('rows', '?')} test rows; target <code>{_e(overview.get('target', '?'))}</code>; task {_e(overview.get('task', '?'))}.</p>"
    if scorecard:
        verdict = "pass" if scorecard["passed"] else "fail"
        body += f"<p class='{verdict}'>Scorecard: {verdict.upper()}</p>"
        body += _table(["check", "value", "threshold", "result"],
                       [[c["name"], _n(c["value"]), c["threshold"], "pass" if c["passed"] else "FAIL"] for c in scorecard["checks"]])
    return _section("overview", "Model overview", body)


def _explanations(result: dict | None) -> str:
    if result is None:
        return _section("explanations", "Feature importance", None)
    importance = result["global_importance"]
    body = f"<p class='note'>{_e(result['method'])}</p>" + _image(_bar_chart(importance, "mean |SHAP value|"), "feature importance")
    body += _table(["feature", "importance"], [[k, _n(v)] for k, v in importance.items()])
    rows = list(result.get("local_importance", {}).items())[:5]
    if rows:
        features = list(importance)
        body += "<h3>Per-row contributions (first rows explained)</h3>" + _table(
            ["row", *features], [[index, *[_n(values[f]) for f in features]] for index, values in rows]
        )
    return _section("explanations", "Feature importance", body)


def _errors(result: dict | None) -> str:
    if result is None:
        return _section("error-analysis", "Error analysis", None)
    worst = result["worst_cohort"]
    body = (
        f"<p>Error rate {_n(result['error_rate'])} ({result['errors']} of {result['rows']} rows). Worst cohort: "
        f"<b>{_e(worst['cohort'])}</b>, error rate {_n(worst['error_rate'])}, {worst['rows']} rows, "
        f"{_n(worst['error_coverage'])} of all errors.</p>"
    )
    leaves = sorted((n for n in result["tree"] if n["leaf"]), key=lambda n: -n["error_rate"])
    body += _table(["cohort", "rows", "errors", "error rate", "share of errors"],
                   [[n["cohort"], n["rows"], n["errors"], _n(n["error_rate"]), _n(n["error_coverage"])] for n in leaves])
    body += _image(_heatmap(result["heatmap"]), "error heat map")
    return _section("error-analysis", "Error analysis", body)


def _counterfactuals(result: dict | None) -> str:
    if result is None:
        return _section("counterfactuals", "Counterfactuals", None)
    rows = []
    for row in result["rows"]:
        for alternative in row["counterfactuals"]:
            changes = "; ".join(f"{f}: {_n(c['from'])} → {_n(c['to'])}" for f, c in alternative["changes"].items())
            rows.append([row["row"], _n(row["prediction"]), _n(alternative["prediction"]), changes])
    body = f"<p class='note'>What would change each prediction ({_e(result['method'])} search, {result['seconds']} s).</p>"
    body += _table(["row", "prediction", "would become", "changes"], rows)
    if result["rows_not_explained_in_time"]:
        body += f"<p class='note'>Not explained within the time budget: rows {', '.join(result['rows_not_explained_in_time'])}.</p>"
    return _section("counterfactuals", "Counterfactuals", body)


def _causal(result: dict | None) -> str:
    if result is None:
        return _section("causal", "Causal analysis", None)
    effects = result["effects"]
    level = f"{1 - result['alpha']:.0%}"
    body = _table(["treatment", "effect on the outcome", "average effect", f"{level} interval"],
                  [[t, e["kind"], _n(e["average_effect"]), f"[{_n(e['interval'][0])}, {_n(e['interval'][1])}]"] for t, e in effects.items()])
    body += _image(_effects_chart(effects), "causal effects")
    return _section("causal", "Causal analysis", body)


def _fairness(result: dict | None) -> str:
    if result is None:
        return _section("fairness", "Fairness by cohort", None)
    metrics = list(next(iter(result["cohorts"].values())))
    body = f"<p>Cohorts of <code>{_e(result['feature'])}</code>.</p>"
    body += _table(["cohort", "rows", *metrics],
                   [[c, result["rows"].get(c, ""), *[_n(v[m]) for m in metrics]] for c, v in result["cohorts"].items()])
    body += _table(["metric", "largest gap between cohorts"], [[m, _n(v)] for m, v in result["largest_gap"].items()])
    body += _image(_cohort_chart(result, metrics[0]), "metric by cohort")
    return _section("fairness", "Fairness by cohort", body)


# -- pieces -------------------------------------------------------------------------------------

def _e(text) -> str:
    return html.escape(str(text))


def _n(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else _e(value)


def _table(header: list, rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _bar_chart(values: dict[str, float], label: str) -> bytes:
    names = list(values)[::-1]
    figure, axis = new_figure((6, 0.35 * len(names) + 1))
    axis.barh(names, [values[n] for n in names], color="#2f6db5")
    axis.set_xlabel(label)
    return png(figure, dpi=80)


def _heatmap(heatmap: dict) -> bytes:
    import numpy as np

    grid = np.array([[np.nan if v is None else v for v in row] for row in heatmap["error_rate"]], dtype=float)
    figure, axis = new_figure((7, 4))
    image = axis.imshow(grid, cmap="Reds", aspect="auto")
    axis.set_yticks(range(len(heatmap["rows"])), heatmap["rows"], fontsize=8)
    axis.set_xticks(range(len(heatmap["columns"])), heatmap["columns"], fontsize=8, rotation=20)
    axis.set_ylabel(heatmap["features"][0])
    if len(heatmap["features"]) > 1:
        axis.set_xlabel(heatmap["features"][1])
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            axis.text(j, i, f"{value:.1%}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, label="error rate")
    return png(figure, dpi=80)


def _effects_chart(effects: dict) -> bytes:
    names = list(effects)
    figure, axis = new_figure((6, 0.5 * len(names) + 1.2))
    for position, name in enumerate(names):
        low, high = effects[name]["interval"]
        axis.errorbar(effects[name]["average_effect"], position, xerr=[[effects[name]["average_effect"] - low], [high - effects[name]["average_effect"]]],
                      fmt="o", color="#2f6db5", capsize=4)
    axis.axvline(0, color="grey", linewidth=1)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("average effect on the outcome (with its interval)")
    return png(figure, dpi=80)


def _cohort_chart(result: dict, metric: str) -> bytes:
    cohorts = list(result["cohorts"])
    figure, axis = new_figure((6, 3))
    axis.bar(cohorts, [result["cohorts"][c][metric] for c in cohorts], color="#2f6db5")
    axis.set_ylabel(metric)
    axis.set_xlabel(result["feature"])
    return png(figure, dpi=80)
