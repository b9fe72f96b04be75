"""Kubeflow Pipelines task bodies: what each component runs."""
