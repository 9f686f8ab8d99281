"""`edgelabels dataset audit`: find the labels that are likely wrong. Every image is scored by a model that never
trained on it (k-fold: each fold a pipeline job trained on the other folds, run as a child job so an interrupted
audit resumes), or, for a quick pass, by an existing run's own model; confident learning (evaluate/label_issues.py)
then estimates how many labels are wrong and which, beside checks on the images themselves (unreadable, blank,
duplicates with different labels). driver.py is the one driver; each task supplies its AuditHooks through the
task table (`auditing`); train.label_noise: prune reaches the audit the same way (noise.py).
"""
