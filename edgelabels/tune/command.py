"""`edgelabels tune CONFIG --budget 30m [--out runs/NAME-tune] [--resume] [--set k=v ...]`."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = """\
examples:
  edgelabels tune configs/pneumonia.yaml --budget 60m --out runs/pneumonia-tune
  edgelabels tune configs/bees.yaml --budget 30m --set tune.backbone=[smallcnn,tinycnn]
  edgelabels tune configs/pneumonia.yaml --out runs/pneumonia-tune --resume   # after an interruption (kill -9 too)

The experiments Rekognition runs for you, on your machine, within the time you give: an Optuna study (TPE,
seeded by the config's seed) whose first trial is the config as written and whose trials are ordinary run
directories (OUT/trials/NNNN/), each trained in its own process and pruned by epochs when it falls behind.
The budget is wall-clock and covers everything: the search, then the best trial by validation evaluated
once on its test split and exported. Outputs: OUT/best (the chosen run: evaluate, export, serve take it),
OUT/trials.csv, OUT/report.html; one line per trial on the terminal.

Trials are ranked on train.monitor's validation value, except that val_loss does not rank trials whose loss
functions differ: when the search includes imbalance focal beside another choice (the classification default),
focal's loss is some 16 times smaller for the same predictions, so the study ranks on val_auc instead (and
each trial keeps its best epoch by val_auc); the first line printed says which value is used.

The search space is the config's tune: section; a key left out takes its task's default:
  tune:
    learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range (must hold train.learning_rate)
    batch_size: [16, 32]                # a list: these choices plus the config's own value
    backbone: smallcnn                  # one value: fixed
    imbalance: [none, class-weights, oversample, focal]   # classification
    transforms: {Rotate.limit: [5, 15]} # a parameter of augment.transforms
    pruner: successive-halving          # or hyperband, none; min_epochs, reduction_factor
Searchable: backbone, image_size, learning_rate, fine_tune_learning_rate, batch_size, dropout,
fine_tune_layers, augment (the preset), transforms, imbalance."""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("config", help="YAML config (see configs/): the starting point and its tune: section")
    parser.add_argument("--budget", default=None, metavar="DURATION",
                        help="wall-clock time for everything, e.g. 30m, 90s, 1h30m (required for a new study; with "
                             "--resume, the time to add: by default what is left of the study's budget)")
    parser.add_argument("--out", type=Path, default=None, help="tune directory (default: runs/<config name>-tune)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set tune.pruner=hyperband (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted study in --out with its saved config (no completed trial runs "
                             "again; CONFIG is not read; --set is refused)")


def run(args) -> int:
    from edgelabels.config import load_config
    from edgelabels.errors import UserError
    from edgelabels.tune.budget import parse_budget
    from edgelabels.tune.study import tune

    out = args.out or Path("runs") / f"{Path(args.config).stem}-tune"
    budget = parse_budget(args.budget) if args.budget is not None else None
    if args.resume:
        if args.overrides:
            raise UserError(f"--set cannot change a resumed study: {out} continues with its saved config; start a new "
                            "study (another --out, without --resume) to search with other settings")
        return tune(None, out, budget, resume=True)
    if budget is None:
        raise UserError("--budget is required for a new study (e.g. --budget 30m)")
    return tune(load_config(args.config, args.overrides), out, budget)
