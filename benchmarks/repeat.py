"""One source or config trained once per seed, each run evaluated on its test split: how much the headline figures
move with the seed alone (issue 26: "5 seeds, median mAP@0.5 >= 0.93").

    .venv/bin/python benchmarks/repeat.py SOURCE|CONFIG --seeds 5 [--budget 10m] [--set k=v ...] [--out DIR]
    .venv/bin/python benchmarks/repeat.py configs/bees.yaml --seed-list 3 7 --out runs/bees-seeds

SOURCE (a folder or data.yaml) trains with every recipe key `auto`, as `edgelabels train SOURCE` does; CONFIG (a
YAML file) as written. Seed s trains OUT/seed-s through edgelabels.pipeline (train, then evaluate on the run's test
split; no export) and leaves OUT/seed-s.json (its figures and times). A seed whose record is there is not trained
again, and an interrupted run resumes: run the same command again to continue. Prints and writes OUT/repeat.json
and OUT/repeat.md: each seed's headline figures (detection: mAP@0.5, and precision and recall at the assumed
thresholds; classification: accuracy, ROC AUC, macro F1; multilabel: subset accuracy, ROC AUC, macro F1;
segmentation: Dice, IoU) with mean, median, min and max, and each run's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# figure name -> where it is in the evaluation's metrics.json, per task
HEADLINES = {
    "detection": {"mAP@0.5": ("map_50",), "P": ("at_assumed_thresholds", "average_precision"),
                  "R": ("at_assumed_thresholds", "average_recall")},
    "classification": {"accuracy": ("accuracy",), "AUC": ("roc_auc_macro",), "F1": ("f1_macro",)},
    "multilabel": {"subset accuracy": ("subset_accuracy",), "AUC": ("roc_auc_macro",), "F1": ("macro_f1",)},
    "segmentation": {"Dice": ("dice",), "IoU": ("iou",)},
}


def repeat(target: str | Path, seeds: list[int], out: str | Path, budget: str | None = None,
           overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Train and evaluate `target` once per seed into out/seed-S; returns (and writes) the table as a dict:
    {"target", "task", "figures": [names], "seeds": [{"seed", "run", "figures", "wall_s", "train_s"}],
    "summary": {figure: {"mean", "median", "min", "max", "n"}}}."""
    from edgelabels import atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = _config_path(Path(target), out)
    records = []
    for seed in seeds:
        record_path = out / f"seed-{seed}.json"
        if record_path.exists():
            print(f"seed {seed}: done before ({record_path})")
            records.append(json.loads(record_path.read_text()))
            continue
        record = _one_seed(config_path, out / f"seed-{seed}", seed, budget, overrides)
        atomic.write_json(record_path, record)
        records.append(record)
    tasks = {r["task"] for r in records}
    if len(tasks) != 1:
        raise SystemExit(f"{out}: its seeds' runs are of different tasks {sorted(tasks)}: use another --out")
    task = tasks.pop()
    table = {"target": str(target), "task": task, "figures": list(HEADLINES[task]), "seeds": records,
             "summary": summarise(records, list(HEADLINES[task]))}
    atomic.write_json(out / "repeat.json", table)
    atomic.write_text(out / "repeat.md", markdown(table))
    return table


def _config_path(target: Path, out: Path) -> Path:
    """The YAML every seed's run starts from: CONFIG itself, or for a SOURCE one naming it with every recipe key
    auto (written into out/, so that a repeat continued later trains the same)."""
    import yaml

    from edgelabels import atomic
    from edgelabels.config import AUTO, AUTO_KEYS

    if target.is_file() and target.suffix in (".yaml", ".yml") and target.name != "data.yaml":
        return target
    if not target.exists():
        raise SystemExit(f"{target}: no such source or config")
    config: dict = {"data": {"source": str(target.resolve())}}
    for key in AUTO_KEYS:
        *parents, name = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = AUTO
    path = out / "source.yaml"
    atomic.write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


def _one_seed(config_path: Path, run: Path, seed: int, budget: str | None, overrides) -> dict:
    from edgelabels.artifacts import RunDir
    from edgelabels.pipeline import Job, pipeline

    sets = (*overrides, f"seed={seed}", *([f"train.budget={budget}"] if budget else []))
    started = time.monotonic()
    done = pipeline(Job(run=str(run), config=str(config_path), overrides=sets, evaluate={"progress": False},
                        export=None))
    wall = time.monotonic() - started
    result = done["evaluation"]
    task = result["task"]
    state = RunDir(run).train_state(RunDir(run).config["train"]["monitor"]).data
    figures = {name: figure(result["metrics"], where) for name, where in HEADLINES[task].items()}
    print(f"seed {seed}: " + ", ".join(f"{k} {_show(v)}" for k, v in figures.items()) + f" ({wall:.0f} s)")
    return {"seed": seed, "run": str(run), "task": task, "figures": figures, "wall_s": wall,
            "train_s": state.get("spent_s")}


def figure(metrics: dict, where: tuple[str, ...]) -> float | None:
    """The number at `where` in metrics; an interval ({"value", "low", "high"}) gives its value."""
    value = metrics
    for key in where:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, dict):
        value = value.get("value")
    return None if value is None else float(value)


def summarise(records: list[dict], names: list[str]) -> dict:
    """Per figure: mean, median, min, max over the seeds where it is defined, and how many those are."""
    summary = {}
    for name in names:
        values = [r["figures"][name] for r in records if r["figures"].get(name) is not None]
        summary[name] = {"mean": statistics.fmean(values), "median": statistics.median(values), "min": min(values),
                         "max": max(values), "n": len(values)} if values else \
            {"mean": None, "median": None, "min": None, "max": None, "n": 0}
    return summary


def markdown(table: dict) -> str:
    names = table["figures"]
    lines = [f"# {table['target']}: {len(table['seeds'])} seeds ({table['task']})", "",
             "| seed | " + " | ".join(names) + " | wall s | train s |",
             "|---|" + "---|" * (len(names) + 2)]
    for r in table["seeds"]:
        lines.append(f"| {r['seed']} | " + " | ".join(_show(r["figures"].get(n)) for n in names)
                     + f" | {r['wall_s']:.0f} | {_show(r.get('train_s'), '.0f')} |")
    for stat in ("mean", "median", "min", "max"):
        lines.append(f"| {stat} | " + " | ".join(_show(table["summary"][n][stat]) for n in names) + " | | |")
    return "\n".join(lines) + "\n"


def _show(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a data source (folder, data.yaml) or a YAML config")
    parser.add_argument("--seeds", type=int, default=5, metavar="N", help="seeds 0..N-1 (default 5)")
    parser.add_argument("--seed-list", type=int, nargs="+", metavar="S", help="these seeds instead")
    parser.add_argument("--budget", help="train.budget of every run, e.g. 10m")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the runs (default runs/repeat-<name>)")
    args = parser.parse_args(argv)
    from edgelabels.cli import quiet_tensorflow_start_up

    quiet_tensorflow_start_up()  # as the CLI: no C++ start-up logging between the figures
    out = args.out or Path("runs") / f"repeat-{Path(args.target).stem}"
    table = repeat(args.target, args.seed_list or list(range(args.seeds)), out, args.budget, args.overrides)
    print(markdown(table))
    print(f"wrote {out / 'repeat.json'} and {out / 'repeat.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
