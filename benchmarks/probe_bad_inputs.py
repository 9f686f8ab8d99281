"""Hostile probes of the surfaces issue 25 named, run against one checkout; prints probe -> outcome as JSON.

    .venv/bin/python benchmarks/probe_bad_inputs.py REPO WORK_DIR

Each probe runs `python -m edgelabels.cli ...` with PYTHONPATH=REPO (so an older checkout can be probed with this
venv) and reports its exit code, whether it ended in a traceback, its time and its last stderr line: malformed box
datasets (NaN and 1e308 boxes, duplicate COCO ids, a BOM), unwritable --out, `--engine ray --address` with nothing
listening, a dangling symlink, config values out of range, crop: without detect:, KERAS_BACKEND=bogus.
"""
import json, os, socket, subprocess, sys, time
from pathlib import Path
import numpy as np
from PIL import Image

REPO = Path(sys.argv[1]); WORK = Path(sys.argv[2]); WORK.mkdir(parents=True, exist_ok=True)
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
sys.path.insert(0, str(REPO / "tests"))

def cli(*args, timeout=60):
    start = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "edgelabels.cli", *map(str, args)], env=ENV, capture_output=True,
                           text=True, timeout=timeout, cwd=WORK)
        err = r.stderr.strip().splitlines()
        tb = any(l.startswith("Traceback") for l in err)
        last = err[-1][:150] if err else ""
        return f"exit {r.returncode}{' TRACEBACK' if tb else ''} in {time.monotonic()-start:.0f} s: {last}"
    except subprocess.TimeoutExpired:
        return f"still running after {timeout} s (killed)"

def img(path, size=(80, 64), colour=(200, 40, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)

rows = {}
# 1: COCO bbox with NaN width
coco = WORK / "coco"; img(coco / "a.png"); img(coco / "b.png")
(coco / "ann.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 64},
    {"id": 2, "file_name": "b.png", "width": 80, "height": 64}],
    "categories": [{"id": 1, "name": "bee"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, float("nan"), 10]},
                    {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 20, 10]}]}))
rows["1 COCO bbox width NaN: dataset inspect --json"] = cli("dataset", "inspect", coco / "ann.json", "--json", WORK / "i1.json")
# 1b: YOLO 1e308
yolo = WORK / "yolo"; img(yolo / "images" / "a.png"); img(yolo / "images" / "b.png")
(yolo / "labels").mkdir(parents=True, exist_ok=True)
(yolo / "labels" / "a.txt").write_text("0 0.5 0.5 1e308 1e308\n"); (yolo / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
rows["1 YOLO line 0 0.5 0.5 1e308 1e308: dataset inspect --json"] = cli("dataset", "inspect", yolo, "--class-names", "bee", "--json", WORK / "i1b.json")
# 2: COCO duplicate image ids
coco2 = WORK / "coco2"; img(coco2 / "a.png"); img(coco2 / "b.png")
(coco2 / "ann.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 64},
    {"id": 1, "file_name": "b.png", "width": 80, "height": 64}], "categories": [{"id": 1, "name": "bee"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 10]}]}))
rows["2 COCO two images with one id: dataset inspect"] = cli("dataset", "inspect", coco2 / "ann.json")
# 9: YOLO with BOM
yolo3 = WORK / "yolo-bom"; img(yolo3 / "images" / "a.png"); (yolo3 / "labels").mkdir(parents=True, exist_ok=True)
(yolo3 / "labels" / "a.txt").write_bytes("\ufeff0 0.5 0.5 0.2 0.2\n".encode("utf-8"))
rows["9 YOLO label file with a UTF-8 BOM: dataset inspect"] = cli("dataset", "inspect", yolo3, "--class-names", "bee")
# 5/9: predict on a hand-built export
from helpers.server import write_model_dir
export = write_model_dir(WORK / "export")
photo = WORK / "photo.png"; img(photo)
(WORK / "afile").write_text("x")
rows["5 predict --out FILE"] = cli("predict", export, photo, "--out", WORK / "afile")
rows["5 predict --out under a file"] = cli("predict", export, photo, "--out", WORK / "afile" / "sub")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
rows["4 predict --engine ray --address 127.0.0.1:FREE_PORT"] = cli("predict", export, "--input", photo, "--engine", "ray",
                                                                  "--address", f"127.0.0.1:{port}", "--out",
                                                                  WORK / "ray-out", timeout=60)
rows["4 ... and --out before the connection"] = f"ray-out exists: {(WORK / 'ray-out').exists()}"
folder = WORK / "links"; folder.mkdir(exist_ok=True); img(folder / "good.png")
if not (folder / "gone.png").is_symlink(): os.symlink(WORK / "nowhere.png", folder / "gone.png")
rows["9 predict on a folder with a dangling link gone.png"] = cli("predict", export, folder)
# 6: config ranges (train stops at the check, or starts: killed at 60 s)
stripes = WORK / "stripes"
for label, c in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
    for i in range(6): img(stripes / label / f"{label}{i}.png", colour=c)
base = ["train", REPO / "configs" / "pneumonia.yaml", "--set", f"data.source={stripes}",
        "--set", "model.weights=none", "--set", "model.backbone=tinycnn", "--set", "data.image_size=32",
        "--set", "train.epochs=1", "--set", "train.fine_tune_epochs=0", "--set", "data.group_by=null"]
for probe in ("seed=-1", "model.dropout=1.5", "train.learning_rate=-1", "data.image_size=100000", "train.epochs=100000000000000000000000"):
    rows[f"6 train --set {probe}"] = cli(*base, "--set", probe, "--out", WORK / f"run-{probe.split('=')[0]}", timeout=60)
rows["9 train with crop.label=window and no detect:"] = cli(*base, "--set", "crop.label=window", "--out", WORK / "run-crop", timeout=60)
rows["5 train --out FILE"] = cli(*base, "--out", WORK / "afile", timeout=60)
ENV["KERAS_BACKEND"] = "bogus"
rows["9 KERAS_BACKEND=bogus train"] = cli(*base, "--out", WORK / "run-bogus", timeout=60)
rows["9 ... run folder left"] = f"run-bogus exists: {(WORK / 'run-bogus').exists()}"
print(json.dumps(rows, indent=1))
