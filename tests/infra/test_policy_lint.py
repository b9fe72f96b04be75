"""checkov, a policy linter for Kubernetes manifests, on infra/k8s as rendered: it reports
nothing beyond the findings accepted below, each for the reason given, and every accepted
finding still occurs (a fixed one must leave the list).

checkov is not a dependency of the project's environment: it is looked up as $CHECKOV, then
.venv-lint/bin/checkov (`make lint-tools`), then on PATH; without it the test is skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .manifests import KUBEFLOW_USER_K8S, MLFLOW_K8S, REPO
from .rendering import render

LINT_VENV = REPO / ".venv-lint"
IMAGE_TAGS = (
    "images are referenced by tag: danq-mlflow's is a site setting (the MLflow version, pushed "
    "by make images), postgres:17 follows its major version's security releases (pulled "
    "Always); a site that pins digests does so when deploying (kustomize edit set image)"
)
IMAGE_UIDS = (
    "the uids the images are built for: 1000 (Dockerfile.mlflow, danq.kfp.images.IMAGE_UID) and "
    "999 (the postgres image's user, owner of its folders); what confines the processes is the "
    "restricted profile and the read-only root, the uid matters only after an escape"
)
ACCEPTED = {
    ("CKV_K8S_43", "Deployment.mlflow.mlflow"): IMAGE_TAGS,
    ("CKV_K8S_43", "StatefulSet.mlflow.postgres"): IMAGE_TAGS,
    ("CKV_K8S_43", "CronJob.mlflow.postgres-backup"): IMAGE_TAGS,
    ("CKV_K8S_40", "Deployment.mlflow.mlflow"): IMAGE_UIDS,
    ("CKV_K8S_40", "StatefulSet.mlflow.postgres"): IMAGE_UIDS,
    ("CKV_K8S_40", "CronJob.mlflow.postgres-backup"): IMAGE_UIDS,
    ("CKV_K8S_35", "Deployment.mlflow.mlflow"): (
        "secrets as environment variables: MLflow reads its admin login and Flask secret key "
        "only from the environment, libpq its password from PGPASSWORD (a password file would "
        "need the .pgpass format); PostgreSQL itself reads its password from a mounted file"
    ),
    ("CKV_K8S_35", "CronJob.mlflow.postgres-backup"): (
        "secrets as environment variables: pg_dump (libpq) reads its password from PGPASSWORD"
    ),
}


def checkov() -> str | None:
    candidates = [os.environ.get("CHECKOV"), str(LINT_VENV / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("checkov")


def test_checkov_reports_only_the_accepted_findings(tmp_path: Path) -> None:
    exe = checkov()
    if exe is None:
        pytest.skip(
            "checkov is not installed: `make lint-tools` (a separate venv, .venv-lint), "
            "or set CHECKOV to its path"
        )
    objects = [o for f in (MLFLOW_K8S, KUBEFLOW_USER_K8S) for o in render(f, tmp_path / f.name)]
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(objects))
    done = subprocess.run(
        [exe, "--file", str(manifests), "--framework", "kubernetes", "--output", "json"]
        + ["--skip-download", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["summary"]["passed"] > 0, report["summary"]
    failed = {
        (c["check_id"], c["resource"]): c["check_name"] for c in report["results"]["failed_checks"]
    }
    unexpected = {key: name for key, name in failed.items() if key not in ACCEPTED}
    assert not unexpected, f"checkov findings to fix or accept (with a reason): {unexpected}"
    fixed = set(ACCEPTED) - set(failed)
    assert not fixed, f"accepted findings that no longer occur, to remove from ACCEPTED: {fixed}"
