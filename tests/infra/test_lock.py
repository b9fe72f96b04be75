"""The supply chain: every install (the venvs, CI, the images) is from a hashed lock under
--require-hashes, the locks hold what pyproject.toml asks for, and the audit of the locks runs
in `make lint` and in CI."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .manifests import REPO

REQUIREMENTS = REPO / "requirements"
DOCKER = REPO / "infra" / "docker"
LOCKS = ("dev", "runtime", "mlflow", "checkov", "tools")


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.split(" #")[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def lock_entries(text: str) -> dict[str, tuple[Version, list[str]]]:
    """A lock's requirements: canonical name -> (pinned version, its hashes). Fails on an entry
    that is not pinned with == or carries no hash."""
    entries = {}
    for line in logical_lines(text):
        if line.startswith(("--find-links", "--index-url", "--extra-index-url")):
            continue
        spec, *options = line.split()
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        assert hashes and len(hashes) == len(options), f"{spec}: options {options}"
        requirement = Requirement(spec)
        (pin,) = requirement.specifier
        assert pin.operator == "==" and "*" not in pin.version, spec
        entries[canonicalize_name(requirement.name)] = (Version(pin.version), hashes)
    return entries


def locked(name: str) -> dict[str, Version]:
    text = (REQUIREMENTS / f"{name}.lock").read_text()
    return {package: version for package, (version, _) in lock_entries(text).items()}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def in_file_requirements(name: str) -> list[Requirement]:
    return [Requirement(line) for line in logical_lines((REQUIREMENTS / name).read_text())]


def make_recipe(target: str) -> str:
    """The recipe of a Makefile rule, continuations joined."""
    lines = (REPO / "Makefile").read_text().replace("\\\n", " ").splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith(f"{target}:")]
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return "\n".join(recipe)


def test_lock_parser_refuses_unhashed_and_unpinned_entries() -> None:
    hashed = "six==1.17.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
    assert lock_entries(hashed) == {"six": (Version("1.17.0"), ["sha256:" + "a" * 64])}
    with pytest.raises(AssertionError):
        lock_entries("six==1.17.0\n")
    with pytest.raises(AssertionError):
        lock_entries("six>=1.16 \\\n    --hash=sha256:" + "a" * 64 + "\n")


@pytest.mark.parametrize("name", LOCKS)
def test_every_lock_entry_is_pinned_with_a_hash(name: str) -> None:
    text = (REQUIREMENTS / f"{name}.lock").read_text()
    entries = lock_entries(text)
    assert len(entries) >= 10, name
    # Written by the documented command, not by hand.
    assert "#    make lock\n" in text, name


def test_dev_lock_holds_pyproject_requirements_at_their_pins() -> None:
    project = pyproject()
    dev = locked("dev")
    requirements = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["dev"],
        *project["build-system"]["requires"],
    ]
    for spec in requirements:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in dev, f"{spec} is not in requirements/dev.lock: run `make lock`"
        # == pins match exactly (torch's local +cpu build matches its release: PEP 440).
        assert requirement.specifier.contains(dev[name], prereleases=True), (spec, dev[name])
    torch = dev["torch"]
    assert torch.local == "cpu", f"torch {torch}: the CUDA build would pull gigabytes"


def test_runtime_lock_holds_the_dependencies_at_the_versions_the_tests_ran() -> None:
    project = pyproject()
    runtime, dev = locked("runtime"), locked("dev")
    for spec in (*project["project"]["dependencies"], *project["build-system"]["requires"]):
        requirement = Requirement(spec)
        version = runtime[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (spec, version)
    # The dev extra's own tools stay out of the images.
    assert "torch" not in runtime and "pytest" not in runtime and "atheris" not in runtime
    for name in ("runtime", "mlflow"):
        differ = {p: (v, dev.get(p)) for p, v in locked(name).items() if dev.get(p) != v}
        assert not differ, f"{name}.lock versions the tests did not run: {differ}"


def test_tool_locks_hold_their_inputs() -> None:
    for name in ("mlflow", "checkov", "tools"):
        versions = locked(name)
        for requirement in in_file_requirements(f"{name}.in"):
            version = versions[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(version, prereleases=True), (name, version)
    mlflow_pin = [d for d in pyproject()["project"]["dependencies"] if d.startswith("mlflow==")]
    assert f"mlflow=={locked('mlflow')['mlflow']}" == mlflow_pin[0]


def test_make_installs_every_venv_from_a_lock_with_hashes() -> None:
    venv = make_recipe("$(STAMP)")
    assert "pip install --quiet --require-hashes -r $(DEV_LOCK)" in venv
    assert "DEV_LOCK := requirements/dev.lock" in (REPO / "Makefile").read_text()
    for target in ("$(STAMP)", "$(CHECKOV)", "$(TOOLS)"):
        installs = [line for line in make_recipe(target).splitlines() if "pip install" in line]
        assert installs, target
        for line in installs:
            # The project itself goes in without dependencies: they all came from the lock.
            assert "--require-hashes -r requirements/" in line.replace(
                "$(DEV_LOCK)", "requirements/dev.lock"
            ) or (
                "--no-deps" in line and "--no-build-isolation" in line and line.endswith("-e .")
            ), (target, line)
    stamp_rule = next(
        line
        for line in (REPO / "Makefile").read_text().splitlines()
        if line.startswith("$(STAMP):")
    )
    assert "pyproject.toml" in stamp_rule and "$(DEV_LOCK)" in stamp_rule


DOCKER_LOCKS = {
    "Dockerfile.cpu": "requirements/runtime.lock",
    "Dockerfile.gpu": "requirements/runtime.lock",
    "Dockerfile.mlflow": "requirements/mlflow.lock",
}


@pytest.mark.parametrize("dockerfile", sorted(DOCKER_LOCKS))
def test_images_install_from_their_lock_with_hashes(dockerfile: str) -> None:
    text = (DOCKER / dockerfile).read_text().replace("\\\n", " ")
    lock = DOCKER_LOCKS[dockerfile]
    (copied,) = re.findall(rf"^COPY {re.escape(lock)} (\S+)$", text, flags=re.M)
    target = (copied + Path(lock).name if copied.endswith("/") else copied).removeprefix("./")
    installs = re.findall(r"pip install ([^&\n]*)", text)
    assert installs, dockerfile
    assert any(f"--require-hashes -r {target}" in args for args in installs), installs
    for args in installs:
        # Anything else pip runs installs nothing from an index: the package itself (its
        # dependencies are the lock's) or an offline check of the lock's contents.
        assert "--require-hashes" in args or "--no-deps" in args or "--no-index" in args, args
        assert "--upgrade" not in args, args


def test_audit_runs_in_lint_and_ci_over_the_locks() -> None:
    audit = make_recipe("audit")
    assert "pip-audit --strict" in audit
    assert "scripts/audit_newest.py --probe" in audit  # the fallback where pip-audit cannot run
    assert "$(AUDITED_LOCKS)" in audit
    makefile = (REPO / "Makefile").read_text()
    (audited,) = re.findall(r"^AUDITED_LOCKS := (.*)$", makefile.replace("\\\n", " "), re.M)
    assert {Path(p).stem for p in audited.replace("$(DEV_LOCK)", "dev.lock").split()} == set(LOCKS)
    (lint,) = [line for line in makefile.splitlines() if line.startswith("lint:")]
    assert "audit" in lint.split(":")[1].split()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in ci if line and not line.startswith("#")]
    assert "make test" in commands and "make audit" in commands


def test_audit_ignores_name_a_locked_version_and_a_reason() -> None:
    """An accepted advisory is accepted for one locked version: once the lock moves on, its
    line must be reviewed (dropped, or re-argued for the new version)."""
    versions: dict[str, set[Version]] = {}
    for name in LOCKS:
        for package, version in locked(name).items():
            versions.setdefault(package, set()).add(version)
    lines = (REQUIREMENTS / "audit-ignore.txt").read_text().splitlines()
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        advisory, pin, *reason = line.split()
        assert re.fullmatch(r"(GHSA|PYSEC|CVE|OSV)-[\w-]+", advisory), line
        package, version = pin.split("==")
        assert Version(version) in versions.get(canonicalize_name(package), set()), (
            f"{advisory} was accepted for {pin}, which no lock holds now"
        )
        assert len(reason) >= 5, f"{advisory}: say why it is accepted"


@pytest.fixture
def project_pages() -> Iterator[tuple[str, dict[str, dict]]]:
    """A stand-in for PyPI's JSON API on 127.0.0.1: project pages served from a dict, and 404
    for every per-version page (what this project's build machines get from pypi.org)."""
    pages: dict[str, dict] = {}

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")  # pypi/<name>/json or pypi/<name>/<v>/json
            page = pages.get(parts[1]) if len(parts) == 3 else None
            body = json.dumps(page).encode()
            self.send_response(200 if page else 404)
            self.end_headers()
            self.wfile.write(body if page else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi", pages
    server.shutdown()


def test_where_pip_audit_cannot_run_the_newest_releases_advisories_still_fail_the_audit(
    project_pages: tuple[str, dict[str, dict]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = importlib.util.spec_from_file_location("audit_newest", REPO / "scripts/audit_newest.py")
    assert spec and spec.loader
    audit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audit)
    url, pages = project_pages
    monkeypatch.setattr(audit, "PYPI", url)
    monkeypatch.setattr(audit, "PROBE", f"{url}/pip/24.0/json")
    advisory = {"id": "GHSA-demo-0001", "aliases": ["CVE-2026-0001"], "fixed_in": ["2.1"]}
    pages["demo"] = {"info": {"version": "2.0"}, "vulnerabilities": [advisory]}
    pages["other"] = {"info": {"version": "5.0"}, "vulnerabilities": [advisory]}
    lock, ignore = tmp_path / "x.lock", tmp_path / "audit-ignore.txt"
    lock.write_text("demo==2.0 \\\n    --hash=sha256:00\nother==4.0 \\\n    --hash=sha256:11\n")
    ignore.write_text("# none\n")

    assert audit.main(["--probe"]) == 1  # per-version pages answer 404: fall back
    assert audit.main(["--ignore", str(ignore), str(lock)]) == 1
    out = capsys.readouterr().out
    assert "demo==2.0: GHSA-demo-0001 (fixed in: 2.1)" in out
    assert "1 not checked (a newer release exists): other==4.0" in out
    ignore.write_text("CVE-2026-0001 demo==2.0 accepted for a reason given here in full\n")
    assert audit.main(["--ignore", str(ignore), str(lock)]) == 0  # accepted under an alias
