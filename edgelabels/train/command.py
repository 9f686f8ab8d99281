"""`edgelabels train CONFIG|SOURCE [--set k=v ...] [--out runs/NAME] [--budget 30m] [--resume]`.

A .yaml/.yml file is a config; anything else is a data source, trained with every recipe key `auto`
(train/recipe.py chooses them from the data and the budget)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  edgelabels train ../shared/data/small-objects             # from the data alone: runs/small-objects
  edgelabels train ../shared/data/bees-yolo --set data.class_names=[bee]   # a YOLO folder without data.yaml
  edgelabels train ../shared/data/chest-xray-pneumonia/train --budget 1h \\
      --set data.group_by='^(person\\d+|IM-\\d+|NORMAL2-IM-\\d+)'  # one patient never spans two splits
  edgelabels train data/cassettes --set model.backbone=smallcnn --set train.epochs=12   # pin some choices
  edgelabels train configs/pneumonia.yaml --out runs/pneumonia
  edgelabels train configs/pneumonia.yaml --set model.backbone=vgg16 --set train.epochs=3
  edgelabels train configs/covid.yaml --set model.weights=run:runs/pneumonia   # in-domain transfer
  edgelabels train configs/pneumonia.yaml --out runs/pneumonia --resume        # after an interruption
  KERAS_BACKEND=jax edgelabels train configs/pneumonia.yaml --set train.distribute=data_parallel   # all GPUs
  KERAS_BACKEND=jax edgelabels train CONFIG --set train.distribute=data_parallel \\
      --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0      # on host 0 (host 1: --process-id 1)

SOURCE (no config): the task from the source (a folder per label, a Ground Truth manifest, a YOLO folder, a COCO
or Pascal VOC file, images/ + masks/); the recipe chooses every key of config.AUTO_KEYS (input size, tiling,
grayscale, backbone, weights, epochs, batch, learning rates, patience, warm-up, EMA, class weights, augmentation)
from the data, the --budget (default 30m) and a few training steps timed on this machine, and writes each choice
with its reason into the run: config.yaml (edit it and train it as a config), recipe.json and train.log.
A config may say `auto` for any of those keys too; --set pins any key either way.

model.weights: imagenet (default; needs the Keras weights file, downloaded once into ~/.keras/models),
none (random init), PATH (a no-top weights file), run:RUN_DIR (the backbone of an earlier run)."""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("config", metavar="CONFIG|SOURCE",
                        help="a YAML config (see configs/), or a data source to train from the data alone (the "
                             "recipe chooses every auto key); every key can be overridden with --set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: runs/<config name>, or runs/<source folder name>)")
    parser.add_argument("--budget", metavar="DURATION",
                        help="wall-clock budget of the training, e.g. 30m, 1h30m (train.budget; a SOURCE without it: "
                             "30m): the recipe sizes the epochs to it and training ends when it is spent")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="train.distribute: data_parallel over several processes or hosts: process 0's address "
                             "(also KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    parser.add_argument("--num-processes", type=int, metavar="N", help="how many processes train together "
                        "(also KERAS_DISTRIBUTION_NUM_PROCESSES)")
    parser.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1; only 0 writes the run "
                        "directory (also KERAS_DISTRIBUTION_PROCESS_ID)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its last completed epoch, with its saved config "
                             "(CONFIG is not read; --set and --budget are refused)")


def run(args) -> int:
    from edgelabels.artifacts import RunDir
    from edgelabels.config import load_config
    from edgelabels.errors import UserError
    from edgelabels.train.distribute import cluster_from
    from edgelabels.train.fit import train
    from edgelabels.train.recipe import source_config

    source = not is_config_file(args.config)
    out = args.out or Path("runs") / (_source_name(args.config) if source else Path(args.config).stem)
    if args.resume:
        # A cosine schedule sized for the saved epoch counts would not give what the new values promise.
        if args.overrides or args.budget:
            raise UserError(f"--set and --budget cannot change a resumed run: {out} continues with its saved "
                            f"config.yaml; to train with other settings start a new run (another --out, without "
                            f"--resume)")
        config = None  # the run's own saved config is used; CONFIG only names the default --out
        if RunDir(out).is_run():
            print(f"resuming {out} with its saved config.yaml ({args.config} is not read)", file=sys.stderr)
    elif source:
        # A YOLO data.yaml stands for its folder (data/detection.py reads the file there).
        folder = Path(args.config).parent if is_yolo_data_yaml(args.config) else args.config
        config = source_config(str(folder), args.overrides, args.budget)
    else:
        budget = [f"train.budget={json.dumps(args.budget)}"] if args.budget else []
        config = load_config(args.config, [*budget, *args.overrides])
    cluster = cluster_from(args.coordinator, args.num_processes, args.process_id)
    run_dir = train(config, out, resume=args.resume, cluster=cluster)
    print(f"run written to {run_dir} (model.keras, history.csv, train.log, splits/)", file=sys.stderr)
    print(f"next: edgelabels evaluate {run_dir}   then: edgelabels export {run_dir}", file=sys.stderr)
    return 0


def is_config_file(path: str) -> bool:
    """A YAML config by its name (.yaml/.yml), unless it is a YOLO data.yaml (class `names`, no config section);
    anything else is a data source (a folder, a manifest, a COCO file)."""
    return Path(path).suffix.lower() in (".yaml", ".yml") and not is_yolo_data_yaml(path)


def is_yolo_data_yaml(path: str) -> bool:
    """An Ultralytics data.yaml (`names:` beside train/val paths): what `yolo train data=...` takes."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # load_config says what is wrong with it
    return isinstance(document, dict) and "names" in document and not isinstance(document.get("train"), dict) \
        and not {"task", "data", "model", "augment"} & set(document)


def _source_name(source: str) -> str:
    """runs/<this>: the source folder's name (a manifest or COCO file: its folder's name, or its own stem)."""
    path = Path(source).resolve()
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path.parent.name or "run"
    if path.is_file():
        return path.parent.name or path.stem
    return path.name or "run"
