"""`danq validate`: the data gate."""

from __future__ import annotations

import argparse

from danq.config import Params


def cmd_validate(args: argparse.Namespace, params: Params) -> int:
    from danq.validation import gate

    return gate.run(args, params)


def register(commands: argparse._SubParsersAction) -> None:
    from danq.validation import gate

    validate = commands.add_parser(
        "validate",
        help="the data gate: structural checks + Great Expectations suite",
        description="Stream train/valid/test.mat in bounded chunks, check layout, one-hot "
        "validity, labels, reverse-complement halves, drift, GC and leakage with a Great "
        "Expectations suite; write report.json and Data Docs; exit 1 if a blocking check fails.",
    )
    gate.add_arguments(validate)
    validate.set_defaults(handler=cmd_validate)
