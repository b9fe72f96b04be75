"""Where a pipeline run's MLflow runs and model versions came from: the KFP run, the code
(pipeline version and image) and the data (its URI and the fingerprint the data gate took).

Steps on the cluster see the data only as a pod-local copy (/gcs/...), which says nothing
about where it lives, and the image has no git checkout, so these tags are the only record of
which run, code and data produced a model. A URI in a tag is redacted (danq.redaction.redact_uri):
tags are readable by everyone who can read the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from danq.artifacts import (
    TAG_DATA_FINGERPRINT,
    TAG_DATA_URI,
    TAG_KFP_IMAGE,
    TAG_KFP_PIPELINE,
    TAG_KFP_PIPELINE_VERSION,
    TAG_KFP_RUN_ID,
)
from danq.errors import ConfigError
from danq.kfp.tracking_uri import redacted

PIPELINE_NAME = "danq"


def image_tag(image: str) -> str:
    """The tag (or digest) of an image reference: the version of the code the image holds."""
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return name.split("@", 1)[1]
    return name.split(":", 1)[1] if ":" in name else "latest"


@dataclass(frozen=True)
class Lineage:
    kfp_run_id: str
    image: str
    data_uri: str
    data_fingerprint: str  # the digest of danq.data.fingerprint.DataFingerprint

    @classmethod
    def of_step(
        cls, kfp_run_id: str, image: str, data_uri: str, data_fingerprint_json: str
    ) -> Lineage:
        """The lineage a component receives as parameters; the fingerprint is the data
        gate's JSON record, of which the tags keep the digest."""
        from danq.data.fingerprint import DataFingerprint

        if not kfp_run_id or "{{" in kfp_run_id:
            raise ConfigError(f"kfp_run_id: {kfp_run_id!r} is not a KFP run id")
        digest = DataFingerprint.from_json(data_fingerprint_json).digest
        return cls(kfp_run_id, image, data_uri, digest)

    def tags(self) -> dict[str, str]:
        return {
            TAG_KFP_RUN_ID: self.kfp_run_id,
            TAG_KFP_PIPELINE: PIPELINE_NAME,
            TAG_KFP_PIPELINE_VERSION: image_tag(self.image),
            TAG_KFP_IMAGE: self.image,
            TAG_DATA_URI: redacted(self.data_uri),
            TAG_DATA_FINGERPRINT: self.data_fingerprint,
        }
