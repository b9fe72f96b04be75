"""Register the candidates and move the `champion` alias (run only when one is blessed)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def promote(
    candidates: Input[Dataset],
    valid_shards: Input[Dataset],
    champion_scores: Input[Dataset],
    blessing: Output[Artifact],
    summary: Output[Markdown],
    mlflow_tracking_uri: str,
    registered_model: str,
    min_macro_auroc: float,
    min_macro_aupr: float,
    kfp_run_id: str,
    image: str,
    data_uri: str,
    data_fingerprint: str,
    overrides: list,
) -> str:
    """One promotion round (danq.promotion.promote); returns the champion's registered version.
    Every version it registers carries the run's lineage (KFP run, image, data)."""
    import shutil
    import tempfile

    from danq.artifacts import BLESSING_FILE
    from danq.kfp.lineage import Lineage
    from danq.kfp.staging import scratch_dir
    from danq.kfp.tasks import blessing_markdown, promote_round, promotion_params

    params = promotion_params(
        mlflow_tracking_uri, registered_model, min_macro_auroc, min_macro_aupr, overrides
    )
    lineage = Lineage.of_step(kfp_run_id, image, data_uri, data_fingerprint)
    work = tempfile.mkdtemp(prefix="danq-promote-", dir=scratch_dir())
    result = promote_round(
        params,
        candidates.path,
        f"{valid_shards.path}/valid",
        champion_scores.path,
        work,
        lineage,
    )
    shutil.copyfile(f"{work}/{BLESSING_FILE}", blessing.path)
    with open(summary.path, "w") as fh:
        fh.write(blessing_markdown(result))
    aliases = result.registry["aliases"] if result.registry else {}
    blessing.metadata.update({"decision": result.decision, "aliases": aliases})
    return str(aliases.get("champion", ""))
