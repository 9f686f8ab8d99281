"""runtime/answers.py: the one edge answer stream (open an export, list its images, answer each one).

Hand-made ONNX exports (helpers.server's classifier: the mean colour decides the label; helpers.detection's
detector: fixed boxes scored by channel means), so no training is needed and the answers are known.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgelabels.errors import UserError
from edgelabels.runtime.answers import answer_images, find_images, list_images, open_edge_model
from edgelabels.runtime.detector import Detector
from edgelabels.runtime.predictor import Predictor
from helpers.detection import write_detector_dir
from helpers.server import image_bytes, write_model_dir, write_unet_dir

RED, GREEN, BLUE = (220, 30, 30), (30, 220, 30), (30, 30, 220)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("answers")
    return {"classifier": write_model_dir(root / "classifier"), "detector": write_detector_dir(root / "detector"),
            "unet": write_unet_dir(root / "unet")}


def _without_confidence(response: dict) -> list[dict]:
    return [{k: v for k, v in label.items() if k != "Confidence"} for label in response["CustomLabels"]]


# -- open_edge_model -------------------------------------------------------------------------------

def test_open_edge_model_gives_the_export_task_edge_class(exports):
    assert type(open_edge_model(exports["classifier"])) is Predictor
    assert type(open_edge_model(exports["detector"], precision="fp32", threads=1)) is Detector


def test_open_edge_model_refuses_a_unet_export_naming_the_segment_verb(exports):
    with pytest.raises(UserError) as refused:
        open_edge_model(exports["unet"])
    assert "`edgelabels segment" in str(refused.value) and "\n" not in str(refused.value)


# -- list_images -----------------------------------------------------------------------------------

def test_list_images_takes_folders_globs_list_files_and_images_in_the_order_given(tmp_path, monkeypatch):
    for name in ("b/2.png", "b/1.jpg", "a.png", ".hidden.png", "notes.txt", "c/deep/3.JPEG"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    Path("list.txt").write_text("# a comment\n\nphotos/a.png\nphotos/gone.png\n")
    images, problems = list_images(["photos/a.png", "photos", "photos/b/*.png", "list.txt"])
    assert images == [Path("photos/a.png"), Path("photos/a.png"), Path("photos/b/1.jpg"), Path("photos/b/2.png"),
                      Path("photos/c/deep/3.JPEG"), Path("photos/b/2.png"), Path("photos/a.png"),
                      Path("photos/gone.png")]
    assert problems == []
    assert list_images(["photos"], recursive=False) == ([Path("photos/a.png")], [])
    found, _ = find_images(["photos"])
    assert [str(listed.relative) for listed in found] == ["a.png", "b/1.jpg", "b/2.png", "c/deep/3.JPEG"]


def test_a_missing_input_and_a_glob_matching_nothing_are_problems(tmp_path):
    images, problems = list_images([tmp_path / "gone", str(tmp_path / "none-*.png")])
    assert images == []
    assert problems == [f"{tmp_path / 'gone'}: no such file or folder",
                        f"{tmp_path / 'none-*.png'}: no file matches this pattern"]


def test_a_dangling_link_named_like_an_image_is_a_listed_problem_not_skipped(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "ok.png").write_bytes(b"x")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "photos" / "dangling.png")
    os.symlink(tmp_path / "nowhere.txt", tmp_path / "photos" / "dangling.txt")  # not named like an image
    for given in ([tmp_path / "photos"], [str(tmp_path / "photos" / "*")]):
        images, problems = list_images(given)
        assert images == [tmp_path / "photos" / "ok.png"]
        assert problems == [f"{tmp_path / 'photos' / 'dangling.png'}: broken symbolic link "
                            f"(to {tmp_path / 'nowhere.png'})"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_image_and_an_unlistable_folder_are_listed_problems(tmp_path):
    (tmp_path / "photos" / "locked").mkdir(parents=True)
    (tmp_path / "photos" / "secret.png").write_bytes(b"x")
    (tmp_path / "photos" / "secret.png").chmod(0)
    (tmp_path / "photos" / "locked").chmod(0)
    try:
        images, problems = list_images([tmp_path / "photos"])
    finally:
        (tmp_path / "photos" / "locked").chmod(0o755)
    assert images == []
    assert sorted(problems) == [f"{tmp_path / 'photos' / 'locked'}: cannot list folder (Permission denied)",
                                f"{tmp_path / 'photos' / 'secret.png'}: cannot read file (permission denied)"]


# -- answer_images ---------------------------------------------------------------------------------

def test_answers_come_in_order_with_decode_problems_as_answers(exports, tmp_path):
    (tmp_path / "red.png").write_bytes(image_bytes(RED))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "blue.jpg").write_bytes(image_bytes(BLUE, fmt="JPEG"))
    paths = [tmp_path / "red.png", tmp_path / "broken.jpg", tmp_path / "gone.png", tmp_path / "blue.jpg"]
    model = open_edge_model(exports["classifier"])
    answers = list(answer_images(model, paths, batch_size=2))
    assert [answer.path for answer in answers] == paths
    assert [answer.error for answer in answers] == [None, "truncated image data", "file not found", None]
    assert answers[0].response["CustomLabels"][0]["Name"] == "red"
    assert answers[3].response["CustomLabels"][0]["Name"] == "blue"
    assert answers[1].response is None and answers[2].response is None


def test_min_confidence_and_max_results_apply_as_the_model_own_detect_does(exports, tmp_path):
    for kind in ("classifier", "detector"):
        model = open_edge_model(exports[kind])
        images = [image_bytes(colour) for colour in (RED, GREEN, BLUE, (120, 120, 120))]
        for options in ({}, {"min_confidence": 0}, {"min_confidence": 0, "max_results": 1}, {"min_confidence": 100}):
            answers = list(answer_images(model, images, batch_size=3, **options))
            for answer, image in zip(answers, images, strict=True):
                # Confidences to float32's precision: onnxruntime rounds a batch of 3 unlike a batch of 1.
                assert _without_confidence(answer.response) == _without_confidence(model.detect(image, **options))
                assert [label["Confidence"] for label in answer.response["CustomLabels"]] == pytest.approx(
                    [label["Confidence"] for label in model.detect(image, **options)["CustomLabels"]], abs=1e-3)
        everything = list(answer_images(model, images[:1], min_confidence=0))[0].response["CustomLabels"]
        assert len(everything) >= 3  # not vacuous: MinConfidence 0 answers every label (every box)


def test_a_timer_accumulates_model_seconds_and_one_image_runs_without_threads(exports, tmp_path):
    model = open_edge_model(exports["classifier"])
    timer = {}
    answers = list(answer_images(model, [image_bytes(RED)] * 5, batch_size=2, timer=timer))
    assert len(answers) == 5 and timer["seconds"] > 0
    seconds = timer["seconds"]
    list(answer_images(model, [image_bytes(RED, fmt="JPEG")], timer=timer))
    assert timer["seconds"] > seconds


def test_an_image_a_stage_finds_nothing_in_is_an_empty_answer():
    class NoWindowHere:
        """prepare() as a Predictor's behind a crop stage that finds no box: None, no answer."""

        def prepare(self, image, name=None):
            return None

        def run_many(self, prepared):
            assert prepared == [None, None]
            return [[0.0, 0.0], [0.0, 0.0]]

        def custom_labels(self, row, min_confidence=None, max_results=None):
            return [] if not any(row) else [{"Name": "x", "Confidence": 1.0}]

    answers = list(answer_images(NoWindowHere(), ["a.png", "b.png"]))
    assert [(answer.response, answer.error) for answer in answers] == [({"CustomLabels": []}, None)] * 2
