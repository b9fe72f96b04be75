"""`danq promote` and `danq registry show | rollback`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from danq import artifacts
from danq.config import VARIANTS, Params
from danq.io import storage

if TYPE_CHECKING:
    import numpy as np
    from mlflow.entities.model_registry import ModelVersion

    from danq.promotion.decide import Blessing


def cmd_promote(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry
    from danq.promotion.promote import promote_candidates

    work_dir = params.work_dir
    shards = args.shards or storage.join(work_dir, "shards", "test")

    def predict_fn(model_uri: str) -> np.ndarray:
        from danq.evaluation.scoring import predict_uri

        return predict_uri(model_uri, shards, params.evaluate.batch_size)

    blessing = promote_candidates(
        registry.connect(params),
        params.mlflow.registered_model,
        params.promote,
        args.eval_dir or storage.join(work_dir, "eval"),
        args.variants,
        args.out or storage.join(work_dir, "promote"),
        predict_fn,
        params.seed,
    )
    print("\n".join(blessing_lines(blessing, params.promote.confidence)))
    return 0


def blessing_lines(blessing: Blessing, confidence: float) -> list[str]:
    """Each candidate's verdict, the pairwise comparisons, then the decision."""
    lines = [f"{v.reason} [version {v.registered_version}]" for v in blessing.candidates]
    for comparison in blessing.comparisons:
        lines.append(
            f"{comparison['b']} - {comparison['a']}: macro {comparison['metric'].upper()} "
            f"{comparison['delta']:+.3f} ({confidence:.0%} CI "
            f"{comparison['ci_low']:+.3f} to {comparison['ci_high']:+.3f})"
        )
    aliases = blessing.registry["aliases"] if blessing.registry else {}
    lines.append(f"{blessing.decision}: {blessing.reason}; aliases {aliases}")
    return lines


def cmd_registry_rollback(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry

    client = registry.connect(params)
    name = args.model or params.mlflow.registered_model
    before = registry.aliases(client, name)
    after = registry.rollback(client, name)
    print(
        f"{name}: {registry.CHAMPION} {before.get(registry.CHAMPION)} -> "
        f"{after.get(registry.CHAMPION)}, "
        f"{registry.PREVIOUS_CHAMPION} -> {after.get(registry.PREVIOUS_CHAMPION)}"
    )
    return 0


def cmd_registry_show(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry

    client = registry.connect(params)
    name = args.model or params.mlflow.registered_model
    by_alias = registry.aliases(client, name)
    versions = registry.model_versions(client, name)
    print(f"registered model {name!r} at {client.tracking_uri}: {len(versions)} versions")
    if versions:
        print("\n".join(version_table(versions, by_alias)))
    return 0


def version_table(versions: list[ModelVersion], by_alias: dict[str, str]) -> list[str]:
    """The aliases, then one row per version with its tags and aliases."""
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(by_alias.items()))
    alias_of: dict[str, list[str]] = {}
    for alias, version in by_alias.items():
        alias_of.setdefault(version, []).append(alias)
    lines = [
        f"aliases: {aliases or 'none'}",
        f"{'version':>7}  {'variant':16} {'AUROC':7} {'AUPR':7} {'blessed':8} {'data.md5':10} "
        f"{'git':9} {'run_id':32}  aliases",
    ]
    for v in versions:
        tags = v.tags
        auroc = tags.get(artifacts.TAG_METRIC_PREFIX + "auroc", "-")[:7]
        aupr = tags.get(artifacts.TAG_METRIC_PREFIX + "aupr", "-")[:7]
        data_md5 = tags.get(artifacts.TAG_DATA_MD5, "-")[:10]
        commit = tags.get(artifacts.TAG_GIT_COMMIT, "-")[:9]
        lines.append(
            f"{v.version:>7}  {tags.get(artifacts.TAG_VARIANT, '-'):16} {auroc:7} {aupr:7} "
            f"{tags.get(artifacts.TAG_BLESSED, '-'):8} {data_md5:10} {commit:9} "
            f"{v.run_id or '-':32}  "
            f"{', '.join(sorted(alias_of.get(v.version, [])))}"
        )
    return lines


def register(commands: argparse._SubParsersAction) -> None:
    promote = commands.add_parser(
        "promote",
        help="bless candidates against floors and the champion; move the alias",
        description="Bless each evaluated candidate only if it passes the absolute floors and, "
        "when a champion exists, beats it on the same test split with a paired-bootstrap CI "
        "above zero and few regressed targets; register every candidate and give the best "
        "blessed one the alias `champion`. Writes blessing.json.",
    )
    promote.add_argument("--eval-dir", help="evaluation outputs (default: <paths.work_dir>/eval)")
    promote.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), help="candidates to consider"
    )
    promote.add_argument("--out", help="where blessing.json goes (default: <work_dir>/promote)")
    promote.add_argument(
        "--shards",
        help="test shards to score the champion on (default: <paths.work_dir>/shards/test)",
    )
    promote.set_defaults(handler=cmd_promote)

    registry = commands.add_parser("registry", help="inspect the model registry, roll back")
    registry_commands = registry.add_subparsers(
        dest="registry_command", required=True, metavar="COMMAND"
    )
    rollback = registry_commands.add_parser(
        "rollback", help="move `champion` back to the previous champion (twice: undo)"
    )
    show = registry_commands.add_parser("show", help="versions, aliases and tags")
    for parser in (rollback, show):
        parser.add_argument("--model", help="registered model (default: mlflow.registered_model)")
    rollback.set_defaults(handler=cmd_registry_rollback)
    show.set_defaults(handler=cmd_registry_show)
