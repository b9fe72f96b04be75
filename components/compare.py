"""Compare the evaluated variants and decide, against the champion, whether any is blessed."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def compare(
    models: Input[list[Model]],
    evaluations: Input[list[Dataset]],
    shards: Input[Dataset],
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
    Reads the registry but changes nothing in it. candidates (the evaluations by variant) and
    champion_scores are the promote step's inputs: KFP cannot pass a Collected list into
    the If group that holds promote."""
    import shutil
    import tempfile

    from danq.artifacts import COMPARISON_HTML_FILE, COMPARISON_MD_FILE
    from danq.kfp.tasks import REPORT_DIR, blessing_markdown, compare_candidates, promotion_params

    params = promotion_params(
        mlflow_tracking_uri, registered_model, min_macro_auroc, min_macro_aupr, overrides
    )
    work = tempfile.mkdtemp(prefix="danq-compare-")
    _, blessing = compare_candidates(
        params,
        [m.path for m in models],
        [e.path for e in evaluations],
        f"{shards.path}/test",
        work,
        candidates.path,
        champion_scores.path,
    )
    shutil.copyfile(f"{work}/{REPORT_DIR}/{COMPARISON_HTML_FILE}", report.path)
    shutil.copyfile(f"{work}/{REPORT_DIR}/{COMPARISON_MD_FILE}", report_markdown.path)
    with open(decision.path, "w") as fh:
        fh.write(blessing_markdown(blessing))
    return blessing.chosen is not None
