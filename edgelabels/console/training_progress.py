"""A version's training as the version page shows it live: read from the job's own files (its run's history.csv,
checkpoint state, train.log and recipe.json, through artifacts.RunDir), never from the training process.

`progress(ctx, arn)` -> {status, message, epoch, epochs, stage, rows, seconds_left, choices, log (job.log's end, when
the training failed)}, read again every POLL_S while the version is in a PASSING state; `changes(sent, now)` -> the
updates to push: one per epoch that finished between two reads, so a fast training still shows every epoch it went
through.
"""

from __future__ import annotations

import math

from edgelabels.artifacts import RunDir
from edgelabels.errors import UserError
from edgelabels.service.context import ServiceContext
from edgelabels.service.trainer import LOG, RUN
from edgelabels.service.versions import MESSAGES

PASSING = frozenset({"TRAINING_IN_PROGRESS", "STARTING", "STOPPING", "DELETING"})
POLL_S = 0.25
LOG_TAIL_BYTES = 8192
FAILED_LOG_LINES = 30  # of job.log, shown when a training failed
STAGES = {"a": "training", "b": "fine-tuning (pretrained backbone unfrozen)"}


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _planned(run: RunDir) -> tuple[str | None, int]:
    """(monitored metric, planned epochs of both stages) from the run's config, once the recipe resolved it."""
    try:
        train = run.config.get("train") or {}
    except UserError:  # not written yet (the job is still fetching images)
        return None, 0
    epochs = [train.get("epochs"), train.get("fine_tune_epochs")]
    planned = sum(int(e) for e in epochs if isinstance(e, int) and not isinstance(e, bool))
    monitor = train.get("monitor")
    return (monitor if isinstance(monitor, str) and monitor != "auto" else None), planned


def _tail(path, count: int) -> list[str]:
    """The file's last `count` non-empty lines (read from its end: a log can be long), or []."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-count:]


def _last_log_line(run: RunDir) -> str:
    """train.log's last line without its timestamp and level ("stage a epoch 2: loss=..."), or ""."""
    last = (_tail(run.log_path, 1) or [""])[0]
    parts = last.split(" ", 3)  # date, time, level, message
    return parts[3] if len(parts) == 4 else last


def _stage(run: RunDir, rows: list[dict], state: dict) -> str:
    if state.get("done"):
        return "exporting" if run.evaluation_dir.is_dir() else "evaluating"
    if rows:
        return STAGES.get(rows[-1]["stage"], rows[-1]["stage"])
    if run.recipe_path.is_file():
        return "building the model"
    return "preparing the data and choosing the recipe"


def _choices(run: RunDir) -> list[dict]:
    import json

    try:
        recipe = json.loads(run.recipe_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [{"key": str(c.get("key")), "value": "" if c.get("value") is None else str(c.get("value")),
             "reason": str(c.get("reason", ""))} for c in recipe.get("choices", []) if isinstance(c, dict)]


def progress(ctx: ServiceContext, arn: str) -> dict:
    """The version's status and its training's progress (the store's NotFound when the version is gone)."""
    row = ctx.store.version(arn)
    status = row["status"]
    run = RunDir(ctx.version_dir(arn) / RUN)
    monitor, planned = _planned(run)
    rows = []
    for found in run.read_history():
        rows.append({"epoch": len(rows) + 1, "stage": found.get("stage", ""), "loss": _number(found.get("loss")),
                     "val_loss": _number(found.get("val_loss")), "monitor_name": monitor,
                     "monitor": _number(found.get(monitor)) if monitor else None})
    state = run.train_state(monitor or "val_loss").data if run.state_path.is_file() else {}
    seconds = [s for s in state.get("epoch_seconds", []) if isinstance(s, (int, float))]
    left = None
    if status == "TRAINING_IN_PROGRESS" and seconds and planned:
        left = round(max(0, planned - len(rows)) * sum(seconds) / len(seconds))
    training = status == "TRAINING_IN_PROGRESS"
    message = (_last_log_line(run) if training else "") or row["status_message"] or MESSAGES.get(status, status)
    return {"status": status, "message": message, "epoch": len(rows), "epochs": max(planned, len(rows)),
            "stage": _stage(run, rows, state) if training else "", "rows": rows, "seconds_left": left,
            "choices": _choices(run), "log": _tail(ctx.version_dir(arn) / LOG, FAILED_LOG_LINES)
            if status == "TRAINING_FAILED" else []}


def changes(sent: dict | None, now: dict) -> list[dict]:
    """The updates to push when the progress went from `sent` (None: nothing pushed yet) to `now`: none when it is
    the same; else one per epoch that finished between the two reads (each with the rows up to it), then `now`."""
    if now == sent:
        return []
    shown = len(now["rows"]) if sent is None else len(sent["rows"])
    between = [{**now, "epoch": epoch, "rows": now["rows"][:epoch], "seconds_left": None,
                "stage": STAGES.get(now["rows"][epoch - 1]["stage"], ""), "message": _summary(now["rows"][epoch - 1])}
               for epoch in range(shown + 1, len(now["rows"]))]
    return [*between, now]


def _summary(row: dict) -> str:
    """An epoch in words ("epoch 2: loss 0.6931, val_loss 0.7012, val_auc 0.7500")."""
    values = {"loss": row["loss"], "val_loss": row["val_loss"]}
    if row["monitor_name"]:
        values[row["monitor_name"]] = row["monitor"]
    shown = ", ".join(f"{name} {value:.4f}" for name, value in values.items() if value is not None)
    return f"epoch {row['epoch']}: {shown}" if shown else f"epoch {row['epoch']}"
