"""DeepSEA-format .mat splits to TFRecord shards, from exactly the data the gate passed."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def prepare(
    data: Input[Dataset],
    data_fingerprint: str,
    fit_shards: Output[Dataset],
    valid_shards: Output[Dataset],
    test_shards: Output[Dataset],
    overrides: list,
):
    """Shards of train and valid in fit_shards/<split>/ (what train reads), of valid again in
    valid_shards/valid/ (what evaluation, compare and promote decide on) and of test in
    test_shards/test/, each with its manifest and target names. Refuses data whose content
    differs from data_fingerprint (validate's output): files replaced after validation are
    never sharded."""
    from danq.kfp.tasks import prepare_shards, task_params

    counts = prepare_shards(
        data.path,
        fit_shards.path,
        test_shards.path,
        task_params({}, overrides),
        data_fingerprint,
        valid_dir=valid_shards.path,
    )
    fit_shards.metadata.update({f"{s}_samples": counts[s] for s in ("train", "valid")})
    valid_shards.metadata["valid_samples"] = counts["valid"]
    test_shards.metadata["test_samples"] = counts["test"]
