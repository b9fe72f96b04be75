"""A genome FASTA opened for random access (pysam.FastaFile) and its fingerprint.

The file may be plain or bgzip-compressed; pysam reads its .fai index (and .gzi for bgzip),
building them beside the file when missing. A plain-gzip FASTA cannot be indexed, so it is
refused with the command that converts it, rather than decompressed to a temporary copy (a
human genome is 3 GB).

The fingerprint ({"build", "fasta_md5", "contigs": {name: length}}) is what a data set built
from the genome records in its metadata.json, so that later commands can check that a FASTA
is the one the model was trained on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pysam

from danq.errors import ConfigError, DataError

_GZIP_MAGIC = b"\x1f\x8b"
_FEXTRA = 0x04
_BGZF_SUBFIELD = b"BC"
_MD5_CHUNK = 8 << 20
# Chromosome 1's length in the common assemblies: identifies the build of a FASTA.
CHR1_LENGTHS = {"hg19": 249_250_621, "hg38": 248_956_422, "mm10": 195_471_971, "mm39": 195_154_279}
_BUILD_ALIASES = {
    "grch37": "hg19",
    "grch38": "hg38",
    "grcm38": "mm10",
    "grcm39": "mm39",
    **{name: name for name in CHR1_LENGTHS},
}


def _is_plain_gzip(path: Path) -> bool:
    """gzip without the BGZF block marker (an extra field 'BC' in the first member)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != _GZIP_MAGIC:
        return False
    has_extra = len(head) > 3 and head[3] & _FEXTRA
    return not (has_extra and head[12:14] == _BGZF_SUBFIELD)


def open_genome(path: str | os.PathLike[str]) -> pysam.FastaFile:
    """The FASTA opened with pysam (index built when missing); DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: genome FASTA not found")
    if _is_plain_gzip(path):
        raise DataError(
            f"{path}: compressed with plain gzip, which cannot be indexed for random access; "
            f"recompress it with bgzip (`gunzip -c {path} | bgzip > genome.fa.gz`) or "
            "decompress it"
        )
    try:
        return pysam.FastaFile(str(path))
    except (OSError, ValueError) as err:
        raise DataError(
            f"{path}: cannot open as an indexed FASTA ({err}); pysam writes the .fai index "
            "beside the file, so its folder must be writable, and every record's lines must "
            "have the same length"
        ) from None


def file_md5(path: str | os.PathLike[str]) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_MD5_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def genome_fingerprint(
    path: str | os.PathLike[str], fasta: pysam.FastaFile, build: str | None
) -> dict[str, Any]:
    """{"build", "fasta_md5" (of the file's bytes as given), "contigs": {name: length}}."""
    return {
        "build": build,
        "fasta_md5": file_md5(path),
        "contigs": dict(zip(fasta.references, (int(n) for n in fasta.lengths))),
    }


def canonical_build(name: str) -> str:
    """A build name with its common aliases folded together (GRCh38 -> hg38)."""
    return _BUILD_ALIASES.get(name.strip().lower(), name.strip())


def model_genome_record(
    build: str | None, data_genome: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """What training records about its genome: the `genome.build` setting and the data's
    genome fingerprint (contig lengths, FASTA md5), or None when neither is known. A setting
    that contradicts the build the data was made from is refused."""
    data_genome = data_genome or {}
    data_build = data_genome.get("build")
    if build and data_build and canonical_build(build) != canonical_build(data_build):
        raise ConfigError(
            f"genome.build: {build!r}, but the training data was cut from a {data_build!r} "
            "genome (its metadata.json)"
        )
    record = {
        "build": build or data_build,
        "contigs": data_genome.get("contigs"),
        "fasta_md5": data_genome.get("fasta_md5"),
    }
    return record if record["build"] or record["contigs"] else None
