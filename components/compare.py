"""Compare the evaluated variants and decide, against the champion, whether any is blessed."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from components import DEFAULT_GPU_IMAGE


@dsl.component(base_image=DEFAULT_GPU_IMAGE, install_kfp_package=False)
def compare(
    baseline_training: Input[Artifact],
    baseline_evaluation: Input[Dataset],
    random_dropout_training: Input[Artifact],
    random_dropout_evaluation: Input[Dataset],
    valid_shards: Input[Dataset],
    report: Output[HTML],
    report_markdown: Output[Markdown],
    decision: Output[Markdown],
    candidates: Output[Dataset],
    champion_scores: Output[Dataset],
    mlflow_tracking_uri: str,
    registered_model: str,
    min_macro_auroc: float,
    min_macro_aupr: float,
    overrides: list,
) -> bool:
    """The comparison report and the blessing decision; True when a candidate is blessed.
    Reads the registry but changes nothing in it; scores the current champion on the
    candidates' validation rows, where the decision is made (hence a GPU node). candidates
    (the evaluations by variant) and champion_scores are the promote step's inputs. One
    input pair per variant of danq.config.VARIANTS: a ParallelFor would make the train
    tasks' retry policy void."""
    import shutil
    import tempfile

    from danq.artifacts import COMPARISON_HTML_FILE, COMPARISON_MD_FILE
    from danq.kfp.staging import scratch_dir
    from danq.kfp.tasks import REPORT_DIR, blessing_markdown, compare_candidates, promotion_params

    params = promotion_params(
        mlflow_tracking_uri, registered_model, min_macro_auroc, min_macro_aupr, overrides
    )
    work = tempfile.mkdtemp(prefix="danq-compare-", dir=scratch_dir())
    _, blessing = compare_candidates(
        params,
        [baseline_training.path, random_dropout_training.path],
        [baseline_evaluation.path, random_dropout_evaluation.path],
        f"{valid_shards.path}/valid",
        work,
        candidates.path,
        champion_scores.path,
    )
    shutil.copyfile(f"{work}/{REPORT_DIR}/{COMPARISON_HTML_FILE}", report.path)
    shutil.copyfile(f"{work}/{REPORT_DIR}/{COMPARISON_MD_FILE}", report_markdown.path)
    with open(decision.path, "w") as fh:
        fh.write(blessing_markdown(blessing))
    return blessing.chosen is not None
