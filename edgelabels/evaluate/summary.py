"""summary.json in Rekognition Custom Labels' EvaluationSummary schema, and a reader for AWS's files.

AWS documents two layouts: the schema page nests the aggregate metrics under
`AggregatedEvaluationResults.Metrics`; the real example file puts them directly under
`AggregatedEvaluationResults`. We write the schema's (nested) layout and read both.
Aggregates are the unweighted means of the per-label values (as in AWS's example); thresholds
are on the 0-1 scale; `LabelEvaluationResults` are sorted by F1, best first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgelabels.errors import UserError
from edgelabels.evaluate.metrics import confusion_rows

VERSION = 1


def build_summary(metrics: dict, *, run_id: str, number_of_training_images: int,
                  end_time: datetime | None = None) -> dict:
    """The EvaluationSummary document for a metrics.json dict (per-label values at assumed thresholds)."""
    end_time = end_time or datetime.now(timezone.utc)
    # AWS writes a naive UTC time with microseconds ("2019-11-21T07:30:23.910943").
    timestamp = end_time.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    label_results = []
    for row in metrics["per_label"]:
        at = row["at_assumed_threshold"]
        label_results.append({
            "Label": row["label"],
            "NumberOfTestingImages": row["support"],
            "Metrics": {"Threshold": at["threshold"], "Precision": at["precision"], "Recall": at["recall"],
                        "F1Score": at["f1"]},
        })
    # Best F1 first; labels with no F1 (no test image) last, in label order.
    label_results.sort(key=lambda r: (r["Metrics"]["F1Score"] is None, -(r["Metrics"]["F1Score"] or 0.0)))
    aggregate = metrics["at_assumed_thresholds"]
    return {
        "Version": VERSION,
        "EvaluationDetails": {
            "ProjectVersionArn": run_id,
            "EvaluationEndTimestamp": timestamp,
            "Labels": list(metrics["labels"]),
            "NumberOfTrainingImages": int(number_of_training_images),
            "NumberOfTestingImages": metrics["number_of_images"],
        },
        "AggregatedEvaluationResults": {
            "Metrics": {
                "Precision": aggregate["precision"],
                "Recall": aggregate["recall"],
                "F1Score": aggregate["f1"],
                "ConfusionMatrix": confusion_rows(metrics),
            },
        },
        "LabelEvaluationResults": label_results,
    }


@dataclass(frozen=True)
class LabelResult:
    label: str
    number_of_testing_images: int
    threshold: float | None
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class Summary:
    """An EvaluationSummary read from either documented layout."""

    version: int
    project_version_arn: str
    end_timestamp: str
    labels: list[str]
    number_of_training_images: int
    number_of_testing_images: int
    precision: float | None
    recall: float | None
    f1: float | None
    confusion_matrix: list[dict]
    label_results: list[LabelResult]

    @property
    def thresholds(self) -> dict[str, float | None]:
        """label -> assumed threshold (0-1), the `thresholds.json` an export writes."""
        return {r.label: r.threshold for r in self.label_results}


def read_summary(path: str | Path) -> Summary:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: evaluation summary not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a JSON evaluation summary ({exc})") from None
    return parse_summary(document, str(path))


def parse_summary(document: dict, name: str = "summary") -> Summary:
    """Accept the nested (schema page) and the flat (real example) layout; UserError naming what is missing."""
    try:
        details = document["EvaluationDetails"]
        aggregated = document["AggregatedEvaluationResults"]
        metrics = aggregated.get("Metrics", aggregated)
        results = [
            LabelResult(
                label=str(item["Label"]),
                number_of_testing_images=int(item.get("NumberOfTestingImages", 0)),
                threshold=_number(item["Metrics"].get("Threshold")),
                precision=_number(item["Metrics"].get("Precision")),
                recall=_number(item["Metrics"].get("Recall")),
                f1=_number(item["Metrics"].get("F1Score")),
            )
            for item in document.get("LabelEvaluationResults", [])
        ]
        return Summary(
            version=int(document.get("Version", 1)),
            project_version_arn=str(details.get("ProjectVersionArn", "")),
            end_timestamp=str(details.get("EvaluationEndTimestamp", "")),
            labels=[str(label) for label in details["Labels"]],
            number_of_training_images=int(details.get("NumberOfTrainingImages", 0)),
            number_of_testing_images=int(details.get("NumberOfTestingImages", 0)),
            precision=_number(metrics.get("Precision")),
            recall=_number(metrics.get("Recall")),
            f1=_number(metrics.get("F1Score")),
            confusion_matrix=list(metrics.get("ConfusionMatrix", [])),
            label_results=results,
        )
    except KeyError as exc:
        raise UserError(f"{name}: evaluation summary has no {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{name}: malformed evaluation summary ({exc})") from None


def _number(value) -> float | None:
    return None if value is None else float(value)
