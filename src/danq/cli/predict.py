"""`danq predict`: score sequences with a model."""

from __future__ import annotations

import argparse

from danq.config import Params


def cmd_predict(args: argparse.Namespace, params: Params) -> int:
    from danq import predict

    return predict.run(args, params)


def register(commands: argparse._SubParsersAction) -> None:
    from danq import predict as predict_module

    predict = commands.add_parser(
        "predict",
        help="score FASTA or DeepSEA-format HDF5 sequences with a model",
        description="Score sequences with the champion (or any model URI), averaging each "
        "window with its reverse complement; writes a TSV of sequence x target.",
    )
    predict_module.add_arguments(predict)
    predict.set_defaults(handler=cmd_predict)
