"""A tune trial without TensorFlow: `python fake_trial.py PLAN TUNE_DIR NUMBER PARENT_PID`.

It is edgelabels.tune.trial's own main (the study, the pruner, the reports, the exit codes), with training
replaced by a plan (PLAN: a JSON file, trial number -> step, "default" for the others). A step is one of
  {"exit": 7, "say": "error: ..."}        print that line and exit with that code, before any epoch
  {"values": [0.9, 0.8], "sleep": 0.1}    one epoch per value (the monitored validation value), each after sleep s
  {"by_loss": {"focal": [{...logs}], "crossentropy": [...]}}   each epoch's logs, by the trial's train.loss
  "stop_after": N (with values)           after N epochs (0: before any), touch TUNE_DIR/interrupt-me and hang,
                                          once per run: the test's clock turns the file into a Ctrl-C
Each epoch writes what a real one leaves for the study: checkpoint/last.keras, state.json, a train.log line.
"""

import json
import sys
import time
from pathlib import Path

INTERRUPT = "interrupt-me"


def fake_train(step: dict, config, run_dir, resume=False, on_epoch=None, **_):
    from edgelabels.artifacts import RunDir

    run = RunDir(run_dir)
    if not resume:
        run.start(config.to_yaml())
    saved = run.config["train"]
    monitor = saved["monitor"]
    epochs = step["by_loss"][saved["loss"]] if "by_loss" in step else [{monitor: v} for v in step["values"]]
    state = run.train_state(monitor)
    for epoch in range(state.data["epoch"] + 1, len(epochs) + 1):
        _maybe_stop(step, run, epoch - 1)
        time.sleep(step.get("sleep", 0))
        logs = epochs[epoch - 1]
        run.last_path.parent.mkdir(parents=True, exist_ok=True)
        run.last_path.write_bytes(b"a checkpoint")
        state.data["epoch"] = epoch
        if state.improved(logs[monitor]):
            state.data.update(best=logs[monitor], best_epoch=epoch)
        state.save()
        with open(run.log_path, "a") as log:
            log.write(f"epoch {epoch}\n")
        on_epoch("a", epoch, logs)
    _maybe_stop(step, run, len(epochs))
    state.data["done"] = True
    state.save()
    return run.dir


def _maybe_stop(step: dict, run, done: int) -> None:
    marker = run.dir / "stopped-once"
    if step.get("stop_after") == done and not marker.exists():
        marker.write_text("")
        (run.dir.parent.parent / INTERRUPT).write_text(str(done))
        time.sleep(600)


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text())
    step = plan.get(argv[2], plan["default"])
    if "exit" in step:
        print(step.get("say", ""), flush=True)
        return step["exit"]
    import edgelabels.train.fit as fit
    from edgelabels.tune.trial import main as trial_main

    fit.train = lambda *args, **kwargs: fake_train(step, *args, **kwargs)
    return trial_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
