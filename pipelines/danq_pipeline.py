"""The DanQ training pipeline for Kubeflow Pipelines v2.

    importer(data_uri) -> validate (hard gate) -> prepare -> ParallelFor(variants):
        train (GPU node) -> evaluate
    -> compare (Collected models and evaluations: report + blessing decision)
    -> If(blessed): promote (register, move `champion`; never cached)

`build_pipeline` sets what is fixed at compile time (images, the GCS key secret, the pipeline
root); `danq_pipeline` is the pipeline built with the defaults, compiled into
pipelines/danq_pipeline.yaml by `danq pipeline compile`. The run parameters' defaults are the
package's (danq.config), so a pipeline run and `dvc repro` with no params.yaml agree.
"""

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent

from components import DEFAULT_CPU_IMAGE, DEFAULT_GPU_IMAGE
from components.compare import compare
from components.evaluate import evaluate
from components.prepare import prepare
from components.promote import promote
from components.scheduling import gpu_node_selector
from components.train import train
from components.validate import validate
from danq.config import VARIANTS, MlflowConfig, ModelConfig, PromoteConfig, TrainConfig

PIPELINE_NAME = "danq"
# The MLflow Service of infra/k8s/mlflow, as pods of the cluster reach it.
CLUSTER_TRACKING_URI = "http://mlflow.mlflow.svc.cluster.local:5000"
DEFAULT_VARIANTS = list(VARIANTS)
TRAIN_DEFAULTS = TrainConfig()
MODEL_DEFAULTS = ModelConfig()
MLFLOW_DEFAULTS = MlflowConfig()
PROMOTE_DEFAULTS = PromoteConfig()
MLFLOW_SECRET = "mlflow-credentials"
MLFLOW_SECRET_KEYS = {key: key for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
GCS_KEY_MOUNT = "/var/secrets/google"
# GKE taints GPU nodes with nvidia.com/gpu:NoSchedule; only pods tolerating it land there.
GPU_TOLERATION = dict(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
# Sized for a g2-standard-8 node (1 L4, 8 vCPU, 32 GB): the input pipeline needs several
# cores to keep the GPU busy.
TRAIN_RESOURCES = dict(cpu_request="6", cpu_limit="7", memory_request="20G", memory_limit="26G")
# The full DeepSEA test set (455,024 x 919, both strands) is held in memory while scored.
EVALUATE_RESOURCES = dict(cpu_request="4", cpu_limit="8", memory_request="12G", memory_limit="16G")
DEFAULT_RESOURCES = dict(cpu_request="1", cpu_limit="2", memory_request="4G", memory_limit="8G")


def _resources(
    task: PipelineTask, cpu_request: str, cpu_limit: str, memory_request: str, memory_limit: str
) -> PipelineTask:
    return (
        task.set_cpu_request(cpu_request)
        .set_cpu_limit(cpu_limit)
        .set_memory_request(memory_request)
        .set_memory_limit(memory_limit)
    )


def _on_gpu_node(task: PipelineTask, gpu_count: int, node_selector: dict) -> PipelineTask:
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpu_count)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    return task


def _with_credentials(
    task: PipelineTask, image: str, gcs_key_secret: str | None, mlflow: bool
) -> PipelineTask:
    """Image, and the secrets a step needs: never values in code or parameters."""
    task.set_container_image(image)
    if mlflow:
        # optional: an MLflow server without authentication needs no secret.
        kubernetes.use_secret_as_env(task, MLFLOW_SECRET, MLFLOW_SECRET_KEYS, optional=True)
    if gcs_key_secret:
        kubernetes.use_secret_as_volume(task, gcs_key_secret, GCS_KEY_MOUNT)
        task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_MOUNT}/key.json")
    return task


def build_pipeline(
    gpu_image: str = DEFAULT_GPU_IMAGE,
    cpu_image: str = DEFAULT_CPU_IMAGE,
    gcs_key_secret: str | None = None,
    pipeline_root: str | None = None,
) -> GraphComponent:
    """The pipeline with these compile-time settings. gcs_key_secret: a Kubernetes secret
    holding key.json for GCS; None (the default) relies on Workload Identity."""

    def step(task: PipelineTask, mlflow: bool = False, image: str = cpu_image) -> PipelineTask:
        return _with_credentials(task, image, gcs_key_secret, mlflow)

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=pipeline_root)
    def danq_pipeline(
        data_uri: str,
        variants: list = DEFAULT_VARIANTS,
        max_epochs: int = TRAIN_DEFAULTS.max_epochs,
        batch_size: int = TRAIN_DEFAULTS.batch_size,
        model_preset: str = MODEL_DEFAULTS.preset,
        gpu_type: str = "nvidia-l4",
        gpu_count: int = 1,
        mlflow_tracking_uri: str = CLUSTER_TRACKING_URI,
        registered_model: str = MLFLOW_DEFAULTS.registered_model,
        min_macro_auroc: float = PROMOTE_DEFAULTS.min_macro_auroc,
        min_macro_aupr: float = PROMOTE_DEFAULTS.min_macro_aupr,
        overrides: list = [],  # noqa: B006 - a KFP default, never mutated
    ):
        """Train DanQ and random-dropout DanQ on a DeepSEA-format folder (train/valid/test.mat
        at data_uri, e.g. gs://...), evaluate both, promote the better blessed one.
        overrides: further params.yaml settings as "key=value" (e.g. "train.patience=3")."""
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=False)
        data.set_display_name("import data")
        gate = step(validate(data=data.output, overrides=overrides))
        _resources(gate, **DEFAULT_RESOURCES).set_display_name("validate (data gate)")
        shards = step(prepare(data=data.output, overrides=overrides)).after(gate)
        _resources(shards, **DEFAULT_RESOURCES)
        selector = step(gpu_node_selector(gpu_type=gpu_type))
        selector.set_display_name("GPU node selector")

        with dsl.ParallelFor(variants, name="variants") as variant:
            trained = step(
                train(
                    variant=variant,
                    shards=shards.outputs["shards"],
                    data=data.output,
                    max_epochs=max_epochs,
                    batch_size=batch_size,
                    model_preset=model_preset,
                    gpu_count=gpu_count,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    overrides=overrides,
                ),
                mlflow=True,
                image=gpu_image,
            )
            _on_gpu_node(_resources(trained, **TRAIN_RESOURCES), gpu_count, selector.output)
            scored = step(
                evaluate(
                    model=trained.outputs["model"],
                    shards=shards.outputs["shards"],
                    data=data.output,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    overrides=overrides,
                ),
                mlflow=True,
            )
            _resources(scored, **EVALUATE_RESOURCES)

        thresholds = dict(
            mlflow_tracking_uri=mlflow_tracking_uri,
            registered_model=registered_model,
            min_macro_auroc=min_macro_auroc,
            min_macro_aupr=min_macro_aupr,
            overrides=overrides,
        )
        decided = step(
            compare(
                models=dsl.Collected(trained.outputs["model"]),
                evaluations=dsl.Collected(scored.outputs["evaluation"]),
                shards=shards.outputs["shards"],
                **thresholds,
            ),
            mlflow=True,
        )
        # The decision depends on the registry's current champion, not only on the inputs.
        _resources(decided, **EVALUATE_RESOURCES).set_caching_options(False)
        with dsl.If(decided.outputs["Output"] == True, name="blessed"):  # noqa: E712 - a KFP condition
            promoted = step(
                promote(
                    candidates=decided.outputs["candidates"],
                    shards=shards.outputs["shards"],
                    champion_scores=decided.outputs["champion_scores"],
                    **thresholds,
                ),
                mlflow=True,
            )
            _resources(promoted, **EVALUATE_RESOURCES).set_caching_options(False)

    return danq_pipeline


danq_pipeline = build_pipeline()
