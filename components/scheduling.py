"""The GPU node selector from the pipeline's gpu_type parameter (kfp-kubernetes takes a
node-selector dict from a task output, not a string)."""

from kfp import dsl

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def gpu_node_selector(gpu_type: str) -> dict:
    """{"cloud.google.com/gke-accelerator": gpu_type}, checked."""
    from danq.kfp.tasks import gpu_node_selector as selector

    return selector(gpu_type)
