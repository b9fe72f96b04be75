"""Train one variant on a GPU node, tracked in MLflow."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import DEFAULT_GPU_IMAGE


@dsl.component(base_image=DEFAULT_GPU_IMAGE, install_kfp_package=False)
def train(
    variant: str,
    shards: Input[Dataset],
    data: Input[Dataset],
    model: Output[Model],
    max_epochs: int,
    batch_size: int,
    model_preset: str,
    gpu_count: int,
    mlflow_tracking_uri: str,
    overrides: list,
):
    """model.keras, history.json, training_curve.png and run.json (the MLflow run).
    Fails when fewer than gpu_count GPUs are visible (0: CPU allowed, as in local runs)."""
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
    result = train_model(params, variant, shards.path, model.path, data.path, gpu_count)
    model.metadata.update(
        {
            "variant": variant,
            "mlflow_run_id": result.run_id,
            "model_uri": result.model_uri,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": result.epochs_run,
        }
    )
