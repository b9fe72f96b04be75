"""Run a fuzz target: `python -m tests.fuzz <target> --seconds N [--corpus DIR]`.

<target> is a name of tests.fuzz.targets.TARGETS or `module:attribute` naming another Target.
The runner writes the seeds, then starts a worker process that runs atheris (libFuzzer) for N
seconds with the danq package instrumented for coverage. The worker records every distinct
crash (an exception other than a DanqError, by type and innermost project frame) and keeps
fuzzing; hangs (-timeout), out-of-memory (-rss_limit_mb) and signals (h5py's C code) end the
worker, and libFuzzer saves that input. The runner then prints what ran and what was found,
and exits 1 if anything was. Output lies in build/fuzz/<target>/: corpus/ (kept between runs
unless --corpus says otherwise), seeds/, findings/ (one input + traceback per crash),
artifacts/ (libFuzzer's crash-, timeout-, oom- files), fuzz.log and summary.json.

`python -m tests.fuzz <target> --replay FILE...` runs files through the target in this process
(no fuzzing) and exits 1 if one of them crashes it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fuzz.targets import FuzzCrash, Target

REPO = Path(__file__).resolve().parents[2]
RSS_LIMIT_MB = 2048
INPUT_TIMEOUT_S = 10
ARTIFACT_KINDS = ("crash", "timeout", "oom", "leak", "slow-unit")
WORKER = "--worker"


def load_target(spec: str) -> Target:
    from tests.fuzz.targets import TARGETS

    if spec in TARGETS:
        return TARGETS[spec]
    module, _, attribute = spec.partition(":")
    if not attribute:
        raise SystemExit(f"unknown target {spec!r}: one of {', '.join(TARGETS)} or module:name")
    return getattr(importlib.import_module(module), attribute)


def crash_signature(crash: FuzzCrash) -> tuple[str, str]:
    """(slug, description): the original exception's type and its innermost frame in the
    project's code (src/danq or tests/fuzz), so one bug found by many inputs counts once."""
    cause = crash.__cause__ or crash
    frames = traceback.extract_tb(cause.__traceback__)
    own = [f for f in frames if "/src/danq/" in f.filename or "/tests/fuzz/" in f.filename]
    frame = (own or frames)[-1] if frames else None
    where = f"{Path(frame.filename).name}:{frame.lineno} {frame.name}" if frame else "?"
    kind = type(cause).__qualname__
    if type(cause).__module__ != "builtins":
        kind = f"{type(cause).__module__}.{kind}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{kind}-{where}").strip("-")
    return slug, f"{kind} at {where}"


def record_finding(findings: Path, crash: FuzzCrash, data: bytes) -> None:
    """Keep the smallest input of each signature and its traceback in `findings`."""
    slug, description = crash_signature(crash)
    kept = findings / f"{slug}.bin"
    if kept.exists() and kept.stat().st_size <= len(data):
        return
    kept.write_bytes(data)
    cause = crash.__cause__ or crash
    (findings / f"{slug}.txt").write_text(
        description + "\n\n" + "".join(traceback.format_exception(cause))
    )


def worker(spec: str, workdir: Path, findings: Path, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["danq"]):
        target = load_target(spec)
    from tests.fuzz.targets import FuzzCrash, check

    def one_input(data: bytes) -> None:
        try:
            check(target, workdir, data)
        except FuzzCrash as crash:
            record_finding(findings, crash, data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def _dictionary(tokens: tuple[bytes, ...]) -> str:
    return "".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n' for token in tokens)


def _stat(log: str, name: str) -> int | None:
    found = re.findall(rf"stat::{name}:\s+(\d+)", log)
    return int(found[-1]) if found else None


def fuzz(spec: str, seconds: int, corpus: Path | None, out: Path | None) -> int:
    target = load_target(spec)
    out = out or REPO / "build" / "fuzz" / target.name
    seeds, findings, artifacts = out / "seeds", out / "findings", out / "artifacts"
    for folder in (seeds, findings, artifacts):  # this run's findings only
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for name, data in target.seeds().items():
        (seeds / name).write_bytes(data)
    corpus = corpus or out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    libfuzzer_args = [
        f"-max_total_time={seconds}",
        f"-max_len={target.max_len}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    if target.dictionary:
        (out / "target.dict").write_text(_dictionary(target.dictionary))
        libfuzzer_args.append(f"-dict={out / 'target.dict'}")
    libfuzzer_args += [str(corpus), str(seeds)]  # new inputs go to the first folder
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"danq-fuzz-{target.name}-") as workdir:
        command = [sys.executable, "-m", "tests.fuzz", WORKER, spec, workdir, str(findings)]
        done = subprocess.run(
            [*command, *libfuzzer_args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=seconds + INPUT_TIMEOUT_S + 120,
            check=False,
        )
    elapsed = time.monotonic() - started
    (out / "fuzz.log").write_text(done.stdout)
    crashes = sorted(findings.glob("*.txt"))
    ended = sorted(p for p in artifacts.iterdir() if p.name.startswith(ARTIFACT_KINDS))
    summary = {
        "target": target.name,
        "seconds": round(elapsed, 1),
        "executions": _stat(done.stdout, "number_of_executed_units"),
        "corpus_inputs": sum(1 for _ in corpus.iterdir()),
        "worker_exit": done.returncode,
        "crashes": [c.read_text().splitlines()[0] for c in crashes],
        "crash_inputs": [str(c.with_suffix(".bin")) for c in crashes],
        "libfuzzer_artifacts": [str(p) for p in ended],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{target.name}: {summary['seconds']} s, {summary['executions']} executions, "
        f"corpus {summary['corpus_inputs']} inputs, worker exit {done.returncode}"
    )
    for line, path in zip(summary["crashes"], summary["crash_inputs"], strict=True):
        print(f"  crash: {line}\n    input: {path}  (traceback: {Path(path).with_suffix('.txt')})")
    for path in ended:
        print(f"  libFuzzer stopped the worker: {path}")
    if done.returncode != 0:
        print("  worker output (tail):\n" + done.stdout[-3000:])
    if crashes or ended or done.returncode != 0:
        print(f"  keep each as a regression input: tests/fuzz/crashes/{target.name}/<short-name>")
        return 1
    return 0


def replay(spec: str, files: list[Path]) -> int:
    from tests.fuzz.targets import FuzzCrash, check

    target = load_target(spec)
    failed = 0
    with tempfile.TemporaryDirectory(prefix=f"danq-replay-{target.name}-") as workdir:
        for path in files:
            data = path.read_bytes()
            try:
                refused = check(target, Path(workdir), data)
            except FuzzCrash as crash:
                failed += 1
                print(f"{path}: CRASH {crash_signature(crash)[1]}")
                traceback.print_exception(crash.__cause__ or crash)
                continue
            outcome = f"refused: {type(refused).__name__}: {refused}" if refused else "read"
            print(f"{path}: ok, {outcome}")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == [WORKER]:  # the runner's child: WORKER spec workdir findings libFuzzer-args
        worker(argv[1], Path(argv[2]), Path(argv[3]), argv[4:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("target", help="a name in tests.fuzz.targets.TARGETS, or module:name")
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time (default 60)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (build/fuzz/<target>/corpus)")
    parser.add_argument("--out", type=Path, help="output folder (build/fuzz/<target>)")
    parser.add_argument("--replay", type=Path, nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.target, args.replay)
    return fuzz(args.target, args.seconds, args.corpus, args.out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
