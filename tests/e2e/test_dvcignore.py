"""`.dvcignore` keeps the temporary files of killed commands out of DVC's hashes.

A command killed mid-write leaves its temporary file or staging folder beside the output, often
inside data/; `dvc add data` or `dvc status` would hash it as data. The temporary names are
collected from the package's source, so a new staging prefix without a .dvcignore line fails
here, and the real `dvc check-ignore` decides.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))
# The literal start of each temporary folder's name (an f-string's up to its first field).
STAGING_PREFIX = re.compile(r"mkdtemp\(prefix=f?\"(\.[\w-]+-)[\"{]")


def staging_prefixes() -> set[str]:
    return {
        prefix
        for source in (REPO / "src" / "danq").rglob("*.py")
        for prefix in STAGING_PREFIX.findall(source.read_text(encoding="utf-8"))
    }


def ignored(paths: list[str]) -> dict[str, bool]:
    """Each path -> whether the repository's .dvcignore ignores it (dvc check-ignore -n)."""
    out = subprocess.run(
        [DVC, "check-ignore", "--details", "--non-matching", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    result = {}
    for line in out.splitlines():
        source, path = line.split("\t")
        result[path] = source != "::"
    return result


def test_temporary_files_and_staging_folders_are_ignored_and_data_is_not() -> None:
    prefixes = staging_prefixes()
    assert {".unpack-", ".prepare-", ".from-bed-"} <= prefixes  # the scan finds them
    temporary = [
        "data/.tmp-4242-train.mat",  # danq.artifacts.temporary_name
        "data/.train.mat.4242.tmp",  # DeepSEA split writers
        "data/.train.mat.old-4242",  # publish_dir's previous folder
        "data/.download/deepsea_train_bundle.v0.9.tar.gz.part",  # danq.io.fetch
        *(f"data/{prefix}x1y2/train.mat" for prefix in sorted(prefixes)),
    ]
    kept = ["data/train.mat", "data/metadata.json", "data/valid.mat"]
    verdicts = ignored(temporary + kept)
    assert set(verdicts) == set(temporary + kept)
    assert [p for p in temporary if not verdicts[p]] == []
    assert [p for p in kept if verdicts[p]] == []
