"""`edgelabels predict --engine ray` (issue 17, item 2): Ray Data batch inference into Parquet and JSONL shards.

The models are hand-made ONNX exports (helpers.server's classifier: mean colour decides the label;
helpers.detection's detector: four fixed boxes scored by channel means), so no training is needed and the
answers are known: a red image is "red". The Ray tests share one local cluster (`ray.init(num_cpus=2)`),
are marked slow and skip cleanly where Ray is not installed; the others need no Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgelabels.cli import main
from edgelabels.serve.ray_predict import JOB_FILE, answer_batch, input_files
from helpers.detection import write_detector_dir
from helpers.server import EDGELABELS, REPO, free_port, image_bytes, write_model_dir

COLOURS = {"red": (220, 30, 30), "green": (30, 220, 30), "blue": (30, 30, 220)}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-models")
    return {"classifier": write_model_dir(root / "classifier"), "detector": write_detector_dir(root / "detector")}


def _photos(folder: Path, per_colour: int = 3) -> dict[str, str]:
    """Noisy one-colour PNGs and JPEGs in two subfolders -> {absolute path: colour}."""
    written = {}
    for n in range(per_colour):
        for colour, rgb in COLOURS.items():
            fmt = "PNG" if n % 2 else "JPEG"
            path = folder / f"set{n % 2}" / f"{colour}-{n}.{'png' if fmt == 'PNG' else 'jpg'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(rgb, fmt=fmt, seed=n))
            written[str(path.absolute())] = colour
    return written


def _rows(out: Path) -> list[dict]:
    """Every JSONL row under --out, shard by shard."""
    return [json.loads(line) for shard in sorted((out / "jsonl").glob("part-*.jsonl"))
            for line in shard.read_text().splitlines()]


def _parquet_rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    shards = sorted((out / "parquet").glob("part-*.parquet"))
    return [row for shard in shards for row in pq.read_table(shard).to_pylist()]


def _in_process(model: Path, paths: list[str], capsys) -> dict[str, list]:
    """{image: CustomLabels} from today's in-process `predict`."""
    capsys.readouterr()
    main(["predict", str(model), *paths])
    return {line["Image"]: line["CustomLabels"] for line in map(json.loads, capsys.readouterr().out.splitlines())}


def _assert_same_answers(got: dict, expected: dict) -> None:
    """Same images, labels in the same order, same boxes; confidences equal to float32's precision, since
    onnxruntime's matrix products round differently for different batch sizes (Ray's batches are cut from its
    read blocks, in-process predict's from the file list)."""
    assert got.keys() == expected.keys()
    for path, labels in expected.items():
        assert [{k: v for k, v in label.items() if k != "Confidence"} for label in got[path]] == \
            [{k: v for k, v in label.items() if k != "Confidence"} for label in labels]
        assert [label["Confidence"] for label in got[path]] == \
            pytest.approx([label["Confidence"] for label in labels], abs=1e-3)


# -- without Ray ----------------------------------------------------------------------------------

def test_input_is_a_folder_a_glob_or_a_file_list_of_sorted_unique_absolute_paths(tmp_path, monkeypatch):
    photos = _photos(tmp_path / "photos")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    assert input_files(str(tmp_path / "photos")) == (sorted(photos), [])
    reds = sorted(p for p, colour in photos.items() if colour == "red")
    assert input_files(str(tmp_path / "photos" / "**" / "red-*")) == (reds, [])
    monkeypatch.chdir(tmp_path)
    listed = tmp_path / "list.txt"
    listed.write_text("# reds, one twice, one missing\n\nphotos/set0/red-0.jpg\n" + f"{reds[1]}\n"
                      "photos/set0/red-0.jpg\nphotos/gone.png\n")
    assert input_files("list.txt") == (sorted([str(tmp_path / "photos/set0/red-0.jpg"), reds[1],
                                               str(tmp_path / "photos/gone.png")]), [])


def test_an_input_with_no_images_or_that_does_not_exist_is_one_line_exit_2(tmp_path, models, capsys):
    (tmp_path / "empty").mkdir()
    for given in (tmp_path / "empty", tmp_path / "missing", tmp_path / "nothing-*.png"):
        code = main(["predict", str(models["classifier"]), "--input", str(given), "--out", str(tmp_path / "o"),
                     "--engine", "ray"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and str(given) in err[0]


@pytest.mark.parametrize("options, message", [
    (["--engine", "ray", "--out", "o"], "needs --input"),
    (["--engine", "ray", "--input", "p"], "needs --input FOLDER|GLOB|FILE_LIST and --out"),
    (["--engine", "ray", "--input", "p", "--out", "o", "--json-beside"], "--json-beside"),
    (["--engine", "ray", "--input", "p", "--out", "o", "--actors", "0"], "--actors must be at least 1"),
    (["p", "--actors", "2"], "are for --engine ray"),
])
def test_ray_options_are_checked_before_ray_starts(models, options, message, capsys):
    assert main(["predict", str(models["classifier"]), *options]) == 2
    assert message in capsys.readouterr().err


def test_predict_help_and_the_local_engine_do_not_import_ray(models, tmp_path):
    photos = _photos(tmp_path / "photos", per_colour=1)
    script = ("import contextlib, io, sys\nfrom edgelabels.cli import main\n"
              "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
              "    main(['predict', '--help'])\n"
              f"with contextlib.redirect_stdout(io.StringIO()):\n"
              f"    code = main(['predict', {str(models['classifier'])!r}, '--input', {str(tmp_path / 'photos')!r}])\n"
              "print(code, sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.split(None, 1) == ["0", "[]\n"], done.stderr
    assert len(photos) == 3


def test_local_engine_takes_input_like_paths(models, tmp_path, capsys):
    photos = _photos(tmp_path / "photos", per_colour=1)
    assert main(["predict", str(models["classifier"]), "--input", str(tmp_path / "photos" / "**" / "*.jpg")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["Image"] for line in lines] == sorted(p for p in photos if p.endswith(".jpg"))
    assert all(line["CustomLabels"][0]["Name"] == photos[line["Image"]] for line in lines)


def test_an_image_a_crop_stage_finds_nothing_in_is_an_empty_answer_not_an_error():
    class NoWindowHere:
        """prepare() as Predictor's behind a crop stage that finds no box: None, no answer."""

        def prepare(self, path, name=None):
            if path == "b.png":
                from edgelabels.errors import ImageProblem
                raise ImageProblem(name, "unrecognised content")
            return None

        def run_many(self, prepared):
            assert prepared == [None]
            return [[0.0, 0.0]]

        def custom_labels(self, row, min_confidence=None, max_results=None):
            return [] if not any(row) else [{"Name": "x", "Confidence": 1.0}]

    columns = answer_batch(NoWindowHere(), ["a.png", "b.png"])
    assert columns == {"path": ["a.png", "b.png"], "labels": ["[]", None], "error": [None, "unrecognised content"]}


def test_an_actor_given_paths_makes_a_missing_or_unreadable_file_an_error_row(tmp_path):
    from edgelabels.data.images import read_image

    (tmp_path / "here.png").write_bytes(image_bytes())
    (tmp_path / "a-folder.png").mkdir()
    paths = [str(tmp_path / name) for name in ("here.png", "gone.png", "a-folder.png")]

    class ReadsLikeTheEdgeModels:
        def prepare(self, image, name=None):
            return read_image(image, name=name)[0]

        def run_many(self, prepared):
            return [[1.0] for _ in prepared]

        def custom_labels(self, row, min_confidence=None, max_results=None):
            return [{"Name": "x", "Confidence": 1.0}]

    columns = answer_batch(ReadsLikeTheEdgeModels(), paths)
    assert columns["path"] == paths
    assert columns["labels"][0] is not None and columns["labels"][1:] == [None, None]
    assert columns["error"][0] is None
    assert columns["error"][1] == "file not found"
    assert columns["error"][2].startswith("cannot read file")


def test_an_address_where_nothing_listens_is_one_line_exit_1_within_seconds_and_out_stays_unwritten(
        models, tmp_path, capsys):
    # Issue 25 item 4: ray.init retried such an address for 400+ s, logging GCS warnings, after writing the job.
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    _photos(tmp_path / "photos", per_colour=1)
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["predict", str(models["classifier"]), "--input", str(tmp_path / "photos"), "--out",
                 str(tmp_path / "out"), "--engine", "ray", "--address", address])
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"edgelabels: error: --address {address}: no Ray cluster answers there")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("under", ["", "sub"])
def test_an_out_folder_that_cannot_be_written_is_one_line_exit_2(models, tmp_path, under, capsys):
    # Issue 25 item 5: a file where --out (or one of its parents) should be ended in a traceback.
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    _photos(tmp_path / "photos", per_colour=1)
    (tmp_path / "a-file").write_text("mine")
    out = tmp_path / "a-file" / under if under else tmp_path / "a-file"
    code = main(["predict", str(models["classifier"]), "--input", str(tmp_path / "photos"), "--out", str(out),
                 "--engine", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(out) in err[0] and "Traceback" not in err[0], err
    assert (tmp_path / "a-file").read_text() == "mine"


# -- on a local Ray cluster -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "detector"])
def test_ray_rows_equal_in_process_predict_and_bad_images_are_error_rows(ray_cluster, models, kind, tmp_path,
                                                                         capsys):
    photos = _photos(tmp_path / "photos")
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "photos" / "empty.png").write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text("\n".join([*photos, str(tmp_path / "photos" / "broken.jpg"),
                                 str(tmp_path / "photos" / "empty.png"), str(tmp_path / "missing.png")]))
    out = tmp_path / "out"
    code = main(["predict", str(models[kind]), "--input", str(listed), "--out", str(out), "--engine", "ray",
                 "--shard-size", "4", "--batch-size", "3", "--min-confidence", "0"])
    assert code == 0
    rows = _rows(out)
    assert [row["path"] for row in rows] == sorted([*photos, str(tmp_path / "photos/broken.jpg"),
                                                    str(tmp_path / "photos/empty.png"), str(tmp_path / "missing.png")])
    assert _parquet_rows(out) == [{**row, "labels": None if row["labels"] is None else json.dumps(row["labels"])}
                                  for row in rows]
    assert len(list((out / "jsonl").glob("*.jsonl"))) == 3  # 12 files, 4 per shard
    errors = {Path(row["path"]).name: row["error"] for row in rows if row["error"]}
    assert errors == {"broken.jpg": "truncated image data", "empty.png": "empty file (0 bytes)",
                      "missing.png": "file not found"}
    assert all(row["labels"] is None for row in rows if row["error"])
    capsys.readouterr()
    expected = _in_process(models[kind], [*photos, "--min-confidence", "0"], capsys)
    _assert_same_answers({row["path"]: row["labels"] for row in rows if not row["error"]}, expected)
    top = {row["path"]: row["labels"][0]["Name"] for row in rows if not row["error"]}
    if kind == "classifier":  # the mean colour decides
        assert top == photos
    else:  # each box is scored by its channel's mean: the box of the image's colour is the most confident
        assert top == photos
        assert all("BoundingBox" in label["Geometry"] for row in rows if not row["error"] for label in row["labels"])


@pytest.mark.slow
def test_a_rerun_writes_nothing_new_and_another_file_list_is_refused(ray_cluster, models, tmp_path, capsys):
    _photos(tmp_path / "photos")
    out = tmp_path / "out"
    command = ["predict", str(models["classifier"]), "--input", str(tmp_path / "photos"), "--out", str(out),
               "--engine", "ray", "--shard-size", "4"]
    assert main(command) == 0
    written = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert len(written) == 1 + 2 * 3  # the job file and 9 images in 3 shards, twice
    capsys.readouterr()
    assert main(command) == 0
    assert "3 already in" in capsys.readouterr().err
    shards_now = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert {p: s for p, s in shards_now.items() if p.name != JOB_FILE} == \
        {p: s for p, s in written.items() if p.name != JOB_FILE}
    (tmp_path / "photos" / "set0" / "late.png").write_bytes(image_bytes(COLOURS["red"]))
    assert main(command) == 2
    assert "holds the results of another job (files, files_sha256 differ)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_job_resumes_without_duplicates(ray_cluster, models, tmp_path, capsys):
    # Large JPEGs, one actor, small shards: the job takes seconds after Ray's start-up, so the kill lands mid-job.
    blob = image_bytes(COLOURS["green"], size=(1024, 768), fmt="JPEG")
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(160):
        (folder / f"{n:03d}.jpg").write_bytes(blob)
    out = tmp_path / "out"
    options = ["--input", str(folder), "--out", str(out), "--engine", "ray", "--shard-size", "8", "--batch-size",
               "2", "--actors", "1"]
    log = open(tmp_path / "killed.log", "wb")
    job = subprocess.Popen([str(EDGELABELS), "predict", str(models["classifier"]), *options], stdout=log,
                           stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not list((out / "jsonl").glob("part-*.jsonl")) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and the Ray it started, as a lost node would
        job.wait()
        log.close()
    before = {p: p.stat().st_ino for p in (out / "jsonl").glob("part-*.jsonl")}
    assert 0 < len(before) < 20, (tmp_path / "killed.log").read_text(errors="replace")
    capsys.readouterr()
    assert main(["predict", str(models["classifier"]), *options]) == 0
    assert f"{len(before)} already in" in capsys.readouterr().err
    rows = _rows(out)
    assert [row["path"] for row in rows] == [str(p) for p in sorted(folder.iterdir())]  # each once, in order
    assert all(row["error"] is None and row["labels"][0]["Name"] == "green" for row in rows)
    assert len(_parquet_rows(out)) == 160
    assert {p: p.stat().st_ino for p in before} == before  # the shards written before the kill were kept
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # temp files of the killed writer swept


@pytest.mark.slow
def test_an_actor_that_dies_stops_the_job_with_one_line_and_a_rerun_finishes_it(ray_cluster, models, tmp_path,
                                                                                capsys, monkeypatch):
    # A model whose process dies on one image (as a native crash in a decoder would): Ray Data's default would
    # restart the actor and retry that batch forever; the job must stop instead, keep what it wrote, and say so.
    from edgelabels.serve import ray_predict

    real = ray_predict.open_edge_model

    def crashing_model(model_dir, **options):  # a local function: Ray pickles it by value for the actors
        model = real(model_dir, **options)

        class Crashing(type(model)):
            def prepare(self, image, name=None):
                if "crash" in str(name):
                    os._exit(3)
                return super().prepare(image, name=name)

        model.__class__ = Crashing
        return model

    photos = _photos(tmp_path / "photos")
    (tmp_path / "photos" / "zz-crash.png").write_bytes(image_bytes(COLOURS["red"]))
    out = tmp_path / "out"
    command = ["predict", str(models["classifier"]), "--input", str(tmp_path / "photos"), "--out", str(out),
               "--engine", "ray", "--shard-size", "4", "--actors", "1"]
    monkeypatch.setattr(ray_predict, "open_edge_model", crashing_model)
    capsys.readouterr()
    started = time.monotonic()
    assert main(command) == 1
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    failure = [line for line in err.splitlines() if line.startswith("edgelabels: error:")]
    assert len(failure) == 1 and "the Ray job stopped" in failure[0] and "resumes" in failure[0], err
    assert "Traceback" not in err
    written = {Path(row["path"]).name for row in _rows(out)}
    assert "zz-crash.png" not in written  # its shard (the last) was not written
    monkeypatch.setattr(ray_predict, "open_edge_model", real)
    assert main(command) == 0
    rows = _rows(out)
    assert [row["path"] for row in rows] == sorted([*photos, str(tmp_path / "photos" / "zz-crash.png")])
    assert all(row["error"] is None for row in rows)
