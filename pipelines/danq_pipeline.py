"""The DanQ training pipeline for Kubeflow Pipelines v2.

    importer(data_uri) -> validate (hard gate; returns the data's fingerprint; never cached)
    -> prepare (refuses data other than the fingerprinted) -> fit, valid and test shards
    -> per variant: train (GPU node, retried, resumable; train.seeds in sequence)
    -> evaluate (GPU node; validation decides, test is reported)
    -> explain (filters as motifs matched to JASPAR: an HTML report in the UI and the MLflow run)
    -> compare (report + blessing decision on validation; re-scores the champion there on a
       GPU node)
    -> If(blessed): promote (register, move `champion`; never cached)

One train task per variant, unrolled at compile time rather than a ParallelFor: KFP backends
ignore a retry policy inside a ParallelFor (kubeflow/pipelines #12389, #13897). The compiled
YAML must pass danq.kfp.conformance (the backend's rules) for danq.kfp.backend's minimum
backend version; `danq pipeline compile` checks it.

`build_pipeline` sets what is fixed at compile time (images, the GCS key secret, the pipeline
root, and from it the default checkpoint root, the MLflow tracking URI, non-root steps);
`danq_pipeline` is the pipeline built with the defaults, compiled into
pipelines/danq_pipeline.yaml by `danq pipeline compile`. The run parameters' defaults are the
package's (danq.config), so a pipeline run and `dvc repro` with no params.yaml agree.

The MLflow tracking URI is a constant input of each MLflow task, not a run parameter: the
steps carry the MLflow login of the mlflow-credentials secret, and a run must not be able to
send it elsewhere (danq.kfp.tracking_uri). kfp.local runs build the pipeline for their own
store: `build_pipeline(tracking_uri="sqlite:///mlflow.db")(data_uri=..., ...)`.

Pod security. The step images run as a non-root user (danq.kfp.images.IMAGE_UID), on every
backend. What a pipeline can add depends on the backend (danq.kfp.backend's notes): from KFP
2.16.0 `non_root=True` sets runAsUser / runAsGroup IMAGE_UID and runAsNonRoot on every step
(kfp.kubernetes.set_security_context), and that backend hardens every step container itself
(allowPrivilegeEscalation false, drop ALL, seccomp RuntimeDefault); 2.15.0, the project's
minimum, ignores the field without a word, so it is a compile option (`danq pipeline compile
--non-root`) whose YAML declares 2.16.0. No backend lets a pipeline set the pod's
securityContext (fsGroup, supplementalGroups) or readOnlyRootFilesystem, and none sets fsGroup
itself, so a non-root step cannot write to a freshly provisioned, root-owned volume: the
staging folder /gcs is an emptyDir (mode 0777), not a generic ephemeral volume.
"""

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent

from components import DEFAULT_CPU_IMAGE, DEFAULT_GPU_IMAGE
from components.compare import compare
from components.evaluate import evaluate
from components.explain import explain
from components.prepare import prepare
from components.promote import promote
from components.scheduling import gpu_node_selector
from components.train import train
from components.validate import validate
from danq.config import VARIANTS, MlflowConfig, ModelConfig, PromoteConfig, TrainConfig
from danq.kfp.backend import MIN_BACKEND_VERSION, NON_ROOT_BACKEND, requirement
from danq.kfp.images import IMAGE_UID
from danq.kfp.lineage import PIPELINE_NAME
from danq.kfp.staging import STAGING_MOUNT
from danq.kfp.tracking_uri import CLUSTER_TRACKING_URI, refuse_credentials

TRAIN_DEFAULTS = TrainConfig()
MODEL_DEFAULTS = ModelConfig()
MLFLOW_DEFAULTS = MlflowConfig()
PROMOTE_DEFAULTS = PromoteConfig()
MLFLOW_SECRET = "mlflow-credentials"
MLFLOW_SECRET_KEYS = {key: key for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
GCS_KEY_MOUNT = "/var/secrets/google"
CHECKPOINTS_FOLDER = "checkpoints"  # under the pipeline root: the default checkpoint_root
# GKE taints GPU nodes with nvidia.com/gpu:NoSchedule; only pods tolerating it land there.
GPU_TOLERATION = dict(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
# Sized for a g2-standard-8 node (1 L4, 8 vCPU, 32 GB): the input pipeline needs several
# cores to keep the GPU busy. Evaluate and compare hold DeepSEA's test predictions
# (455,024 x 919 float32, both strands) in memory and score on the same pool.
GPU_STEP_RESOURCES = dict(cpu_request="6", cpu_limit="7", memory_request="20G", memory_limit="26G")
CPU_STEP_RESOURCES = dict(cpu_request="1", cpu_limit="2", memory_request="4G", memory_limit="8G")
# The launcher copies every input artifact whole into the pod under /gcs/ (the local path of a
# gs:// pipeline root) and writes outputs there before uploading them; the step's temporary
# files go there too (danq.kfp.staging.scratch_dir). Each step mounts an emptyDir of this size
# limit at /gcs: writable by the non-root step (a generic ephemeral volume is root-owned, and
# no KFP backend sets fsGroup). It lives on the node's boot disk, and KFP 2.17 cannot request
# ephemeral-storage (kubeflow/pipelines #11137): the scheduler reserves nothing, so nodes need
# the room free; a step that outgrows its limit is evicted, naming the volume.
# Sizes: the step's inputs and outputs on the DeepSEA bundle (data 24 GB: train.mat 21.7,
# test.mat 2.2; shards: fit 4.9, test 0.5; model 0.6; full test predictions 2.1), plus room.
STAGING_SIZES = {
    "validate": "32Gi",
    "prepare": "40Gi",
    "train": "16Gi",
    "evaluate": "12Gi",
    "explain": "4Gi",
    "compare": "8Gi",
    "promote": "8Gi",
}
# A preempted node or an evicted pod fails the attempt; train resumes from its checkpoint.
TRAIN_RETRY = dict(
    num_retries=3, backoff_duration="120s", backoff_factor=2, backoff_max_duration="7200s"
)
STEP_RETRY = dict(num_retries=2, backoff_duration="60s", backoff_factor=2)


def description(min_backend: str) -> str:
    """The pipeline's description in the KFP UI, declaring the backend it needs."""
    return (
        "Train DanQ and random-dropout DanQ, evaluate both, promote the better blessed one. "
        f"{requirement(min_backend)} The committed YAML names placeholder "
        "images and no pipeline root: recompile with real images and a gs:// pipeline root "
        "(`make images REGISTRY=...` prints the `danq pipeline compile` line) before upload."
    )


def _resources(
    task: PipelineTask, cpu_request: str, cpu_limit: str, memory_request: str, memory_limit: str
) -> PipelineTask:
    return (
        task.set_cpu_request(cpu_request)
        .set_cpu_limit(cpu_limit)
        .set_memory_request(memory_request)
        .set_memory_limit(memory_limit)
    )


def _on_gpu_node(task: PipelineTask, gpu_count, node_selector) -> PipelineTask:
    _resources(task, **GPU_STEP_RESOURCES)
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpu_count)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    return task


def _staging(task: PipelineTask, step: str) -> PipelineTask:
    # Same mount path as the compiler's own /gcs emptyDir: the driver's pod patch replaces it.
    kubernetes.empty_dir_mount(
        task, volume_name="staging", mount_path=STAGING_MOUNT, size_limit=STAGING_SIZES[step]
    )
    return task


def build_pipeline(
    gpu_image: str = DEFAULT_GPU_IMAGE,
    cpu_image: str = DEFAULT_CPU_IMAGE,
    gcs_key_secret: str | None = None,
    pipeline_root: str | None = None,
    tracking_uri: str = CLUSTER_TRACKING_URI,
    non_root: bool = False,
) -> GraphComponent:
    """The pipeline with these compile-time settings. gcs_key_secret: a Kubernetes secret
    holding key.json for GCS; None (the default) relies on Workload Identity. tracking_uri:
    the MLflow store of every step, without credentials (a local store for kfp.local runs;
    danq.kfp.pipeline.compile_pipeline admits only http(s) ones). non_root: run every step as
    IMAGE_UID with runAsNonRoot, declaring KFP backend >= NON_ROOT_BACKEND."""
    refuse_credentials(tracking_uri)
    default_checkpoint_root = (
        f"{pipeline_root.rstrip('/')}/{CHECKPOINTS_FOLDER}" if pipeline_root else ""
    )
    min_backend = NON_ROOT_BACKEND if non_root else MIN_BACKEND_VERSION

    def secured(task: PipelineTask) -> PipelineTask:
        if non_root:
            kubernetes.set_security_context(
                task, run_as_user=IMAGE_UID, run_as_group=IMAGE_UID, run_as_non_root=True
            )
        return task

    def step(
        task: PipelineTask, name: str, mlflow: bool = False, image: str = cpu_image
    ) -> PipelineTask:
        """Image, staging volume, security context, and the secrets a step needs: never values
        in code or parameters."""
        task.set_container_image(image)
        _staging(task, name)
        secured(task)
        if mlflow:
            # optional: an MLflow server without authentication needs no secret.
            kubernetes.use_secret_as_env(task, MLFLOW_SECRET, MLFLOW_SECRET_KEYS, optional=True)
        if gcs_key_secret:
            kubernetes.use_secret_as_volume(task, gcs_key_secret, GCS_KEY_MOUNT)
            task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_MOUNT}/key.json")
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME, description=description(min_backend), pipeline_root=pipeline_root
    )
    def danq_pipeline(
        data_uri: str,
        max_epochs: int = TRAIN_DEFAULTS.max_epochs,
        batch_size: int = TRAIN_DEFAULTS.batch_size,
        model_preset: str = MODEL_DEFAULTS.preset,
        gpu_type: str = "nvidia-l4",
        gpu_count: int = 1,
        registered_model: str = MLFLOW_DEFAULTS.registered_model,
        min_macro_auroc: float = PROMOTE_DEFAULTS.min_macro_auroc,
        min_macro_aupr: float = PROMOTE_DEFAULTS.min_macro_aupr,
        checkpoint_root: str = default_checkpoint_root,
        resume_key: str = "",
        overrides: list = [],  # noqa: B006 - a KFP default, never mutated
    ):
        """Train DanQ and random-dropout DanQ on a DeepSEA-format folder (train/valid/test.mat
        at data_uri, e.g. gs://...), evaluate both, promote the better blessed one.
        checkpoint_root: durable folder (gs://...) of the training checkpoints, kept per
        resume_key (default: the KFP run id) and variant; empty: checkpoints die with the pod.
        overrides: further params.yaml settings as "key=value" (e.g. "train.patience=3")."""
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=False)
        # Always run: the URI may name other content than last time (KFP caches by URI).
        gate = step(validate(data=data.output, overrides=overrides), "validate")
        _resources(gate, **CPU_STEP_RESOURCES).set_caching_options(False)
        fingerprint = gate.outputs["Output"]
        shards = step(
            prepare(data=data.output, data_fingerprint=fingerprint, overrides=overrides),
            "prepare",
        )
        _resources(shards, **CPU_STEP_RESOURCES)
        selector = secured(gpu_node_selector(gpu_type=gpu_type).set_container_image(cpu_image))
        lineage = dict(
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            data_uri=data_uri,
            data_fingerprint=fingerprint,
        )

        trained, scored = {}, {}
        for variant in VARIANTS:
            trained[variant] = step(
                train(
                    variant=variant,
                    shards=shards.outputs["fit_shards"],
                    max_epochs=max_epochs,
                    batch_size=batch_size,
                    model_preset=model_preset,
                    gpu_count=gpu_count,
                    mlflow_tracking_uri=tracking_uri,
                    checkpoint_root=checkpoint_root,
                    resume_key=resume_key,
                    image=gpu_image,
                    overrides=overrides,
                    **lineage,
                ),
                "train",
                mlflow=True,
                image=gpu_image,
            )
            _on_gpu_node(trained[variant], gpu_count, selector.output)
            trained[variant].set_retry(**TRAIN_RETRY).set_display_name(f"train {variant}")
            scored[variant] = step(
                evaluate(
                    model=trained[variant].outputs["model"],
                    valid_shards=shards.outputs["valid_shards"],
                    test_shards=shards.outputs["test_shards"],
                    mlflow_tracking_uri=tracking_uri,
                    overrides=overrides,
                ),
                "evaluate",
                mlflow=True,
                image=gpu_image,
            )
            _on_gpu_node(scored[variant], 1, selector.output)
            scored[variant].set_retry(**STEP_RETRY).set_display_name(f"evaluate {variant}")
            # Scans explain_filters.max_sequences sequences (the first ones): a CPU job.
            explained = step(
                explain(
                    model=trained[variant].outputs["model"],
                    evaluation=scored[variant].outputs["evaluation"],
                    valid_shards=shards.outputs["valid_shards"],
                    test_shards=shards.outputs["test_shards"],
                    mlflow_tracking_uri=tracking_uri,
                    overrides=overrides,
                ),
                "explain",
                mlflow=True,
            )
            _resources(explained, **CPU_STEP_RESOURCES)
            explained.set_retry(**STEP_RETRY).set_display_name(f"explain {variant}")

        thresholds = dict(
            mlflow_tracking_uri=tracking_uri,
            registered_model=registered_model,
            min_macro_auroc=min_macro_auroc,
            min_macro_aupr=min_macro_aupr,
            overrides=overrides,
        )
        by_variant = {
            f"{variant}_{output}": task.outputs[output]
            for variant in VARIANTS
            for output, task in (("training", trained[variant]), ("evaluation", scored[variant]))
        }
        decided = step(
            compare(valid_shards=shards.outputs["valid_shards"], **by_variant, **thresholds),
            "compare",
            mlflow=True,
            image=gpu_image,
        )
        _on_gpu_node(decided, 1, selector.output).set_retry(**STEP_RETRY)
        # The decision depends on the registry's current champion, not only on the inputs.
        decided.set_caching_options(False)
        with dsl.If(decided.outputs["Output"] == True, name="blessed"):  # noqa: E712 - a KFP condition
            promoted = step(
                promote(
                    candidates=decided.outputs["candidates"],
                    valid_shards=shards.outputs["valid_shards"],
                    champion_scores=decided.outputs["champion_scores"],
                    image=cpu_image,
                    **lineage,
                    **thresholds,
                ),
                "promote",
                mlflow=True,
            )
            _resources(promoted, **CPU_STEP_RESOURCES).set_caching_options(False)

    return danq_pipeline


danq_pipeline = build_pipeline()
