"""`danq promote` and `danq registry show | rollback`."""

from __future__ import annotations

import argparse

from danq.config import Params


def cmd_promote(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import promote

    return promote.run(args, params)


def cmd_registry_rollback(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry

    return registry.run_rollback(args, params)


def cmd_registry_show(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry

    return registry.run_show(args, params)


def register(commands: argparse._SubParsersAction) -> None:
    from danq.promotion import promote as promote_module
    from danq.promotion import registry as registry_module

    promote = commands.add_parser(
        "promote",
        help="bless candidates against floors and the champion; move the alias",
        description="Bless each evaluated candidate only if it passes the absolute floors and, "
        "when a champion exists, beats it on the same test split with a paired-bootstrap CI "
        "above zero and few regressed targets; register every candidate and give the best "
        "blessed one the alias `champion`. Writes blessing.json.",
    )
    promote_module.add_arguments(promote)
    promote.set_defaults(handler=cmd_promote)

    registry = commands.add_parser("registry", help="inspect the model registry, roll back")
    registry_commands = registry.add_subparsers(
        dest="registry_command", required=True, metavar="COMMAND"
    )
    rollback = registry_commands.add_parser(
        "rollback", help="move `champion` back to the previous champion (twice: undo)"
    )
    registry_module.add_rollback_arguments(rollback)
    rollback.set_defaults(handler=cmd_registry_rollback)
    show = registry_commands.add_parser("show", help="versions, aliases and tags")
    registry_module.add_show_arguments(show)
    show.set_defaults(handler=cmd_registry_show)
