"""Validation and test evaluation of one trained variant: macro metrics and a ROC curve for
the UI."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import DEFAULT_GPU_IMAGE


@dsl.component(base_image=DEFAULT_GPU_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    valid_shards: Input[Dataset],
    test_shards: Input[Dataset],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    mlflow_tracking_uri: str,
    overrides: list,
):
    """metrics.json, per_target.tsv, curves.json, and predictions.npz of the test rows the
    promotion bootstrap uses, in evaluation/; the validation split's metrics.json and
    predictions.npz (what promotion decides on) in evaluation/valid/."""
    import tempfile

    from danq.kfp.staging import scratch_dir
    from danq.kfp.tasks import evaluate_model, roc_curve, task_params

    params = task_params({"mlflow.tracking_uri": mlflow_tracking_uri}, overrides)
    work = tempfile.mkdtemp(prefix="danq-evaluate-", dir=scratch_dir())
    result = evaluate_model(
        params,
        model.path,
        f"{test_shards.path}/test",
        f"{valid_shards.path}/valid",
        evaluation.path,
        work,
    )
    evaluation.metadata["variant"] = result["variant"]
    metrics.log_metric("valid_macro_auroc", result["validation"]["overall"]["auroc"])
    metrics.log_metric("valid_macro_aupr", result["validation"]["overall"]["aupr"])
    metrics.log_metric("test_macro_auroc", result["overall"]["auroc"])
    metrics.log_metric("test_macro_aupr", result["overall"]["aupr"])
    metrics.log_metric("scoreable_targets", result["overall"]["n_scoreable"])
    curve = roc_curve(work)
    roc.metadata["target"] = curve.target
    roc.log_roc_curve(curve.fpr, curve.tpr, curve.thresholds)
