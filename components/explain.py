"""What one trained variant learned: its first-layer filters as motifs matched to JASPAR, as
an HTML report the KFP UI shows, and logged to the model's MLflow training run."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def explain(
    model: Input[Model],
    evaluation: Input[Dataset],
    valid_shards: Input[Dataset],
    test_shards: Input[Dataset],
    explanation: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    mlflow_tracking_uri: str,
    overrides: list,
):
    """The filter report folder (report.html/.md, filters.meme, matches.tsv, logos) in
    explanation; its self-contained report.html as the UI's HTML artifact. The split scanned
    is explain_filters.split, valid or test (a step after training never gets train)."""
    import shutil

    from danq.artifacts import EXPLAIN_REPORT_HTML_FILE
    from danq.kfp.tasks import explain_model, shards_for_explain, task_params

    params = task_params({"mlflow.tracking_uri": mlflow_tracking_uri}, overrides)
    shard_dir = shards_for_explain(params, valid_shards.path, test_shards.path)
    explained = explain_model(params, model.path, evaluation.path, shard_dir, explanation.path)
    shutil.copyfile(f"{explanation.path}/{EXPLAIN_REPORT_HTML_FILE}", report.path)
    explanation.metadata.update({"variant": explained.variant, "mlflow_run_id": explained.run_id})
    metrics.log_metric("filters_compared", explained.n_compared)
    metrics.log_metric("filters_matching_jaspar", explained.n_matched)
