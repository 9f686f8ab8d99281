"""`edgelabels tune`: an Optuna study within a wall-clock budget whose trials are ordinary runs (command.py).

space.py    the config's tune: section as a search space (the task table's defaults), a trial's parameters -> Config,
            the objective trials are ranked on
budget.py   the wall-clock budget: parsing "30m", the deadlines, the time spent (kept for --resume)
study.py    the study: trials as child jobs (edgelabels/jobs.py), pruning, --resume, then the chosen run evaluated
            and exported by the pipeline (edgelabels/pipeline.py) in a child job
trial.py    one trial's child process: train the run, report each epoch's validation value, obey the pruner
report.py   trials.csv and report.html
"""
