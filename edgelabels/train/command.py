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

model.weights: imagenet (default; needs the Keras weights file, downloaded once into ~/.keras/models),
none (random init), PATH (a no-top weights file), run:RUN_DIR (the backbone of an earlier run)."""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("config", help="YAML config (see configs/); every key can be overridden with --set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its last completed epoch, with its saved config "
                             "(CONFIG is not read; --set is refused)")


def run(args) -> int:
    from edgelabels.artifacts import RunDir
    from edgelabels.config import load_config
    from edgelabels.errors import UserError
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
    run_dir = train(config, out, resume=args.resume)
    print(f"run written to {run_dir} (model.keras, history.csv, train.log, splits/)", file=sys.stderr)
    print(f"next: edgelabels evaluate {run_dir}   then: edgelabels export {run_dir}", file=sys.stderr)
    return 0
