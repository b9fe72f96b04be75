"""The data gate as a component: it fails (and so stops the run) when a blocking check fails,
and returns the fingerprint of the exact files it checked, which prepare holds the data to."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from components import DEFAULT_CPU_IMAGE


@dsl.component(base_image=DEFAULT_CPU_IMAGE, install_kfp_package=False)
def validate(
    data: Input[Dataset],
    validation: Output[Dataset],
    data_docs: Output[HTML],
    summary: Output[Markdown],
    overrides: list,
) -> str:
    """Great Expectations gate over train/valid/test.mat; raises DataGateFailed on failure.
    Returns the data fingerprint (JSON: sha256 and size per file)."""
    import shutil

    from danq.artifacts import DATA_DOCS_DIR, DATA_DOCS_INDEX_FILE
    from danq.kfp.tasks import task_params, validate_data, validation_markdown

    report = validate_data(data.path, validation.path, task_params({}, overrides))
    shutil.copyfile(f"{validation.path}/{DATA_DOCS_DIR}/{DATA_DOCS_INDEX_FILE}", data_docs.path)
    with open(summary.path, "w") as fh:
        fh.write(validation_markdown(report))
    validation.metadata.update(
        {
            "passed": report.passed,
            "checks": len(report.checks),
            "warnings": len(report.warnings),
            "data_fingerprint": report.fingerprint.digest,
        }
    )
    return report.fingerprint.to_json()
