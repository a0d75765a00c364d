"""Pictures for the flows' reports, rendered off-screen to PNG bytes."""

from __future__ import annotations

import math

import numpy as np

from amlkit.plots import new_figure, png
from tasks.sweep import SweepResult


def sweep_chart(result: SweepResult) -> bytes:
    """Two panels: the primary metric of each trial in launch order (stopped and failed trials marked),
    and parallel coordinates of the hyperparameters, each trial's line coloured by its score."""
    import matplotlib

    trials = sorted(result.trials, key=lambda t: _index(t.name))
    figure, (left, right) = new_figure((12, 4.5), ncols=2, gridspec_kw={"width_ratios": [1, 1.4]})

    completed = [t for t in trials if t.score is not None]
    left.plot([_index(t.name) for t in completed], [t.score for t in completed], "o", color="tab:blue", label="completed")
    for status, marker, colour in (("Canceled", "x", "tab:orange"), ("Failed", "s", "tab:red")):
        ended = [t for t in trials if t.status == status]
        if ended:
            left.plot([_index(t.name) for t in ended], [left.get_ylim()[0]] * len(ended), marker, color=colour,
                      label=f"{status.lower()} ({'stopped early' if status == 'Canceled' else 'no score'})")
    best = next((t for t in completed if t.name == result.best_trial), None)
    if best:
        left.plot([_index(best.name)], [best.score], "*", markersize=16, color="gold", markeredgecolor="black", label="best")
    left.set(xlabel="trial", ylabel=result.primary_metric, title=f"{result.primary_metric} per trial ({result.goal})")
    left.legend(fontsize=8, loc="best")

    names = sorted({name for t in trials for name in t.parameters})
    axes = [_axis([t.parameters.get(name) for t in trials]) for name in names]
    scores = [t.score for t in completed]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    colours = matplotlib.colormaps["viridis"]
    for row, trial in enumerate(trials):
        ys = [axis[row] for axis in axes]
        if trial.score is None:
            right.plot(range(len(names)), ys, color="grey", linestyle="--", alpha=0.5)
        else:
            shade = (trial.score - low) / (high - low) if high > low else 1.0
            shade = shade if result.goal == "maximize" else 1 - shade
            right.plot(range(len(names)), ys, color=colours(shade), linewidth=2.5 if trial is best else 1.2)
    right.set_xticks(range(len(names)), names, rotation=15)
    right.set_yticks([])
    right.set_title("hyperparameters (each axis scaled to its range; dashed: no score)")
    for position, (name, axis) in enumerate(zip(names, axes)):
        right.axvline(position, color="black", linewidth=0.5)
        for value, height in sorted({(t.parameters.get(name), y) for t, y in zip(trials, axis) if t.parameters.get(name)}, key=lambda p: p[1]):
            right.annotate(value, (position, height), xytext=(3, 2), textcoords="offset points", fontsize=7)

    return png(figure)


def roc_chart(curves: dict[str, tuple], primary_metric: str) -> bytes:
    """ROC curves of classifiers scored on the same rows: ``{label: (class indices, probabilities)}``.

    Two classes: the positive class's curve; more: the micro-average over one-vs-rest curves.
    """
    from sklearn.metrics import auc, roc_curve

    figure, axes = new_figure((6, 5))
    for label, (indices, probabilities) in curves.items():
        if probabilities.shape[1] == 2:
            fpr, tpr, _ = roc_curve(indices, probabilities[:, 1])
        else:
            fpr, tpr, _ = roc_curve(np.eye(probabilities.shape[1])[indices].ravel(), probabilities.ravel())
        axes.plot(fpr, tpr, linewidth=2, label=f"{label} (area {auc(fpr, tpr):.4f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC on the held-out rows ({primary_metric})")
    axes.legend(loc="lower right")
    return png(figure)


def prediction_chart(curves: dict[str, tuple]) -> bytes:
    """Predicted against actual values of regressors scored on the same rows: ``{label: (actual, predicted)}``."""
    figure, axes = new_figure((6, 5))
    for label, (actual, predicted) in curves.items():
        axes.scatter(actual, predicted, s=8, alpha=0.5, label=label)
    low, high = axes.get_xlim()
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="perfect")
    axes.set(xlabel="actual", ylabel="predicted", title="Predicted against actual on the held-out rows")
    axes.legend(loc="upper left")
    return png(figure)


def _index(trial_name: str) -> int:
    tail = trial_name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _axis(values: list[str | None]) -> list[float]:
    """Values of one parameter placed on [0, 1]: numbers by value (log scale over wide ranges), others by category."""
    numbers = [_number(v) for v in values]
    present = [n for n in numbers if n is not None]
    if present and len(present) == sum(v is not None for v in values):
        if min(present) > 0 and max(present) / min(present) > 100:
            numbers = [math.log10(n) if n is not None else None for n in numbers]
            present = [n for n in numbers if n is not None]
        low, high = min(present), max(present)
        return [0.5 if n is None or high == low else (n - low) / (high - low) for n in numbers]
    categories = sorted({str(v) for v in values})
    step = 1 / max(1, len(categories) - 1)
    return [categories.index(str(v)) * step for v in values]


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def drift_chart(features: list[tuple[str, float, bool]], psi_threshold: float) -> bytes:
    """Each feature's PSI as a bar (drifted ones in red) against the threshold."""
    names = [name for name, _, _ in features][::-1]
    values = [value for _, value, _ in features][::-1]
    colours = ["#c0392b" if drifted else "#2f6db5" for _, _, drifted in features][::-1]
    figure, axes = new_figure((7, 0.4 * len(names) + 1.5))
    axes.barh(names, values, color=colours)
    axes.axvline(psi_threshold, color="#555555", linestyle="--", label=f"PSI threshold {psi_threshold:g}")
    axes.set(xlabel="population stability index (current against reference)", title="Drift by feature (red: drifted)")
    axes.legend(loc="lower right")
    return png(figure)


def rollout_chart(steps: list[tuple[str, dict[str, tuple[float | None, float]]]]) -> bytes:
    """Two panels over the rollout's steps: each deployment's p95 latency, and its failure rate.

    ``steps`` is each step's name with, per deployment, its (p95 ms or None, failure rate).
    """
    names = [name for name, _ in steps]
    deployments = list(dict.fromkeys(deployment for _, figures in steps for deployment in figures))
    figure, (latency, failures) = new_figure((max(6.0, 1.3 * len(names) + 2), 4.5), ncols=2)
    for deployment in deployments:
        points = [(i, figures[deployment]) for i, (_, figures) in enumerate(steps) if deployment in figures]
        latency.plot([i for i, (p95, _) in points if p95 is not None], [p95 for _, (p95, _) in points if p95 is not None],
                     "o-", label=deployment)
        failures.plot([i for i, _ in points], [100 * rate for _, (_, rate) in points], "o-", label=deployment)
    for axes, label in ((latency, "p95 latency (ms)"), (failures, "failed requests (%)")):
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axes.set(ylabel=label)
        axes.legend(loc="upper left")
    figure.suptitle("Rollout: the new deployment against the current one, step by step")
    return png(figure)


def class_balance_chart(balance: dict[str, int], title: str = "Predicted classes") -> bytes:
    """Rows per predicted class as bars, each labelled with its count and share."""
    names = list(balance)
    counts = [balance[name] for name in names]
    total = sum(counts) or 1
    figure, axes = new_figure((max(4.0, 1.2 * len(names) + 2), 4))
    bars = axes.bar(names, counts, color="#2f6db5")
    for bar, count in zip(bars, counts):
        axes.annotate(f"{count} ({count / total:.0%})", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      xytext=(0, 3), textcoords="offset points", ha="center", fontsize=9)
    axes.set(xlabel="predicted class", ylabel="rows", title=f"{title} ({total} rows)")
    axes.set_ylim(0, max(counts or [1]) * 1.15)
    return png(figure)
