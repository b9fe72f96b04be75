"""Evaluation: per-target AUROC/AUPR, scoring of a model, the comparison report."""
