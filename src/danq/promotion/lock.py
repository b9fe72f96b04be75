"""A lock per registered model, so that re-reading, comparing and moving its aliases is one step.

Why a registered model: MLflow's REST API has no compare-and-set, and a tag is last-writer-wins
(two writers can both believe they set it). The one atomic primitive it offers is creating a
registered model: the SQL store inserts a row keyed by the name, and the second of two
creators gets RESOURCE_ALREADY_EXISTS (mlflow/store/model_registry/sqlalchemy_store.py,
create_registered_model: IntegrityError -> RESOURCE_ALREADY_EXISTS), on PostgreSQL and SQLite
alike; the tags are inserted in the same transaction. Renaming is atomic on the same key
(rename_registered_model: IntegrityError -> RESOURCE_ALREADY_EXISTS). So:

- the lock of model M is the registered model "M.lock", created with tags naming its owner
  (MLflow user, host, pid), a random token, and when it was taken and expires;
- a command that finds it taken polls with backoff (0.2 s doubling to 2 s) up to lock_wait_s,
  then fails with RegistryLocked naming the holder and the expiry;
- a lock ends by being renamed to "M.lock.ended.<its token>" and then deleted, when another
  command breaks it after it expired, and when its holder releases it late in its lease (early
  in it, nobody may break it, and the holder deletes it by name). The new name holds
  the token of the lock the caller means, so of two commands breaking the same expired lock
  one rename succeeds and the other fails (the target exists, or there is no lock left). The
  caller then checks the token of what it renamed; if it was a newer lock (possible only when
  the old one had already ended and its ended record was deleted), it renames it back and
  says so. A broken lock is reported on stderr.

Limits, stated where they matter:
- Expiry is a lease. A holder that runs past lock_expiry_s may lose its lock to another
  command; before writing anything it checks that it still holds it (still_held). Expiry
  compares the holder's clock with the breaker's: keep the machines' clocks synchronised.
- Basic auth (mlflow/server/auth/__init__.py): creating a registered model needs no grant
  while workspaces are off, and the creator gets MANAGE on it
  (set_can_manage_registered_model_permission); others have default_permission (READ).
  Renaming needs EDIT and deleting MANAGE, so only the user who took a lock, or an admin, can
  end it: an expired lock of another user is reported (RegistryLocked), not broken. Grants on
  the lock's name cannot be given in advance: deleting a registered model deletes every grant
  on its name (delete_can_manage_registered_model_permission). In the deployed set-up every
  pipeline step logs in as one pipeline user, so the pipeline breaks its own stale locks.
- "M.lock" shows in the registry's model list while a lock is held.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mlflow.exceptions import MlflowException

from danq.errors import AliasMoveError, RegistryError, RegistryLocked, RegistryPermissionError
from danq.promotion.permissions import current_user
from danq.promotion.registry import RetryingClient, report

LOCK_SUFFIX = ".lock"
ENDED_INFIX = ".ended."
TAG_OWNER = "danq.lock.owner"
TAG_TOKEN = "danq.lock.token"
TAG_ACQUIRED = "danq.lock.acquired"
TAG_EXPIRES = "danq.lock.expires"
FIRST_POLL_S = 0.2
MAX_POLL_S = 2.0


def lock_name(model: str) -> str:
    """The registered model that is the lock of `model`."""
    return f"{model}{LOCK_SUFFIX}"


def _now() -> datetime:
    return datetime.now(UTC)


def _text(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Lock:
    """One lock on a registered model: who took it, its token, when it was taken and expires."""

    model: str
    owner: str
    token: str
    acquired: datetime
    expires: datetime

    @property
    def name(self) -> str:
        return lock_name(self.model)

    def expired(self) -> bool:
        return _now() >= self.expires

    def describe(self) -> str:
        state = "expired" if self.expired() else "expires"
        return (
            f"held by {self.owner} since {self.acquired:%Y-%m-%d %H:%M:%S} UTC, {state} "
            f"{self.expires:%Y-%m-%d %H:%M:%S} UTC (registered model {self.name!r})"
        )

    def tags(self) -> dict[str, str]:
        return {
            TAG_OWNER: self.owner,
            TAG_TOKEN: self.token,
            TAG_ACQUIRED: _text(self.acquired),
            TAG_EXPIRES: _text(self.expires),
        }


def _owner() -> str:
    user = current_user() or "anonymous"
    return f"MLflow user {user!r} on {socket.gethostname()} pid {os.getpid()}"


def _parse(model: str, registered_name: str, tags: dict[str, str]) -> Lock:
    try:
        return Lock(
            model=model,
            owner=tags[TAG_OWNER],
            token=tags[TAG_TOKEN],
            acquired=datetime.fromisoformat(tags[TAG_ACQUIRED]),
            expires=datetime.fromisoformat(tags[TAG_EXPIRES]),
        )
    except (KeyError, ValueError) as err:
        raise RegistryError(
            f"registered model {registered_name!r} is in the way of the registry lock of "
            f"{model!r} but is not a danq lock (tag {err} missing or malformed): rename or "
            "delete it"
        ) from None


def _read(client: RetryingClient, model: str, registered_name: str) -> Lock | None:
    """The lock stored as registered model registered_name; None when there is none."""
    try:
        found = client.get_registered_model(registered_name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return _parse(model, registered_name, dict(found.tags))


def read_lock(client: RetryingClient, model: str) -> Lock | None:
    """The lock held on `model`, or None."""
    return _read(client, model, lock_name(model))


def _fails_with(err: MlflowException, *codes: str) -> bool:
    return err.error_code in codes


def _end(client: RetryingClient, lock: Lock) -> bool:
    """Rename the lock named lock.name to its ended name and delete it, if it is `lock`.

    Returns whether this call ended it. A newer lock renamed by mistake is put back."""
    ended = f"{lock.name}{ENDED_INFIX}{lock.token}"
    try:
        client.rename_registered_model(lock.name, ended)
    except MlflowException as err:
        if _fails_with(err, "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
            return False
        now = read_lock(client, lock.model)
        if now is None or now.token != lock.token:
            return False  # another command ended it at the same moment
        raise
    taken = _read(client, lock.model, ended)
    if taken is not None and taken.token != lock.token:
        try:
            client.rename_registered_model(ended, lock.name)
        except MlflowException as err:
            if not _fails_with(err, "RESOURCE_ALREADY_EXISTS"):
                raise
            report(
                f"the registry lock of {lock.model!r} {taken.describe()} was moved aside to "
                f"{ended!r} while ending an older lock, and a new lock was taken meanwhile: "
                "both of their commands may move aliases; check `danq registry show`"
            )
        return False
    try:
        client.delete_registered_model(ended)
    except RegistryPermissionError as err:
        report(f"ended the registry lock of {lock.model!r} but left {ended!r}: {err}")
    return True


def _break(client: RetryingClient, lock: Lock) -> bool:
    """End another command's expired lock, or fail saying why this user may not; returns
    whether this call ended it."""
    try:
        ended = _end(client, lock)
    except RegistryPermissionError as err:
        user = current_user() or "anonymous"
        raise RegistryLocked(
            f"registered model {lock.model!r} is locked, {lock.describe()}; MLflow user "
            f"{user!r} may not break another user's lock ({err}). Its owner or an MLflow "
            f"admin can: delete registered model {lock.name!r}"
        ) from err
    if ended:
        report(f"broke the expired registry lock of {lock.model!r}, {lock.describe()}")
    return ended


def acquire(client: RetryingClient, model: str, expiry_s: float, wait_s: float) -> Lock:
    """Take the lock of `model`, waiting up to wait_s for another holder; expired locks are
    broken. Raises RegistryLocked when the lock stays held."""
    token = uuid.uuid4().hex
    owner = _owner()
    deadline = time.monotonic() + wait_s
    delay = FIRST_POLL_S
    while True:
        taken = _now()
        mine = Lock(model, owner, token, taken, taken + timedelta(seconds=expiry_s))
        try:
            client.create_registered_model(
                mine.name,
                tags=mine.tags(),
                description=f"danq's lock of registered model {model!r}; not a model",
            )
            return mine
        except MlflowException as err:
            if not _fails_with(err, "RESOURCE_ALREADY_EXISTS"):
                raise
        holder = read_lock(client, model)
        if holder is None:
            continue  # released since: try again at once
        if holder.token == token:
            return holder  # our own create, answered after a lost connection and retried
        if holder.expired() and _break(client, holder):
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RegistryLocked(
                f"registered model {model!r} is locked by another command, "
                f"{holder.describe()}; waited {wait_s:g} s (promote.lock_wait_s). Try again "
                "later; a lock left by a crashed command is broken once it has expired"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_POLL_S)


def release(client: RetryingClient, lock: Lock) -> None:
    """End `lock`; if it had expired and was broken meanwhile, say so.

    Within the first half of its lease nobody may break it, so it is deleted by name (one
    call); later it ends as a broken lock does, by renaming it first (three calls)."""
    if _now() < lock.acquired + (lock.expires - lock.acquired) / 2:
        client.delete_registered_model(lock.name)
        return
    if not _end(client, lock):
        report(
            f"the registry lock of {lock.model!r} taken by this command ({lock.owner}) had "
            "expired and was broken by another command before it was released"
        )


def still_held(client: RetryingClient, lock: Lock) -> None:
    """Raise AliasMoveError unless `lock` is still the lock of its model: checked before
    anything is written, so a holder that overran its expiry writes nothing."""
    now = read_lock(client, lock.model)
    if now is None or now.token != lock.token:
        holder = f"now {now.describe()}" if now else "now free"
        raise AliasMoveError(
            f"the registry lock of {lock.model!r} expired (promote.lock_expiry_s) before "
            f"this command wrote anything and was broken ({holder}): nothing moved; rerun"
        )


@contextmanager
def locked(client: RetryingClient, model: str, expiry_s: float, wait_s: float) -> Iterator[Lock]:
    """The lock of `model` held within the scope, released on exit (also after an error)."""
    lock = acquire(client, model, expiry_s, wait_s)
    try:
        yield lock
    finally:
        release(client, lock)
