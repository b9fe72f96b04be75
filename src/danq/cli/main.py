"""The `danq` command line: the root parser, global options, and errors turned into exit codes.

Each command group lives in its own module (danq.cli.data, .validate, .train, ...) with a
`register(commands)` function that adds its subcommands and handlers. Every subcommand reads
params.yaml (or --params) and applies `-S key=value` overrides; a handler receives the parsed
options and the typed Params, calls the library, prints a summary and returns 0. The library
raises danq.errors.DanqError; `main` prints it as one `error: ...` line and returns its exit
code. Heavy libraries (TensorFlow, MLflow, Great Expectations) are imported only by the
handlers that need them, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from danq import __version__
from danq.cli.quiet import quiet_libraries
from danq.config import Params, load_params
from danq.errors import ConfigError, DanqError
from danq.io import limits as reader_limits

Handler = Callable[[argparse.Namespace, Params], int]


def build_parser() -> argparse.ArgumentParser:
    from danq.cli import (
        data,
        evaluate,
        explain,
        ism,
        pipeline,
        predict,
        promote,
        study,
        train,
        validate,
        variants,
    )

    parser = argparse.ArgumentParser(
        prog="danq",
        description="DanQ and random-dropout DanQ: data, validation, training, evaluation, "
        "registry.",
    )
    parser.add_argument("--version", action="version", version=f"danq {__version__}")
    parser.add_argument(
        "--params", default="params.yaml", help="configuration file (default: params.yaml)"
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. -S train.max_epochs=3 (repeatable)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's and other libraries' log messages",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = (
        data,
        validate,
        train,
        evaluate,
        predict,
        variants,
        ism,
        explain,
        promote,
        study,
        pipeline,
    )
    for group in groups:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        params = load_params(args.params, args.overrides)
        reader_limits.apply(params.limits)
        handler: Handler = args.handler
        return handler(args, params)
    except ConfigError as err:
        print(f"error: invalid configuration:\n{err}", file=sys.stderr)
        return err.exit_code
    except DanqError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
