"""Running the suite with Great Expectations over the summary tables, and its Data Docs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from danq.validation.suite import ROW_KEYS, GateExpectation, RowKey, Table

DOCS_SITE = "danq_gate"


def run_great_expectations(
    suite: list[GateExpectation], tables: dict[Table, pd.DataFrame], docs_dir: Path
) -> dict[str, set[RowKey]]:
    """Validate each table against its part of the suite and build Data Docs into docs_dir.

    Returns, per expectation name, the keys (ROW_KEYS) of the rows GE found out of bounds.
    """
    context = _ephemeral_context(docs_dir)
    source = context.data_sources.add_pandas("deepsea_summaries")
    unexpected: dict[str, set[RowKey]] = {}
    for name, table in tables.items():
        specs = [spec for spec in suite if spec.table == name]
        unexpected |= _validate_table(context, source, name, table, specs)
    context.build_data_docs(site_names=[DOCS_SITE])
    return unexpected


def _ephemeral_context(docs_dir: Path) -> Any:
    """A GE context kept in memory, without progress bars, whose Data Docs go to docs_dir."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        DOCS_SITE,
        {  # type: ignore[typeddict-unknown-key]  # show_how_to_buttons: a SiteBuilder option
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _validate_table(
    context: Any, source: Any, name: Table, table: pd.DataFrame, specs: list[GateExpectation]
) -> dict[str, set[RowKey]]:
    """Run the expectations on one table; the keys of its failing rows, per expectation."""
    import great_expectations as gx

    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    gx_suite = context.suites.add(gx.ExpectationSuite(name=f"deepsea_{name}"))
    for spec in specs:
        gx_suite.add_expectation(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column=spec.column,
                min_value=spec.min_value,
                max_value=spec.max_value,
                description=f"{spec.name}: {spec.meaning} "
                f"({'blocking' if spec.blocking else 'warning only'})",
                meta={"check": spec.name, "blocking": spec.blocking},
            )
        )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"gate_{name}", data=batch, suite=gx_suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": table},
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": list(ROW_KEYS[name]),
        },
    )
    unexpected: dict[str, set[RowKey]] = {}
    for outcome in result.results:
        if outcome.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"Great Expectations failed on {name}: "
                f"{outcome.exception_info.get('exception_message')}"
            )
        indices = outcome.result.get("unexpected_index_list") or []
        unexpected[outcome.expectation_config.meta["check"]] = {
            tuple(row[column] for column in ROW_KEYS[name]) for row in indices
        }
    return unexpected
