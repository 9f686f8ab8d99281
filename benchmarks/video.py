"""Video at the edge (issue 30): frames per second of `predict --video`, decode included, one frame a model call.

    .venv/bin/python benchmarks/video.py --bees RUN_OR_EXPORT [--tiled EXPORT] [--seconds 10] [--out DIR]

Two cases, each on a video written here from real frames (../shared/data/bees-yolo's images, and for the tiled
case small-objects' aerial frames), H.264 (libx264) at 30 fps:
- the bees detector at its own input size (an earlier run's export: preprocess.json says the size) on a 640x480
  file, every frame answered (video_answers: decode, prepare, the model at batch 1, answers, the tracker);
- a tiled detector (tile_scale set, e.g. the aerial cars export) on a 1920x1080 file.
For each: decode alone (open_frames, RGB frames), then the whole loop, in frames per second, with the model's
threads at onnxruntime's default (one per core). Prints one JSON document; --out also writes it as video.json.
Measured figures belong in the README with the date and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


def pictures(folder: Path, limit: int = 40) -> list[Image.Image]:
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    if not found:
        raise SystemExit(f"no images under {folder}")
    return [Image.open(p).convert("RGB") for p in found]


def write_footage(path: Path, sources: list[Image.Image], size: tuple[int, int], seconds: float, fps: int = 30):
    """Each source picture for half a second, scaled to cover `size` and panned a little every frame (so that
    consecutive frames differ as a camera's do and the encoder has real motion to code)."""
    from edgelabels.runtime.video import VideoWriter

    width, height = size
    frames = int(seconds * fps)
    with VideoWriter(path, fps, size) as writer:
        for i in range(frames):
            picture = sources[(i // (fps // 2)) % len(sources)]
            scale = max(width / picture.width, height / picture.height) * 1.1
            big = picture.resize((int(picture.width * scale) + 1, int(picture.height * scale) + 1))
            shift = (i % (fps // 2)) * 2
            left = min(shift, big.width - width)
            writer.write(big.crop((left, 0, left + width, height)))
    return frames


def decode_fps(path: Path) -> float:
    from edgelabels.runtime.video import open_frames

    started, count = time.perf_counter(), 0
    for _ in open_frames(str(path)):
        count += 1
    return count / (time.perf_counter() - started)


def answer_fps(export: Path, path: Path) -> dict:
    from edgelabels.runtime.answers import open_edge_model
    from edgelabels.runtime.video_answers import video_answers

    model = open_edge_model(export)
    answers = video_answers(model, str(path))
    started, count, boxes = time.perf_counter(), 0, 0
    for answer in answers:
        count += 1
        boxes += len(answer["CustomLabels"])
    seconds = time.perf_counter() - started
    summary = answers.summary()
    return {"frames": count, "seconds": round(seconds, 2), "frames_per_second": round(count / seconds, 1),
            "boxes_answered": boxes,
            "objects_counted": {k: v["Count"] for k, v in summary.get("Objects", {}).items()}}


def export_of(path: Path) -> Path:
    return path / "export" if (path / "export" / "model.onnx").is_file() else path


def case(name: str, export: Path, sources: list[Image.Image], size: tuple[int, int], seconds: float,
         folder: Path) -> dict:
    spec = json.loads((export / "preprocess.json").read_text())
    video = folder / f"{name}.mp4"
    frames = write_footage(video, sources, size, seconds)
    result = {"export": str(export), "input": f"{spec['width']}x{spec['height']}",
              "tile_scale": spec.get("tile_scale"), "video": f"{size[0]}x{size[1]} H.264, {frames} frames at 30 fps",
              "decode_frames_per_second": round(decode_fps(video), 1)}
    result.update(answer_fps(export, video))
    print(f"{name}: {result}", file=sys.stderr)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bees", type=Path, required=True, help="the bees detector: a run or its export folder")
    parser.add_argument("--tiled", type=Path, help="a tiled detector export (preprocess.json's tile_scale set)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each test video (default 10)")
    parser.add_argument("--out", type=Path, help="also write video.json here")
    args = parser.parse_args(argv)
    report = {"machine": f"{os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report["bees_640x480"] = case("bees", export_of(args.bees), pictures(SHARED / "bees-yolo" / "images"),
                                      (640, 480), args.seconds, folder)
        if args.tiled:
            report["tiled_1080p"] = case("tiled", export_of(args.tiled),
                                         pictures(SHARED / "small-objects", limit=10), (1920, 1080),
                                         min(args.seconds, 5.0), folder)
    print(json.dumps(report, indent=2))
    if args.out:
        from edgelabels import atomic

        args.out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(args.out / "video.json", json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
