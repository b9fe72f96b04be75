"""DeepSEA-format .mat splits to TFRecord shards."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def prepare(data: Input[Dataset], shards: Output[Dataset], overrides: list):
    """Shards of train, valid and test in shards/<split>/, each with its manifest.json."""
    from danq.kfp.tasks import prepare_shards, task_params

    counts = prepare_shards(data.path, shards.path, task_params({}, overrides))
    shards.metadata.update({f"{split}_samples": n for split, n in counts.items()})
