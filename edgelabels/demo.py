"""`edgelabels demo`: the whole job on synthetic lateral-flow cassette photos, in minutes on a laptop CPU.

1. generate a training set (about 90% negative, as in the real problem) and a fresh test set (another seed)
2. train configs/cassettes.yaml
3. evaluate on the fresh photos: Rekognition-style summary, coverage table, review queue, report.html
4. export to ONNX
5. predict a few fresh photos with the edge runtime (no TensorFlow)

Each step runs the same verb a user would run; a step whose result is already there is skipped, so
an interrupted demo picks up where it stopped.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgelabels.errors import UserError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cassettes.yaml"


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where everything goes (default: %(default)s)")
    parser.add_argument("--train-images", type=int, default=2400, help="synthetic training photos (default: %(default)s)")
    parser.add_argument("--test-images", type=int, default=1000, help="fresh test photos, another seed (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of configs/cassettes.yaml, e.g. --set train.epochs=3")
    parser.add_argument("--review-threshold", type=float, default=0.99,
                        help="images below this top confidence go to the review queue (default: %(default)s)")


def _step(number: int, text: str) -> float:
    print(f"\n[{number}/5] {text}", file=sys.stderr, flush=True)
    return time.monotonic()


def _done(start: float) -> None:
    print(f"      done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


def _generate(folder: Path, n: int, seed: int) -> None:
    from edgelabels.data.synthetic import generate_cassettes

    marker = folder / "cassettes.json"  # written by the generator, last, with what it made
    made = json.loads(marker.read_text()) if marker.exists() else {}
    if (made.get("n"), made.get("seed")) == (n, seed):
        print(f"      {folder} already generated", file=sys.stderr)
        return
    counts = generate_cassettes(folder, n, seed=seed, workers=2)
    print(f"      {folder}: {counts}", file=sys.stderr)


def _verb(*argv) -> None:
    from edgelabels.cli import main

    code = main([str(a) for a in argv])
    if code:
        raise UserError(f"demo stopped: `edgelabels {' '.join(map(str, argv))}` exited with code {code}")


def run(args) -> int:
    from edgelabels.artifacts import RunDir
    from edgelabels.config import load_config
    from edgelabels.evaluate.evaluation import METRICS_FILE
    from edgelabels.train.fit import train

    if not CONFIG.is_file():
        raise UserError(f"{CONFIG}: demo config missing (run the demo from a clone of the repository)")
    out = args.out
    train_dir, fresh_dir = out / "data" / "cassettes", out / "data" / "fresh"
    run = RunDir(out / "runs" / "cassettes")
    run_dir = run.dir
    total = time.monotonic()

    start = _step(1, f"generating {args.train_images} training and {args.test_images} fresh test cassette photos")
    _generate(train_dir, args.train_images, args.seed)
    _generate(fresh_dir, args.test_images, args.seed + 1000)
    _done(start)

    start = _step(2, f"training {CONFIG.name} into {run_dir}")
    if run.train_state("val_loss").data["done"]:
        print(f"      {run_dir} already trained (delete it to train again)", file=sys.stderr)
    else:
        config = load_config(CONFIG, [f"data.source={train_dir}", f"seed={args.seed}", *args.overrides])
        train(config, run_dir, resume=run.is_run())
    _done(start)

    start = _step(3, "evaluating on the fresh photos (realistic mix, never seen in training)")
    _verb("evaluate", run_dir, "--data", fresh_dir, "--review-threshold", args.review_threshold)
    _done(start)

    start = _step(4, "exporting to ONNX")
    _verb("export", run_dir)
    _done(start)

    start = _step(5, "predicting three fresh photos with the edge runtime (onnxruntime, no TensorFlow)")
    examples = [sorted((fresh_dir / label).glob("*.jpg"))[:1] for label in ("positive", "negative", "invalid")]
    _verb("predict", run.export_dir, *[p for group in examples for p in group])
    _done(start)

    metrics_path = run.evaluation_dir / METRICS_FILE
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        print("\nConfidence threshold vs coverage on the fresh photos:", file=sys.stderr)
        print(f"  {'threshold':>9}  {'accuracy of accepted':>20}  {'sent to a human':>15}", file=sys.stderr)
        for row in metrics.get("coverage", []):
            accuracy = row.get("accuracy")
            shown = "-" if accuracy is None else f"{100 * accuracy:.2f}%"
            print(f"  {row['threshold']:>9}  {shown:>20}  {100 * row['discarded_fraction']:>14.1f}%", file=sys.stderr)
    print(f"\nDemo finished in {time.monotonic() - total:.0f} s. Open {run.evaluation_dir / 'report.html'}",
          file=sys.stderr)
    return 0
