"""Moving the `champion` and `previous-champion` aliases: compare-and-set, under the registry
lock (danq.promotion.lock), recorded before writing and read back after.

- Compare-and-set: every move states the champion it decided against (None: there was none).
  Under the lock the aliases are read again, and if the champion is another one the move is
  refused with ChampionChanged and nothing is written. Deciding (scoring the candidates and the
  champion, minutes) happens before, outside the lock: the comparison under the lock is what
  makes a decision safe to apply, and a rollback need not wait for a promotion's scoring.
- Promotion: champion <- the version, previous-champion <- the champion it replaces. Rollback
  swaps the two, so a second rollback undoes the first. The swap is kept: a rollback states
  the champion it takes off, so a repeated one (a retry whose answer was lost) is refused
  rather than undoing the first, and an operator can still undo a rollback in one step.
- A version is made champion only if it carries TAG_MODEL_SHA256: its model file can then be
  verified before it is loaded.
- Crash safety: before any alias is written, the move is recorded as the registered-model tag
  TAG_ALIAS_MOVE (JSON: op, from, to, owner, time); previous-champion is written first and
  champion last, then the version tags (TAG_REPLACED_VERSION on the new champion, and
  TAG_ROLLED_BACK on the version a rollback takes off), then the aliases are read back and
  the record deleted. The next command that takes the lock and finds a record (its command
  failed or was killed) repairs it first and says so on stderr: it completes a move that
  stopped part-way, clears a record whose move had completed or never started, and leaves
  aliases that match none of these (moved by hand meanwhile) as they are. Nothing writes back
  an old snapshot of the aliases: that is how a stale promotion could undo a rollback.
- Aliases are only set, never deleted: deleting one needs MANAGE, setting one EDIT.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from danq.artifacts import TAG_ALIAS_MOVE, TAG_MODEL_SHA256, TAG_REPLACED_VERSION, TAG_ROLLED_BACK
from danq.config import PromoteConfig
from danq.errors import AliasMoveError, ChampionChanged, DanqError, ModelIntegrityError
from danq.promotion import lock as registry_lock
from danq.promotion.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    RetryingClient,
    alias_versions,
    aliases,
    report,
)

ALIASES = (PREVIOUS_CHAMPION, CHAMPION)  # the order they are written in: champion last
NO_VERSION = "none"  # TAG_REPLACED_VERSION of a first champion

State = dict[str, str | None]


def _state(by_alias: dict[str, str]) -> State:
    return {alias: by_alias.get(alias) for alias in ALIASES}


def _show(state: State) -> str:
    return ", ".join(f"{alias} {state[alias] or '-'}" for alias in (CHAMPION, PREVIOUS_CHAMPION))


@dataclass(frozen=True)
class Move:
    """One alias move as recorded on the registered model while it is under way."""

    op: str  # "promote" or "rollback"
    before: State
    after: State
    owner: str
    time: str

    def to_json(self) -> str:
        document = asdict(self)
        document["from"], document["to"] = document.pop("before"), document.pop("after")
        return json.dumps(document, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Move:
        """The move recorded in a TAG_ALIAS_MOVE value; ValueError when it is not one."""
        try:
            document = json.loads(text)
            before, after = document["from"], document["to"]
            return cls(
                op=str(document["op"]),
                before={alias: before.get(alias) for alias in ALIASES},
                after={alias: after.get(alias) for alias in ALIASES},
                owner=str(document["owner"]),
                time=str(document["time"]),
            )
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as err:
            raise ValueError(f"not an alias move record: {err}") from None

    def describe(self) -> str:
        changes = ", ".join(
            f"{alias} {self.before[alias] or '-'} -> {self.after[alias] or '-'}"
            for alias in (CHAMPION, PREVIOUS_CHAMPION)
        )
        return f"{self.op}: {changes}, by {self.owner} at {self.time}"


def _move(op: str, before: State, after: State, lock: registry_lock.Lock) -> Move:
    time = datetime.now(UTC).isoformat(timespec="seconds")
    return Move(op, before, after, lock.owner, time)


def _require_verifiable(client: RetryingClient, name: str, version: str) -> None:
    """Refuse a version that does not exist or has no sha256 to verify its model file by."""
    try:
        tags = client.get_model_version(name, version).tags
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise AliasMoveError(f"registered model {name!r} has no version {version}") from None
    if not tags.get(TAG_MODEL_SHA256):
        raise ModelIntegrityError(
            f"version {version} of registered model {name!r} has no {TAG_MODEL_SHA256} tag: "
            "its model file cannot be verified, so it is not made champion. Register its "
            "logged model again through promotion, which records the sha256; or, for a "
            "version registered before danq recorded checksums, check that it is the model "
            f"you trained and run `danq registry verify --version {version} --model {name}`"
        )


def rolled_back(client: RetryingClient, name: str, version: str) -> str | None:
    """The TAG_ROLLED_BACK record of a version (when, by whom), or None if never rolled back."""
    return client.get_model_version(name, version).tags.get(TAG_ROLLED_BACK)


def _refuse_if_changed(name: str, state: State, expected: str | None, what: str) -> None:
    champion = state[CHAMPION]
    if champion == expected:
        return
    now = f"version {champion}" if champion else "no version (there is no champion)"
    then = f"version {expected}" if expected else "there being no champion"
    raise ChampionChanged(
        f"champion of {name!r} is now {now}, this {what} decided against {then}: nothing "
        f"moved; rerun the {what} to decide against the new champion"
    )


def _write_aliases(client: RetryingClient, name: str, state: State, target: State) -> None:
    for alias in ALIASES:
        version = target[alias]
        if version is not None and state[alias] != version:
            client.set_registered_model_alias(name, alias, version)


def _tag_versions(client: RetryingClient, name: str, move: Move) -> None:
    """The version tags of a move; idempotent, so a repair may write them again."""
    new, old = move.after[CHAMPION], move.before[CHAMPION]
    if new is None or new == old:
        return
    client.set_model_version_tag(name, new, TAG_REPLACED_VERSION, old or NO_VERSION)
    if move.op == "rollback" and old is not None:
        record = json.dumps({"time": move.time, "by": move.owner, "champion": new})
        client.set_model_version_tag(name, old, TAG_ROLLED_BACK, record)


def _finish(client: RetryingClient, name: str, move: Move) -> dict[str, str]:
    """Read the aliases back; if they are the move's target, delete its record."""
    now = aliases(client, name)
    if _state(now) != move.after:
        raise AliasMoveError(
            f"aliases of {name!r} read back as {_show(_state(now))} after the move "
            f"({move.describe()}): another writer moved them; the move stays recorded on the "
            "registered model and the next registry command reports it"
        )
    client.delete_registered_model_tag(name, TAG_ALIAS_MOVE)
    return now


def _moved_so_far(client: RetryingClient, name: str, move: Move) -> str | None:
    """After writing a move failed: None if no alias had moved (its record is then deleted),
    else the aliases as they are now, in words."""
    try:
        state = _state(aliases(client, name))
        if state == move.before:
            client.delete_registered_model_tag(name, TAG_ALIAS_MOVE)
            return None
    except (MlflowException, DanqError) as read_err:
        return f"unknown ({read_err})"
    return _show(state)


def _apply(
    client: RetryingClient, name: str, move: Move, held: registry_lock.Lock
) -> dict[str, str]:
    registry_lock.still_held(client, held)
    client.set_registered_model_tag(name, TAG_ALIAS_MOVE, move.to_json())
    try:
        _write_aliases(client, name, move.before, move.after)
        _tag_versions(client, name, move)
    except Exception as err:
        now = _moved_so_far(client, name, move)
        if now is None:
            raise
        raise AliasMoveError(
            f"moving the aliases of {name!r} failed part-way ({err}); aliases now {now}. The "
            f"move ({move.describe()}) is recorded on the registered model, and the next "
            "registry command completes it"
        ) from err
    return _finish(client, name, move)


def _repair(client: RetryingClient, name: str) -> dict[str, str]:
    """Under the lock: settle a move record left by a failed command; the aliases after."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    record = model.tags.get(TAG_ALIAS_MOVE)
    current = alias_versions(model)
    if record is None:
        return current
    try:
        move = Move.from_json(record)
    except ValueError as err:
        client.delete_registered_model_tag(name, TAG_ALIAS_MOVE)
        report(f"cleared a malformed alias-move record of {name!r} ({err}): {record!r}")
        return current
    state = _state(current)
    part_way = {PREVIOUS_CHAMPION: move.after[PREVIOUS_CHAMPION], CHAMPION: move.before[CHAMPION]}
    found = f"found an unfinished alias move of {name!r} ({move.describe()})"
    if state != move.before and state in (move.after, part_way):
        _write_aliases(client, name, state, move.after)
        _tag_versions(client, name, move)
        now = _finish(client, name, move)
        done = "completed it" if state == part_way else "it had completed; record cleared"
        report(f"{found}: {done}")
        return now
    client.delete_registered_model_tag(name, TAG_ALIAS_MOVE)
    if state == move.before:
        report(f"{found}: no alias had moved; record cleared, nothing moved")
    else:
        report(
            f"{found}: the aliases ({_show(state)}) are neither before, part-way nor after it "
            "(moved by hand?): left as they are; record cleared"
        )
    return current


def pending_move(client: RetryingClient, name: str) -> tuple[Move | None, str | None]:
    """The move recorded on the registered model (unfinished, or under way now) and the raw
    record; (None, None) when there is none."""
    try:
        record = client.get_registered_model(name).tags.get(TAG_ALIAS_MOVE)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None, None
        raise
    if record is None:
        return None, None
    try:
        return Move.from_json(record), record
    except ValueError:
        return None, record


def promote(
    client: RetryingClient,
    name: str,
    version: str,
    expected_champion: str | None,
    cfg: PromoteConfig,
) -> dict[str, str]:
    """champion <- version, previous-champion <- the champion it replaces, provided the
    champion is still expected_champion; returns the aliases after. A no-op when version
    already is the champion."""
    _require_verifiable(client, name, version)
    with registry_lock.locked(client, name, cfg.lock_expiry_s, cfg.lock_wait_s) as held:
        state = _state(_repair(client, name))
        _refuse_if_changed(name, state, expected_champion, "promotion")
        if state[CHAMPION] == version:
            return aliases(client, name)
        after = {
            PREVIOUS_CHAMPION: state[CHAMPION] or state[PREVIOUS_CHAMPION],
            CHAMPION: version,
        }
        return _apply(client, name, _move("promote", state, after, held), held)


def rollback(
    client: RetryingClient, name: str, expected_champion: str | None, cfg: PromoteConfig
) -> dict[str, str]:
    """Swap champion and previous-champion, provided the champion is still expected_champion;
    returns the aliases after."""
    with registry_lock.locked(client, name, cfg.lock_expiry_s, cfg.lock_wait_s) as held:
        state = _state(_repair(client, name))
        _refuse_if_changed(name, state, expected_champion, "rollback")
        previous, champion = state[PREVIOUS_CHAMPION], state[CHAMPION]
        if previous is None or champion is None:
            raise AliasMoveError(
                f"registered model {name!r} has no {PREVIOUS_CHAMPION} to roll back to"
            )
        _require_verifiable(client, name, previous)
        after: State = {PREVIOUS_CHAMPION: champion, CHAMPION: previous}
        return _apply(client, name, _move("rollback", state, after, held), held)


def repair(client: RetryingClient, name: str, cfg: PromoteConfig) -> dict[str, str]:
    """Take the lock and settle any move a failed command left unfinished; the aliases after."""
    with registry_lock.locked(client, name, cfg.lock_expiry_s, cfg.lock_wait_s):
        return _repair(client, name)
