"""The convergence study of random dropout against the baseline."""
