"""Train one variant on a GPU node, tracked in MLflow, resumable across pods."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import DEFAULT_GPU_IMAGE


@dsl.component(base_image=DEFAULT_GPU_IMAGE, install_kfp_package=False)
def train(
    variant: str,
    shards: Input[Dataset],
    model: Output[Model],
    training: Output[Artifact],
    max_epochs: int,
    batch_size: int,
    model_preset: str,
    gpu_count: int,
    mlflow_tracking_uri: str,
    checkpoint_root: str,
    resume_key: str,
    kfp_run_id: str,
    image: str,
    data_uri: str,
    data_fingerprint: str,
    overrides: list,
):
    """model.keras and run.json in model; history.json, run.json and the training curve in
    training (with train.seeds > 1 in the overrides: each seed in turn, into seed-<i>/ of
    both). The checkpoint lives under checkpoint_root/<resume_key or the KFP run id>/
    <variant>, so a retried task continues from its last finished epoch in the same MLflow
    run. Fails when fewer than gpu_count GPUs are visible (0: CPU allowed, as in local runs)."""
    from danq.kfp.lineage import Lineage
    from danq.kfp.tasks import task_params, train_model

    params = task_params(
        {
            "train.max_epochs": max_epochs,
            "train.batch_size": batch_size,
            "model.preset": model_preset,
            "mlflow.tracking_uri": mlflow_tracking_uri,
        },
        overrides,
    )
    lineage = Lineage.of_step(kfp_run_id, image, data_uri, data_fingerprint)
    results = train_model(
        params,
        variant,
        shards.path,
        model.path,
        training.path,
        gpu_count,
        checkpoint_root,
        resume_key or kfp_run_id,
        lineage,
    )
    result = results[0]  # the first seed's, the only one by default
    model.metadata.update(
        {
            "variant": variant,
            "seeds": len(results),
            "mlflow_run_id": result.run_id,
            "model_uri": result.model_uri,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from_epoch,
        }
    )
    training.metadata.update({"variant": variant, "mlflow_run_id": result.run_id})
