"""trials.csv and report.html of a tune directory, from its study (rewritten after every trial).

report.html: the chosen trial and its test evaluation (once the final step wrote it), the optimisation
history, Optuna's parameter importances, and every trial. Pages are built with evaluate/page.py.
"""

from __future__ import annotations

import csv
import io
import json
import math

from edgelabels import atomic
from edgelabels.artifacts import TuneDir
from edgelabels.evaluate.page import Page, format_value
from edgelabels.tune.budget import show_duration

METRICS_FILE = "metrics.json"  # what `evaluate` writes into RUN/evaluation/
# The headline test metrics of each task's metrics.json, in the order shown (those present are shown).
HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc_macro", "f1_macro", "dice", "iou", "map_50", "map_50_95")


def write_reports(tune_dir: TuneDir, study, best) -> None:
    trials = study.get_trials(deepcopy=False)
    atomic.write_text(tune_dir.trials_csv_path, trials_csv(trials))
    atomic.write_text(tune_dir.report_path, _page(tune_dir, study, trials, best).html_text())


def trials_csv(trials) -> str:
    """One row per trial: number, state, value, seconds, epochs, failure, same_as, each parameter, then the
    validation value of every epoch (epoch_1, epoch_2, ...)."""
    params = list(dict.fromkeys(name for t in trials for name in t.params))
    epochs = max((max(t.intermediate_values) for t in trials if t.intermediate_values), default=0)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "state", "value", "seconds", "epochs", "failure", "same_as", *params,
                     *(f"epoch_{e}" for e in range(1, epochs + 1))])
    for t in trials:
        values = t.intermediate_values
        writer.writerow([t.number, t.state.name.lower(), _num(t.value), t.user_attrs.get("seconds", ""), len(values),
                         t.user_attrs.get("failure", ""), t.user_attrs.get("same_as", ""),
                         *(t.params.get(p, "") for p in params), *(_num(values.get(e)) for e in range(1, epochs + 1))])
    return out.getvalue()


def _num(value) -> str:
    return "" if value is None else f"{value:.6g}"


def _page(tune_dir: TuneDir, study, trials, best) -> Page:
    budget = tune_dir.read_budget()
    states = [t.state.name.lower() for t in trials]
    page = Page(tune_dir.dir, f"Tune study {tune_dir.dir.name}", [
        ("direction", study.direction.name.lower()), ("trials", str(len(trials))),
        ("time spent", f"{show_duration(budget['spent_s'])} of {show_duration(budget['budget_s'])}")])
    page.cards([("best validation value", format_value(best.value) if best else "n/a"),
                ("chosen trial", str(best.number) if best else "none yet"),
                *((s, str(states.count(s))) for s in ("complete", "pruned", "fail"))])
    _best_section(page, tune_dir, best)
    page.heading("Optimisation history")
    if any(t.value is not None or t.intermediate_values for t in trials):
        page.figure(_history_plot(tune_dir, study, trials), "validation value per trial, and the best so far")
    page.note("Each point is a trial's validation value (a pruned trial: its last epoch's, hollow); the line is "
              "the best complete trial so far. Selection uses validation only: the test split is evaluated once, "
              "for the chosen trial.")
    page.heading("Parameter importances")
    importances, why = _importances(study)
    if importances:
        page.table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in importances.items()])
        page.note("Optuna's get_param_importances over the complete trials (shares that add up to 1).")
    else:
        page.note(f"Not computed: {why}.")
    page.heading("Trials")
    rows = list(csv.reader(io.StringIO(trials_csv(trials))))
    page.table(rows[0][:7 + len({p for t in trials for p in t.params})], [r[:len(rows[0])] for r in rows[1:]])
    return page


def _best_section(page: Page, tune_dir: TuneDir, best) -> None:
    page.heading("The chosen trial")
    if best is None:
        page.paragraph("No trial has completed yet.")
        return
    run = tune_dir.trial_run(best.number)
    page.table(["parameter", "value"], [[k, str(v)] for k, v in best.params.items()] or [["(none searched)", ""]])
    metrics = read_test_metrics(run)
    if metrics is None:
        page.note(f"Its test evaluation is not written yet ({run.dir.relative_to(tune_dir.dir)}).")
        return
    scalars = [[k, format_value(v)] for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    page.paragraph(f"Evaluated once on its test split ({run.dir.relative_to(tune_dir.dir)}/evaluation/report.html "
                   f"has the full evaluation; its export is in {run.dir.relative_to(tune_dir.dir)}/export/):")
    page.table(["test metric", "value"], scalars)


def read_test_metrics(run) -> dict | None:
    path = run.evaluation_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def chosen_run_headline(run) -> str:
    """The chosen run's headline test metrics in one line (from its evaluation)."""
    metrics = read_test_metrics(run) or {}
    shown = [f"{k} {metrics[k]:.4f}" for k in HEADLINE if isinstance(metrics.get(k), (int, float))]
    return ", ".join(shown) or "no headline metric"


def _importances(study) -> tuple[dict, str]:
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    searched = {name for t in complete for name in t.distributions
                if not t.distributions[name].single()}
    if len(complete) < 2 or not searched:
        return {}, f"{len(complete)} complete trial(s) over {len(searched)} searched parameter(s); it needs 2 and 1"
    try:
        return optuna.importance.get_param_importances(study), ""
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        return {}, f"Optuna could not ({exc})"


def _history_plot(tune_dir: TuneDir, study, trials):
    from matplotlib.figure import Figure

    minimize = study.direction.name == "MINIMIZE"
    fig = Figure(figsize=(7.5, 3.4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    done = [(t.number, t.value) for t in trials if t.value is not None]
    cut = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
           if t.value is None and t.intermediate_values]
    if done:
        ax.plot(*zip(*done), "o", color="#2b6cb0", label="complete")
        best, line = None, []
        for number, value in done:
            best = value if best is None or (value < best if minimize else value > best) else best
            line.append((number, best))
        ax.step(*zip(*line), where="post", color="#c05621", label="best so far")
    if cut:
        ax.plot(*zip(*cut), "o", mfc="none", color="#718096", label="pruned / failed (last epoch)")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation value")
    ax.legend(loc="best", fontsize=8)
    with atomic.temp_path(tune_dir.history_plot_path) as tmp:
        fig.savefig(tmp, format="png")
    return tune_dir.history_plot_path
