"""The convergence study of random dropout against the baseline: plan (arms, run settings),
runner (training, records, workers), analysis (statistics), report (files, parent run)."""
