"""Training, resumable and tracked in MLflow.

loop (train_variant) drives the modules beside it: settings (what shapes the weights, devices),
batches (resumable epochs of tf.data batches), checkpoint (per-epoch resume state), callbacks
(early stopping, per-epoch record) and outputs (model.keras, history.json, curve, MLflow).
"""
