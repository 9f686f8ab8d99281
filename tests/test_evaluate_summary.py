"""summary.json against AWS's documented EvaluationSummary schema and examples (../shared/fixtures/rekognition)."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edgelabels.errors import UserError
from edgelabels.evaluate.metrics import evaluate_arrays
from edgelabels.evaluate.summary import build_summary, parse_summary, read_summary

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"
SCHEMA = FIXTURES / "evaluation-summary-nested-metrics.json"
FLAT = FIXTURES / "evaluation-summary-flat.json"
DETECTION_ONLY = {"AveragePrecision", "AverageRecall"}  # the schema's object-detection aggregates

pytestmark = pytest.mark.skipif(not FLAT.exists(), reason="../shared/fixtures/rekognition is absent")

TYPES = {"integer": int, "int": int, "float": float, "string": str}


def _matches_schema(value, schema, where="summary"):
    """Assert `value` has exactly the schema's keys (less detection-only ones) with the named types."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), where
        assert set(value) == set(schema) - DETECTION_ONLY, f"{where}: {sorted(value)} vs {sorted(schema)}"
        for key in value:
            _matches_schema(value[key], schema[key], f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list) and value, where
        for i, item in enumerate(value):
            _matches_schema(item, schema[0], f"{where}[{i}]")
    elif schema == "[string]":
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), where
    else:
        expected = TYPES[schema]
        assert isinstance(value, expected) and not isinstance(value, bool), f"{where}: {value!r} is not {schema}"


def _example_from_schema(schema):
    """A document in the schema's (nested) layout with plausible values of the documented types."""
    if isinstance(schema, dict):
        return {key: _example_from_schema(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_example_from_schema(schema[0])]
    return {"integer": 1, "int": 7, "float": 0.5, "string": "x", "[string]": ["x"]}[schema]


@pytest.fixture
def metrics():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=60)
    probs = rng.dirichlet([1, 1, 1], size=60) * 0.5 + np.eye(3)[y_true] * 0.5
    return evaluate_arrays(y_true, probs, ["cap", "watch", "shoe"])


def test_written_summary_has_the_documented_keys_and_types(metrics):
    summary = build_summary(metrics, run_id="runs/demo", number_of_training_images=240)
    _matches_schema(json.loads(json.dumps(summary)), json.loads(SCHEMA.read_text()))
    assert summary["EvaluationDetails"]["NumberOfTestingImages"] == 60
    assert summary["EvaluationDetails"]["NumberOfTrainingImages"] == 240
    assert len(summary["AggregatedEvaluationResults"]["Metrics"]["ConfusionMatrix"]) == 9


def test_timestamp_is_written_like_aws_does():
    rng = np.random.default_rng(0)
    m = evaluate_arrays(rng.integers(0, 2, 10), rng.dirichlet([1, 1], 10), ["a", "b"])
    summary = build_summary(m, run_id="r", number_of_training_images=0)
    stamp = summary["EvaluationDetails"]["EvaluationEndTimestamp"]
    aws = json.loads(FLAT.read_text())["EvaluationDetails"]["EvaluationEndTimestamp"]
    assert len(stamp) == len(aws) and datetime.fromisoformat(stamp).tzinfo is None


def test_label_results_are_sorted_by_f1_with_thresholds_on_the_0_to_1_scale(metrics):
    results = build_summary(metrics, run_id="r", number_of_training_images=0)["LabelEvaluationResults"]
    f1 = [r["Metrics"]["F1Score"] for r in results]
    assert f1 == sorted(f1, reverse=True)
    assert all(0 <= r["Metrics"]["Threshold"] <= 1 for r in results)


def test_written_aggregates_are_the_macro_mean_of_label_values(metrics):
    summary = build_summary(metrics, run_id="r", number_of_training_images=0)
    aggregate = summary["AggregatedEvaluationResults"]["Metrics"]
    for key in ("Precision", "Recall", "F1Score"):
        values = [r["Metrics"][key] for r in summary["LabelEvaluationResults"]]
        assert aggregate[key] == pytest.approx(np.mean(values), abs=1e-12)


def test_written_summary_reads_back(tmp_path, metrics):
    summary = build_summary(metrics, run_id="runs/demo", number_of_training_images=3)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    read = read_summary(tmp_path / "summary.json")
    assert read.labels == ["cap", "watch", "shoe"]
    assert read.f1 == summary["AggregatedEvaluationResults"]["Metrics"]["F1Score"]
    assert read.thresholds == {row["label"]: row["assumed_threshold"] for row in metrics["per_label"]}


def test_aws_flat_example_parses_with_its_values():
    summary = read_summary(FLAT)
    assert summary.labels == ["CAP", "WATCH"]
    assert summary.number_of_training_images == 5216 and summary.number_of_testing_images == 624
    assert summary.f1 == pytest.approx(0.9726959470546408)
    assert len(summary.confusion_matrix) == 4
    cap = summary.label_results[0]
    assert (cap.label, cap.number_of_testing_images, cap.threshold) == ("CAP", 390, pytest.approx(0.9879502058029175))
    # The README's counts reproduce the per-label values: CAP TP 381, FP 7, FN 9.
    assert cap.precision == pytest.approx(381 / 388) and cap.recall == pytest.approx(381 / 390)


def test_aws_flat_example_aggregates_are_macro_means_of_its_label_values():
    summary = read_summary(FLAT)
    for attribute in ("precision", "recall", "f1"):
        values = [getattr(r, attribute) for r in summary.label_results]
        assert getattr(summary, attribute) == pytest.approx(np.mean(values), abs=1e-15)


def test_documented_nested_layout_parses():
    document = _example_from_schema(json.loads(SCHEMA.read_text()))
    summary = parse_summary(document, "nested")
    assert summary.f1 == 0.5 and summary.labels == ["x"] and summary.number_of_testing_images == 7
    assert summary.label_results[0].threshold == 0.5 and summary.confusion_matrix[0]["Value"] == 0.5


def test_flat_and_nested_layouts_of_the_same_summary_read_the_same():
    flat = json.loads(FLAT.read_text())
    nested = copy.deepcopy(flat)
    nested["AggregatedEvaluationResults"] = {"Metrics": flat["AggregatedEvaluationResults"]}
    assert parse_summary(flat) == parse_summary(nested)


def test_schema_page_itself_is_refused_with_the_file_name():
    # Its values are type names ("float"), not numbers.
    with pytest.raises(UserError, match="evaluation-summary-nested-metrics.json"):
        read_summary(SCHEMA)


def test_summary_without_labels_is_refused_naming_the_key(tmp_path):
    document = json.loads(FLAT.read_text())
    del document["EvaluationDetails"]["Labels"]
    (tmp_path / "s.json").write_text(json.dumps(document))
    with pytest.raises(UserError, match=r"s\.json.*'Labels'"):
        read_summary(tmp_path / "s.json")
