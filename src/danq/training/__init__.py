"""Training: resumable early stopping, checkpoints, MLflow tracking."""
