"""`danq promote` and `danq registry show | promote | rollback | grant | verify`."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from danq import artifacts
from danq.config import VARIANTS, Params
from danq.errors import ConfigError
from danq.io import storage
from danq.redaction import redact_uri

if TYPE_CHECKING:
    import numpy as np
    from mlflow.entities.model_registry import ModelVersion

    from danq.promotion.decide import Blessing
    from danq.promotion.registry import RetryingClient


def cmd_promote(args: argparse.Namespace, params: Params) -> int:
    from danq.evaluation.resampling import block_rows
    from danq.promotion import registry
    from danq.promotion.promote import promote_candidates

    work_dir = params.work_dir
    shards = args.shards or storage.join(work_dir, "shards", "valid")

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
        rows_per_block=block_rows(params.promote, params.data_dir),
    )
    print("\n".join(blessing_lines(blessing, params.promote.confidence)))
    return 0


def blessing_lines(blessing: Blessing, confidence: float) -> list[str]:
    """Each candidate's verdict (validation) and test metrics (reported), the comparisons
    of the trained models, then the decision."""
    lines = [f"decided on the {blessing.decided_on} split; {blessing.reported_on} is reported only"]
    for v in blessing.candidates:
        lines.append(f"{v.reason} [version {v.registered_version}]")
        if v.test_metrics:
            lines.append(
                f"  {v.variant} {blessing.reported_on} (reported, not used to choose): macro "
                f"AUROC {v.test_metrics['auroc']:.4f}, AUPR {v.test_metrics['aupr']:.4f}"
            )
    for comparison in blessing.comparisons:
        lines.append(
            f"trained {comparison['b']} model - trained {comparison['a']} model on "
            f"{blessing.decided_on}: macro {comparison['metric'].upper()} "
            f"{comparison['delta']:+.3f} ({confidence:.0%} block-bootstrap CI "
            f"{comparison['ci_low']:+.3f} to {comparison['ci_high']:+.3f}, "
            f"{comparison['block_rows']}-row blocks): {comparison['verdict']}; compares two "
            "trained models, not two methods"
        )
    for comparison in blessing.seed_comparisons:
        lines.append(
            f"{comparison['b']} - {comparison['a']} over {comparison['n_seeds']} seeds on "
            f"{blessing.decided_on}: macro {comparison['metric'].upper()} "
            f"{comparison['delta']:+.3f} ({comparison['interval']} CI "
            f"{comparison['ci_low']:+.3f} to {comparison['ci_high']:+.3f}): "
            f"{comparison['verdict']}"
        )
    aliases = blessing.registry["aliases"] if blessing.registry else {}
    lines.append(f"{blessing.decision}: {blessing.reason}; aliases {aliases}")
    return lines


def _current(
    client: RetryingClient, name: str, expect: str | None, params: Params
) -> tuple[dict[str, str], str | None]:
    """The aliases now and the champion a move is decided against: --expect-champion ('none':
    there was no champion), else the champion as it is once any move a failed command left
    unfinished has been repaired."""
    from danq.promotion import moves, registry

    if expect is None:
        now = moves.repair(client, name, params.promote)
        return now, now.get(registry.CHAMPION)
    return registry.aliases(client, name), None if expect.lower() == "none" else expect


def _alias_change(name: str, before: dict[str, str], after: dict[str, str]) -> str:
    from danq.promotion import registry

    changes = ", ".join(
        f"{alias} {before.get(alias) or '-'} -> {after.get(alias) or '-'}"
        for alias in (registry.CHAMPION, registry.PREVIOUS_CHAMPION)
    )
    return f"{name}: {changes}"


def cmd_registry_promote(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import moves, registry

    client = registry.connect(params)
    name = args.model or params.mlflow.registered_model
    before, expected = _current(client, name, args.expect_champion, params)
    after = moves.promote(client, name, args.version, expected, params.promote)
    print(_alias_change(name, before, after))
    record = moves.rolled_back(client, name, args.version)
    if record is not None:
        print(f"note: version {args.version} had been rolled back ({record})")
    return 0


def cmd_registry_rollback(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import moves, registry

    client = registry.connect(params)
    name = args.model or params.mlflow.registered_model
    before, expected = _current(client, name, args.expect_champion, params)
    after = moves.rollback(client, name, expected, params.promote)
    print(_alias_change(name, before, after))
    return 0


def cmd_registry_grant(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry
    from danq.promotion.grants import grant

    password = None
    if args.password_env is not None:
        password = os.environ.get(args.password_env)
        if not password:
            raise ConfigError(f"environment variable {args.password_env} is not set or empty")
    lines = grant(
        registry.connect(params),
        args.user,
        password,
        args.experiment or params.mlflow.experiment,
        args.model or params.mlflow.registered_model,
    )
    print("\n".join(lines))
    return 0


def cmd_registry_verify(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import registry
    from danq.promotion.verify import verify_version

    name = args.model or params.mlflow.registered_model
    print("\n".join(verify_version(registry.connect(params), name, args.version).lines()))
    return 0


def cmd_registry_show(args: argparse.Namespace, params: Params) -> int:
    from danq.promotion import lock, moves, registry

    client = registry.connect(params)
    name = args.model or params.mlflow.registered_model
    by_alias = registry.aliases(client, name)
    versions = registry.model_versions(client, name)
    print(
        f"registered model {name!r} at {redact_uri(client.tracking_uri)}: {len(versions)} versions"
    )
    held = lock.read_lock(client, name)
    if held is not None:
        print(f"lock: {held.describe()}")
    move, record = moves.pending_move(client, name)
    if record is not None:
        what = move.describe() if move else f"malformed record {record!r}"
        print(
            f"unfinished alias move ({what}): under way now if the lock is held, else left by "
            "a failed command; the next promotion or rollback repairs it"
        )
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
        description="Bless each evaluated candidate only if, on the validation split, it "
        "passes the absolute floors and, when a champion exists, beats it (re-scored on the "
        "same validation rows) with a paired block-bootstrap CI above zero and few regressed "
        "targets; the test split's metrics are reported, never used to choose. Register every "
        "candidate (with its model "
        "file's sha256, checked against the one recorded at training) and give the best "
        "blessed one the alias `champion`. The move is compare-and-set under the registry "
        "lock: if another command moved `champion` since it was scored, nothing moves and the "
        "command fails (rerun it). A version that was rolled back is not made champion again. "
        "Writes blessing.json.",
    )
    promote.add_argument("--eval-dir", help="evaluation outputs (default: <paths.work_dir>/eval)")
    promote.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), help="candidates to consider"
    )
    promote.add_argument("--out", help="where blessing.json goes (default: <work_dir>/promote)")
    promote.add_argument(
        "--shards",
        help="validation shards to re-score the champion on (default: "
        "<paths.work_dir>/shards/valid)",
    )
    promote.set_defaults(handler=cmd_promote)

    registry = commands.add_parser(
        "registry",
        help="inspect the model registry, move or roll back `champion`, grant a user, "
        "record a version's checksum",
        description="Alias moves take the registry lock (promote.lock_wait_s, "
        "promote.lock_expiry_s), compare the champion with the one stated, record the move "
        "before writing and read it back after; a move a failed command left unfinished is "
        "repaired by the next one.",
    )
    registry_commands = registry.add_subparsers(
        dest="registry_command", required=True, metavar="COMMAND"
    )
    show = registry_commands.add_parser(
        "show", help="versions, aliases and tags; a held lock or an unfinished move"
    )
    move = registry_commands.add_parser(
        "promote",
        help="make a version champion by hand (the old champion becomes previous-champion)",
        description="For operators: champion <- VERSION, previous-champion <- the old champion, "
        "refused if the champion is not the expected one. The version must carry its model "
        "file's sha256 (registered by danq promote).",
    )
    move.add_argument("--version", required=True, help="registered version to make champion")
    rollback = registry_commands.add_parser(
        "rollback",
        help="swap champion and previous-champion (a second rollback undoes the first)",
        description="Swap champion and previous-champion; the version taken off is tagged "
        f"{artifacts.TAG_ROLLED_BACK} (when, by whom) and promotion will not make it champion "
        "again by itself. Refused if the champion is not the expected one.",
    )
    for parser in (move, rollback):
        parser.add_argument(
            "--expect-champion",
            metavar="VERSION|none",
            help="the champion this move is decided against; refused if it changed "
            "(default: the champion when the command starts, after repairing a move a failed "
            "command left unfinished)",
        )
    grant = registry_commands.add_parser(
        "grant",
        help="give an MLflow user EDIT on the experiment and the registered model (admin)",
        description="Run with an admin's MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. "
        "Creates the user (when --password-env is given and it is missing), the experiment "
        "(mlflow.experiment) and the registered model when missing, and gives the user EDIT on "
        "both (a higher permission stays). Idempotent; prints what it did.",
    )
    grant.add_argument("--user", required=True, help="MLflow user, e.g. the pipeline's")
    grant.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the password to create the user with",
    )
    grant.add_argument("--experiment", help="experiment (default: mlflow.experiment)")
    verify = registry_commands.add_parser(
        "verify",
        help="record the sha256 of a version registered before danq recorded checksums",
        description="For operators, once per version registered before danq recorded model "
        "checksums: loading, prediction and promotion refuse a version without "
        f"{artifacts.TAG_MODEL_SHA256}. Checks the version's stored model file as loading does "
        "(a Keras .keras file with only Keras and danq classes) and records its sha256 on the "
        "version (and on its logged model when that has none): the file as stored now is "
        "trusted, so run it only for a version you know is the model you trained. A version "
        "that has the tag is only checked (exit 0 when the file matches); a recorded sha256 "
        "that the file does not match is never overwritten (exit 1).",
    )
    verify.add_argument("--version", required=True, help="registered version to verify")
    for parser in (show, move, rollback, grant, verify):
        parser.add_argument("--model", help="registered model (default: mlflow.registered_model)")
    show.set_defaults(handler=cmd_registry_show)
    move.set_defaults(handler=cmd_registry_promote)
    rollback.set_defaults(handler=cmd_registry_rollback)
    grant.set_defaults(handler=cmd_registry_grant)
    verify.set_defaults(handler=cmd_registry_verify)
