"""PNG plots from arrays: confusion matrix, ROC and precision-recall per label, confidence histogram, coverage.

ROC and precision-recall take a truth matrix (N, K), so a multi-label evaluation draws them too.

Figures are built with matplotlib's object API (Figure + Agg through savefig), never pyplot, so
nothing global changes (no backend switch, no open-figure registry) when the library is used
inside a server or a notebook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelabels.evaluate.metrics import top_labels

DPI = 110


def write_plots(folder: str | Path, y_true, probs, labels: list[str], metrics: dict) -> dict[str, Path]:
    """All plots into `folder`; returns {name: path} in report order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    truth = y_true[:, None] == np.arange(len(labels))[None, :]  # each label one-vs-rest
    return {
        "confusion_matrix": confusion_matrix_plot(folder / "confusion_matrix.png", metrics),
        "roc": roc_plot(folder / "roc.png", truth, probs, labels),
        "precision_recall": precision_recall_plot(folder / "precision_recall.png", truth, probs, labels, metrics),
        "confidence_histogram": confidence_histogram(folder / "confidence_histogram.png", y_true, probs),
        "coverage": coverage_plot(folder / "coverage.png", y_true, probs, metrics),
    }


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def confusion_matrix_plot(path: Path, metrics: dict) -> Path:
    labels = metrics["confusion_matrix"]["labels"]
    counts = np.asarray(metrics["confusion_matrix"]["counts"], dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(labels)
    side = max(3.2, 0.55 * n + 2.2)
    fig = _figure(2 * side + 0.6, side)
    for panel, (ax, values, title, fmt) in enumerate(zip(fig.subplots(1, 2), (counts, shares),
                                                         ("Counts", "Row-normalised (share of true label)"),
                                                         ("{:.0f}", "{:.1%}"))):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=values.max() or 1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("Predicted label")
        if panel == 0:
            ax.set_ylabel("True label")
        if n <= 20:
            cut = values.max() / 2 if values.max() else 1
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if values[i, j] > cut else "black")
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def _label_axes(fig, n_labels: int):
    from matplotlib import colormaps

    ax = fig.subplots()
    if n_labels > 10:  # the default cycle repeats after 10 colours
        ax.set_prop_cycle(color=colormaps["tab20"].colors)
    return ax


def _present(truth, labels):
    """The labels some images have and some do not: the others have no curve."""
    return [(k, name) for k, name in enumerate(labels) if truth[:, k].any() and not truth[:, k].all()]


def roc_plot(path: Path, truth, probs, labels) -> Path:
    """truth: (N, K) bool, image n has label k (a classifier's one-hot, or a multi-label truth)."""
    from sklearn.metrics import auc, roc_curve

    fig = _figure(5.6, 4.6)
    ax = _label_axes(fig, len(labels))
    for k, name in _present(truth, labels):
        fpr, tpr, _ = roc_curve(truth[:, k], probs[:, k])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)",
           title="ROC, one label vs the rest", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def precision_recall_plot(path: Path, truth, probs, labels, metrics: dict) -> Path:
    """truth as roc_plot's; the dot on each curve is metrics' per-label precision and recall at its assumed
    threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig = _figure(5.6, 4.6)
    ax = _label_axes(fig, len(labels))
    for k, name in _present(truth, labels):
        precision, recall, _ = precision_recall_curve(truth[:, k], probs[:, k])
        ap = average_precision_score(truth[:, k], probs[:, k])
        line, = ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
        at = metrics["per_label"][k]["at_assumed_threshold"]
        if at["recall"] is not None and at["precision"] is not None:
            ax.plot(at["recall"], at["precision"], "o", color=line.get_color())
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall (dot: assumed threshold)",
           xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def confidence_histogram(path: Path, y_true, probs) -> Path:
    confidence = probs.max(axis=1)
    correct = top_labels(probs) == y_true
    fig = _figure(5.6, 4.0)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    # Overlaid, not stacked: stacked bars on a log axis hide how many mistakes each bin holds.
    ax.hist(confidence[correct], bins=bins, log=True, histtype="stepfilled", alpha=0.45, color="tab:green",
            edgecolor="tab:green", label=f"right ({correct.sum()})")
    ax.hist(confidence[~correct], bins=bins, log=True, histtype="stepfilled", alpha=0.45, color="tab:red",
            edgecolor="tab:red", label=f"wrong ({(~correct).sum()})")
    ax.set(xlabel="Top confidence", ylabel="Images (log scale)", title="Confidence of the top label", xlim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def coverage_curve(y_true, probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(threshold, discarded fraction, accuracy of accepted) when accepting the k most confident, k = 1..N."""
    confidence = probs.max(axis=1)
    correct = top_labels(probs) == y_true
    order = np.argsort(-confidence, kind="stable")
    accepted = np.arange(1, len(order) + 1)
    accuracy = np.cumsum(correct[order]) / accepted
    return confidence[order], 1 - accepted / len(order), accuracy


def coverage_plot(path: Path, y_true, probs, metrics: dict) -> Path:
    _, discarded, accuracy = coverage_curve(y_true, probs)
    fig = _figure(5.6, 4.2)
    ax = fig.subplots()
    ax.plot(discarded, accuracy, color="tab:blue", linewidth=1.5)
    for row in metrics["coverage"]:
        if row["accuracy"] is not None:
            ax.plot(row["discarded_fraction"], row["accuracy"], "o", color="tab:orange")
            ax.annotate(f"{row['threshold']:g}", (row["discarded_fraction"], row["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))
    ax.set(xlabel="Fraction discarded (sent to a human)", ylabel="Accuracy of accepted predictions",
           title="Confidence threshold: accuracy vs coverage", xlim=(0, 1),
           ylim=(max(0.0, accuracy.min() - 0.02), 1.005))  # room above 1.0 so a perfect line shows
    ax.grid(alpha=0.3)
    return _save(fig, path)
