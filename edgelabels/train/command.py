"""`edgelabels train CONFIG [--set k=v ...] [--out runs/NAME] [--resume]`."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = """\
examples:
  edgelabels train configs/pneumonia.yaml --out runs/pneumonia
  edgelabels train configs/pneumonia.yaml --set model.backbone=vgg16 --set train.epochs=3
  edgelabels train configs/covid.yaml --set model.weights=run:runs/pneumonia   # in-domain transfer
  edgelabels train configs/pneumonia.yaml --out runs/pneumonia --resume        # after an interruption
  KERAS_BACKEND=jax edgelabels train configs/pneumonia.yaml --set train.distribute=data_parallel   # all GPUs
  KERAS_BACKEND=jax edgelabels train CONFIG --set train.distribute=data_parallel \
      --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0      # on host 0 (host 1: --process-id 1)

model.weights: imagenet (default; needs the Keras weights file, downloaded once into ~/.keras/models),
none (random init), PATH (a no-top weights file), run:RUN_DIR (the backbone of an earlier run)."""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("config", help="YAML config (see configs/); every key can be overridden with --set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: runs/<config name>)")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="train.distribute: data_parallel over several processes or hosts: process 0's address "
                             "(also KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    parser.add_argument("--num-processes", type=int, metavar="N", help="how many processes train together "
                        "(also KERAS_DISTRIBUTION_NUM_PROCESSES)")
    parser.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1; only 0 writes the run "
                        "directory (also KERAS_DISTRIBUTION_PROCESS_ID)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its last completed epoch, with its saved config "
                             "(CONFIG is not read; --set is refused)")


def run(args) -> int:
    from edgelabels.artifacts import RunDir
    from edgelabels.config import load_config
    from edgelabels.errors import UserError
    from edgelabels.train.distribute import cluster_from
    from edgelabels.train.fit import train

    out = args.out or Path("runs") / Path(args.config).stem
    if args.resume:
        # A cosine schedule sized for the saved epoch counts would not give what the new values promise.
        if args.overrides:
            raise UserError(f"--set cannot change a resumed run: {out} continues with its saved config.yaml; to train "
                            f"with other settings start a new run (another --out, without --resume)")
        config = None  # the run's own saved config is used; CONFIG only names the default --out
        if RunDir(out).is_run():
            print(f"resuming {out} with its saved config.yaml ({args.config} is not read)", file=sys.stderr)
    else:
        config = load_config(args.config, args.overrides)
    cluster = cluster_from(args.coordinator, args.num_processes, args.process_id)
    run_dir = train(config, out, resume=args.resume, cluster=cluster)
    print(f"run written to {run_dir} (model.keras, history.csv, train.log, splits/)", file=sys.stderr)
    print(f"next: edgelabels evaluate {run_dir}   then: edgelabels export {run_dir}", file=sys.stderr)
    return 0
