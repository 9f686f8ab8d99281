"""The study's last step in its own process: `python -m edgelabels.tune.final RUN_DIR PARENT_PID`.

The chosen run (chosen on validation) is evaluated on its test split, the only time a study touches it, then
exported, exactly as `edgelabels evaluate RUN` and `edgelabels export RUN` would; what they print goes to this
process's output (the study sends it to OUT/logs/final.log and prints the headline). A child, so that the study
can stop it at the budget's end like any trial.
"""

from __future__ import annotations

import sys

from edgelabels.tune.trial import _die_with


def main(argv: list[str]) -> int:
    run, parent = argv[0], int(argv[1])
    _die_with(parent)
    from edgelabels.errors import UserError

    try:
        _evaluate_and_export(run)
    except UserError as exc:
        print(f"edgelabels: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _evaluate_and_export(run: str) -> None:
    from edgelabels.artifacts import RunDir
    from edgelabels.evaluate.command import evaluate_model
    from edgelabels.export.export_run import export_run
    from edgelabels.tasks import get_task

    task = get_task(RunDir.load(run).task)
    result = evaluate_model(run, gradcam_per_kind=0, progress=False)
    for line in task.piece("show_evaluation")(result) or ():
        print(line)
    report = export_run(run)
    for line in task.piece("show_export")(report, RunDir(run).export_dir) or ():
        print(line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
