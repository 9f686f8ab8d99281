"""`edgelabels tune`: an Optuna study within a wall-clock budget whose trials are ordinary runs (command.py).

space.py    the config's tune: section as a search space (per-task defaults), a trial's parameters -> Config
budget.py   the wall-clock budget: parsing "30m", the deadlines, the time spent (kept for --resume)
study.py    the study: trials in child processes, pruning, --resume, the final evaluation and export
trial.py    one trial's child process: train the run, report each epoch's validation value, obey the pruner
final.py    the final step's child process: evaluate the chosen run on its test split once, then export it
report.py   trials.csv and report.html
"""
