"""Typed, validated configuration: `params.yaml` parsed into pydantic objects.

Every stage reads its settings from here, so an unknown key or an out-of-range value fails at
start with the key's dotted name, before any data is touched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from danq.errors import ConfigError

DEFAULT_PARAMS = "params.yaml"

Variant = Literal["baseline", "random_dropout"]
VARIANTS: tuple[Variant, ...] = ("baseline", "random_dropout")  # baseline first: it wins ties
VARIANT_LABELS: dict[Variant, str] = {
    "baseline": "DanQ (baseline)",
    "random_dropout": "DanQ (random dropout)",
}
Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")
# How `danq predict` cuts a FASTA record into model-length windows.
WindowPolicy = Literal["center", "tile"]
WINDOW_POLICIES: tuple[WindowPolicy, ...] = ("center", "tile")
AttributionMethod = Literal["integrated_gradients", "gradient_x_input"]
ATTRIBUTION_METHODS: tuple[AttributionMethod, ...] = ("integrated_gradients", "gradient_x_input")
AttributionBaseline = Literal["shuffled", "gc_matched", "zeros"]
ATTRIBUTION_BASELINES: tuple[AttributionBaseline, ...] = ("shuffled", "gc_matched", "zeros")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    data_dir: str = "data"
    work_dir: str = "build"
    # Small metrics and plot tables that `dvc metrics diff` / `dvc plots diff` compare across
    # commits: committed to git, so outside the git-ignored work_dir.
    metrics_dir: str = "metrics"


class SynthConfig(_Strict):
    """The synthetic DeepSEA-format benchmark written by `danq data synth`."""

    n_train: int = Field(6000, ge=10, description="forward sequences in train (file holds 2x)")
    n_valid: int = Field(1000, ge=10)
    n_test: int = Field(2000, ge=10)
    seq_len: int = Field(1000, ge=100, le=100_000)
    gc_mean: float = Field(0.41, gt=0.05, lt=0.95)
    gc_sd: float = Field(0.04, ge=0.0, lt=0.3)
    jaspar_release: str = "JASPAR2024"
    motifs: list[str] = Field(
        default_factory=lambda: [
            "MA0139.1",  # CTCF
            "MA0035.4",  # GATA1
            "MA0080.5",  # SPI1 (PU.1)
            "MA0148.4",  # FOXA1
            "MA0114.4",  # HNF4A
            "MA0138.2",  # REST
            "MA0095.2",  # YY1
            "MA0102.4",  # CEBPA
        ],
        min_length=2,
    )
    n_sequence_share: float = Field(
        0.02, ge=0.0, le=0.5, description="share of sequences that carry a run of N"
    )
    label_noise: float = Field(0.01, ge=0.0, lt=0.5)
    positive_rate: float = Field(
        0.15, ge=0.0, le=0.5, description="chance per sequence and rule of its positive arrangement"
    )
    decoy_rate: float = Field(
        0.15, ge=0.0, le=0.5, description="chance per sequence and rule of a near-miss arrangement"
    )
    motif_temperature: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="instances are sampled from each JASPAR matrix raised to 1/T and "
        "renormalised: 1 samples the matrix as is, lower plants instances nearer the consensus",
    )
    chunk_size: int = Field(2000, ge=1)


class SynthGenomeConfig(_Strict):
    """The synthetic genome written by `danq data synth-genome`: contigs tiled with sequences
    of the `synth` grammar (its motifs, matrices, GC, N runs and tile length synth.seq_len),
    their planted motif instances as BED, and example SNVs as VCF."""

    contigs: int = Field(3, ge=1, le=50)
    contig_length: int = Field(
        200_000, ge=1_000, le=50_000_000, description="bases of the first contig; contig i has 1/i"
    )
    contig_prefix: str = Field("chrS", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    seed: int = Field(11, ge=0)
    motif_core_variants: int = Field(
        200, ge=0, description="SNVs that change a planted instance's core to a rare base"
    )
    background_variants: int = Field(200, ge=0, description="SNVs away from planted instances")
    background_margin: int = Field(
        50, ge=0, description="least distance in bp of a background SNV from a planted instance"
    )


class FromBedConfig(_Strict):
    """`danq data from-bed`: a DeepSEA-style data set from a genome FASTA and peak files."""

    build: str | None = Field(None, description="genome build recorded in metadata.json")
    bin_size: int = Field(200, ge=10, le=10_000, description="bp of the labelled bin")
    window: int = Field(
        1000, ge=10, le=100_000, description="bp the model sees, centred on the bin"
    )
    bins: Literal["genome", "peaks"] = Field(
        "genome",
        description="genome: positive bins plus negatives sampled from all other bins; peaks: "
        "every bin touching a peak plus negatives sampled from bins touching none",
    )
    positive_coverage: float = Field(
        0.5, gt=0.0, le=1.0, description="share of a bin a target's peaks must cover"
    )
    negatives: Literal["random", "gc_matched"] = "gc_matched"
    negative_ratio: float = Field(1.0, ge=0.0, le=1000.0, description="negatives per positive bin")
    gc_bins: int = Field(50, ge=1, le=1000, description="GC strata of gc_matched sampling")
    seed: int | None = Field(None, ge=0, description="null: the top-level seed")
    valid_chroms: list[str] = Field(default_factory=lambda: ["chr7"], min_length=1)
    test_chroms: list[str] = Field(default_factory=lambda: ["chr8", "chr9"], min_length=1)
    contigs: list[str] | None = Field(None, description="contigs to bin (null: all of the FASTA)")
    blacklist: str | None = Field(None, description="BED of regions no window may overlap")
    max_n_share: float = Field(0.01, ge=0.0, le=1.0, description="most N a kept window may hold")
    chunk_bins: int = Field(5000, ge=1, le=1_000_000, description="bins processed at a time")

    @model_validator(mode="after")
    def _consistent(self) -> FromBedConfig:
        if self.window < self.bin_size or (self.window - self.bin_size) % 2:
            raise ValueError(
                f"window ({self.window}) must be at least bin_size ({self.bin_size}) with an "
                "even difference, so that the window is centred on the bin"
            )
        shared = set(self.valid_chroms) & set(self.test_chroms)
        if shared:
            raise ValueError(f"valid_chroms and test_chroms share {sorted(shared)}")
        return self


class PrepareConfig(_Strict):
    """Conversion of .mat splits to TFRecord shards."""

    shard_size: int = Field(5000, ge=1)
    chunk_size: int = Field(2000, ge=1, description="samples read from the source at a time")
    compression: Literal["none", "gzip"] = "none"
    halves: Literal["both", "forward"] = Field(
        "both", description="store both strands, or the forward half only (RC regenerated)"
    )


class ValidateConfig(_Strict):
    """Thresholds of the data-validation gate (Great Expectations suite)."""

    chunk_size: int = Field(2000, ge=1)
    max_n_share: float = Field(0.1, ge=0.0, le=1.0, description="max share of N positions")
    rc_pairs_checked: int = Field(200, ge=1)
    prevalence_tolerance: float = Field(
        0.1, gt=0.0, le=1.0, description="max |valid/test prevalence - train prevalence|"
    )
    prevalence_ratio_max: float = Field(
        5.0, gt=1.0, description="warn when valid/test prevalence differs from train by this factor"
    )
    gc_mean_tolerance: float = Field(0.05, gt=0.0, le=0.5)
    gc_ks_max: float = Field(
        0.1, gt=0.0, le=1.0, description="warn above this KS distance of per-sequence GC vs train"
    )
    cg_gc_ratio_max: float = Field(
        1.5, gt=1.0, description="max CG/GC dinucleotide ratio; above it channels look like ACGT"
    )
    min_positives_train: int = Field(1, ge=1)
    max_leaked_sequences: int = Field(0, ge=0)


DropoutRate = float


class FixedDropout(_Strict):
    pool: float = Field(0.2, ge=0.0, lt=1.0)
    lstm: float = Field(0.5, ge=0.0, lt=1.0)


class RateRange(_Strict):
    low: float = Field(ge=0.0, lt=1.0)
    high: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> RateRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class RandomDropout(_Strict):
    pool: RateRange = RateRange(low=0.1, high=0.3)
    lstm: RateRange = RateRange(low=0.4, high=0.6)
    redraw: Literal["run", "epoch", "batch"] = "epoch"


class DropoutConfig(_Strict):
    baseline: FixedDropout = FixedDropout()
    random_dropout: RandomDropout = RandomDropout()


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Quang & Xie 2016: 46,926,479 parameters with 919 targets.
    "danq": dict(conv_filters=320, conv_width=26, pool_size=13, lstm_units=320, dense_units=925),
    # DanQ-JASPAR as the authors initialised it: all 519 JASPAR 2016 CORE vertebrate motifs and
    # 6 reverse complements in 525 of the 1,024 filters (danq.model.network).
    "danq_jaspar": dict(
        conv_filters=1024,
        conv_width=30,
        pool_size=15,
        lstm_units=512,
        dense_units=925,
        jaspar_init="original",
        jaspar_release="JASPAR2016",
    ),
    # Reduced size for the embedded synthetic run on a 2-core CPU (~3,000 samples/s, 300 bp).
    # Pooling 26 keeps the BiLSTM short; a wider LSTM and dense layer learn the grammar in
    # fewer steps than the paper's proportions scaled down.
    "small": dict(conv_filters=64, conv_width=20, pool_size=26, lstm_units=64, dense_units=256),
}


class ModelConfig(_Strict):
    preset: Literal["danq", "danq_jaspar", "small", "custom"] = "danq"
    conv_filters: int = Field(320, gt=0)
    conv_width: int = Field(26, gt=0)
    pool_size: int = Field(13, gt=0)
    lstm_units: int = Field(320, gt=0)
    dense_units: int = Field(925, gt=0)
    jaspar_init: Literal["none", "sample", "original"] = Field(
        "none",
        description="motif filters from JASPAR: none; sample (n_filters/4 random motifs and "
        "their reverse complements); original (all that fit, as DanQ-JASPAR did)",
    )
    jaspar_release: str = "JASPAR2024"

    @field_validator("jaspar_init", mode="before")
    @classmethod
    def _jaspar_init_from_bool(cls, value: Any) -> Any:
        # The setting was a boolean before "original" existed; true meant "sample".
        if isinstance(value, bool):
            return "sample" if value else "none"
        return value

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset", "danq") in MODEL_PRESETS:
            return {**MODEL_PRESETS[data.get("preset", "danq")], **data}
        return data

    def pooled_length(self, seq_len: int) -> int:
        """Positions left after the valid convolution and max-pooling."""
        return (seq_len - self.conv_width + 1) // self.pool_size

    def check_fits(self, seq_len: int) -> None:
        if self.conv_width > seq_len:
            raise ConfigError(
                f"model.conv_width: {self.conv_width} is longer than the sequence ({seq_len} bp)"
            )
        if self.pooled_length(seq_len) < 1:
            raise ConfigError(
                f"model.pool_size: {self.pool_size} is larger than the "
                f"{seq_len - self.conv_width + 1} positions left after the convolution"
            )


class TrainConfig(_Strict):
    batch_size: int = Field(100, gt=0)
    learning_rate: float = Field(1e-3, gt=0.0, lt=1.0)
    rho: float = Field(0.9, gt=0.0, lt=1.0)
    epsilon: float = Field(
        1e-7,
        gt=0.0,
        lt=1.0,
        description="RMSprop epsilon, inside the square root: Keras 3's 1e-7; the original "
        "DanQ (Keras 0.x) used 1e-6",
    )
    max_epochs: int = Field(60, gt=0)
    patience: int = Field(5, ge=0)
    shuffle_buffer: int = Field(10_000, ge=0)
    rc_augment: bool = False
    steps_per_epoch: int | None = Field(None, gt=0)
    seed: int = Field(1234, ge=0)
    # Seeds per variant (seed i trains with seed + i): N x the training time. The variants
    # are then compared over seeds and the champion is the best seed of the better variant,
    # both on validation (danq.evaluation.seeds).
    seeds: int = Field(1, ge=1, le=100, description="training runs per variant")


class MlflowConfig(_Strict):
    tracking_uri: str | None = None
    experiment: str = "danq"
    registered_model: str = "danq"


class EvaluateConfig(_Strict):
    batch_size: int = Field(500, gt=0)
    curve_targets: int = Field(4, ge=0, description="targets shown in the ROC/PR plots")


class GenomeConfig(_Strict):
    """The genome the training data comes from, recorded with every trained model so that
    `danq variant-effect` can refuse a FASTA of another build."""

    build: str | None = Field(
        None, description="e.g. hg38; null: the data's metadata.json build, if any, else unknown"
    )


class VariantEffectConfig(_Strict):
    """`danq variant-effect`: scoring the alleles of a VCF."""

    batch_size: int = Field(
        512, ge=2, description="windows per model call, each also on its reverse complement"
    )
    max_allele_length: int = Field(
        50, ge=1, description="longest REF or ALT scored; longer alleles are skipped"
    )
    cache_alleles: int = Field(
        10_000, ge=0, description="scores of the last distinct alleles kept for duplicates"
    )


class ExplainFiltersConfig(_Strict):
    """`danq explain filters`: first-layer filters as motifs, matched to JASPAR."""

    threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="share of a filter's max activation a site must exceed"
    )
    max_sequences: int = Field(2000, ge=1, description="sequences scanned (the first ones)")
    batch_size: int = Field(200, ge=1, description="sequences per convolution call")
    split: Literal["train", "valid", "test"] = "test"
    jaspar_release: str = "JASPAR2024"
    min_sites: int = Field(10, ge=1, description="filters with fewer sites are not compared")
    max_q: float = Field(0.05, gt=0.0, le=1.0, description="q-value below which a filter matches")
    top_filters: int = Field(20, ge=1, description="filters shown with logos in the report")


class AttributionsConfig(_Strict):
    """`danq explain attributions`: gradient x input or integrated gradients of the scores."""

    method: AttributionMethod = "integrated_gradients"
    baseline: AttributionBaseline = Field(
        "shuffled", description="integrated gradients' starting window"
    )
    steps: int = Field(64, ge=1, description="Gauss-Legendre nodes of the integral")
    samples: int = Field(
        8, ge=1, description="random baselines averaged over (shuffled, gc_matched)"
    )
    batch_size: int = Field(64, ge=1, description="windows per gradient call (x2 strands)")
    seed: int = Field(0, ge=0, description="seeds the shuffled and GC-matched baselines")


class LimitsConfig(_Strict):
    """Caps every reader enforces on its input (DeepSEA .mat and HDF5, FASTA, gzip, VCF, BED,
    the shard manifest): a file built to exhaust memory or disk fails with a DataError that
    names it, before anything is allocated for it. Applied by danq.io.limits."""

    max_sequence_length: int = Field(
        100_000, ge=1, description="bp per sample of a DeepSEA-format array (DeepSEA: 1000)"
    )
    max_samples_x_length: int = Field(
        20_000_000_000, ge=1, description="samples x bp of one array (DeepSEA train: 4.4e9)"
    )
    max_targets: int = Field(100_000, ge=1, description="label columns of one array")
    max_record_length: int = Field(
        10_000_000, ge=1, description="bp of one FASTA record held in memory for scoring"
    )
    max_line_length: int = Field(
        1_048_576, ge=80, description="bytes of one line of FASTA, VCF or BED text"
    )
    max_decompressed_bytes: int = Field(
        32 * 2**30, ge=1, description="bytes a gzip file or compressed MAT variable inflates to"
    )
    max_manifest_bytes: int = Field(16 * 2**20, ge=1, description="bytes of a shard manifest")
    max_chunk_bytes: int = Field(
        256 * 2**20, ge=1, description="bytes of one HDF5 chunk (inflated whole to read any of it)"
    )


class PromoteConfig(_Strict):
    min_macro_auroc: float = Field(0.6, ge=0.0, le=1.0)
    min_macro_aupr: float = Field(0.05, ge=0.0, le=1.0)
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    regression_tolerance: float = Field(0.01, ge=0.0, le=1.0)
    max_regressed_fraction: float = Field(0.2, ge=0.0, le=1.0)
    metric: Literal["auroc", "aupr"] = "aupr"
    bootstrap_max_rows: int | None = Field(
        20_000, ge=100, description="rows the bootstrap subsamples to (None: all rows)"
    )
    # Rows of an evaluation are forward windows with their reverse complement already averaged
    # in (one row per pair), so a pair is always resampled together. DeepSEA windows are
    # 1,000 bp at a 200-bp step, in genomic order: a row shares up to 800 bp with each of its
    # 4 neighbours either side, and peaks span several bins, so labels stay correlated past
    # that. 50 rows (10 kb of consecutive windows) is 10x the overlap reach and leaves 80
    # blocks on DeepSEA's 4,000 validation rows. "auto": 1 (independent rows) for data written
    # by `danq data synth`, whose sequences are drawn independently (its metadata.json says
    # so), else 50; where the data folder is not at hand (a pipeline step), 50.
    bootstrap_block_rows: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="contiguous rows resampled together (1: independent rows)"
    )
    # A fixed target must hold each class in this many blocks: a target in k of B blocks is
    # missing from a resample of B blocks with probability ~exp(-k); 10 makes that 5e-5, so
    # on 919 DeepSEA targets ~4% of resamples are redrawn.
    bootstrap_min_class_blocks: int = Field(
        10, ge=1, description="blocks that must hold a positive (and a negative) of a target"
    )
    max_retries: int = Field(3, ge=0)
    # The registry lock (danq.promotion.lock) around every alias move.
    lock_expiry_s: float = Field(
        300.0,
        ge=10.0,
        le=86_400.0,
        description="seconds a registry lock is honoured; after that another command may "
        "break it (a move takes seconds, so this only matters after a crash)",
    )
    lock_wait_s: float = Field(
        120.0,
        ge=0.0,
        le=86_400.0,
        description="seconds a registry command waits for a lock held by another command "
        "before it fails",
    )


StudyArm = Literal["baseline", "run", "epoch", "batch"]
STUDY_ARMS: tuple[StudyArm, ...] = ("baseline", "run", "epoch", "batch")


class RangeSweep(_Strict):
    """One pair of random-dropout ranges for the study's optional range sweep."""

    pool: RateRange
    lstm: RateRange


class StudyConfig(_Strict):
    """`danq study`: seeds per arm, the arms, and the training settings every study run shares.

    An arm is a dropout schedule (the fixed-rate baseline, or random dropout redrawn per run,
    epoch or batch) at one batch size; each range in `ranges` adds a random-dropout arm
    (redrawn per `range_redraw`) per batch size. Every random arm is compared with the
    baseline at its batch size, paired by seed: seed i trains with train.seed + i in every
    arm. The primary comparison is `primary` against the baseline at the largest batch size
    (danq.study.analysis).
    """

    seeds: int = Field(8, ge=2, description="runs per arm (the paired tests need at least 2)")
    arms: list[StudyArm] = Field(default_factory=lambda: list(STUDY_ARMS), min_length=2)
    primary: StudyArm = Field(
        "run", description="the arm of the primary comparison, at the largest batch size"
    )
    batch_sizes: list[int] = Field(default_factory=lambda: [100, 250], min_length=1)
    ranges: list[RangeSweep] = Field(default_factory=list)
    range_redraw: Literal["run", "epoch", "batch"] = "epoch"
    # Calibrated on the embedded data (see params.yaml): runs stop early within max_epochs.
    model: ModelConfig = ModelConfig(
        preset="custom",
        conv_filters=32,
        conv_width=20,
        pool_size=26,
        lstm_units=32,
        dense_units=128,
    )
    learning_rate: float | None = Field(0.003, gt=0.0, lt=1.0, description="None: train's")
    max_epochs: int = Field(80, gt=0)
    patience: int = Field(5, ge=1, description="DanQ and the paper: 5")
    samples_per_epoch: int | None = Field(
        None, gt=0, description="None: an epoch is one pass over the training data"
    )
    tolerance: float = Field(
        0.003,
        ge=0.0,
        lt=1.0,
        description="relative distance to a target loss that counts as reached (paper: 0.3 %)",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="CI level; tests at 1 - it")
    experiment: str = "danq-study"

    @field_validator("arms")
    @classmethod
    def _arms_with_baseline(cls, arms: list[StudyArm]) -> list[StudyArm]:
        if "baseline" not in arms:
            raise ValueError("must include baseline, the reference of every comparison")
        if len(set(arms)) != len(arms):
            raise ValueError("an arm is listed twice")
        return arms

    @model_validator(mode="after")
    def _primary_is_a_random_arm(self) -> StudyConfig:
        if self.primary == "baseline" or self.primary not in self.arms:
            raise ValueError(
                f"primary: {self.primary!r} must be one of the random-dropout arms {self.arms}"
            )
        return self

    @field_validator("batch_sizes")
    @classmethod
    def _distinct_sizes(cls, sizes: list[int]) -> list[int]:
        if len(set(sizes)) != len(sizes) or min(sizes) < 1:
            raise ValueError("must be distinct positive batch sizes")
        return sizes


class Params(_Strict):
    seed: int = Field(7, ge=0)
    paths: Paths = Paths()
    synth: SynthConfig = SynthConfig()
    synth_genome: SynthGenomeConfig = SynthGenomeConfig()
    from_bed: FromBedConfig = FromBedConfig()
    prepare: PrepareConfig = PrepareConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    model: ModelConfig = ModelConfig()
    dropout: DropoutConfig = DropoutConfig()
    train: TrainConfig = TrainConfig()
    mlflow: MlflowConfig = MlflowConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    study: StudyConfig = StudyConfig()
    genome: GenomeConfig = GenomeConfig()
    variant_effect: VariantEffectConfig = VariantEffectConfig()
    explain_filters: ExplainFiltersConfig = ExplainFiltersConfig()
    attributions: AttributionsConfig = AttributionsConfig()
    limits: LimitsConfig = LimitsConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def data_dir(self) -> str:
        return self.paths.data_dir

    @property
    def work_dir(self) -> str:
        return self.paths.work_dir


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        key = key.replace("validate_", "validate")
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: {key}: unknown key")
        else:
            lines.append(f"{source}: {key}: {e['msg']}{got_text}")
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_params(raw: dict[str, Any], source: str = DEFAULT_PARAMS) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def load_params(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> Params:
    """Read params.yaml (or defaults when it does not exist) and apply `key=value` overrides."""
    path = Path(path or DEFAULT_PARAMS)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        raw = loaded or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        _set_dotted(raw, key.strip(), yaml.safe_load(text))
    return parse_params(raw, str(path))
