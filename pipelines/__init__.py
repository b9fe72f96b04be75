"""The DanQ Kubeflow pipeline (danq_pipeline.py) and its compiled YAML for the KFP UI."""
