"""Attributions (danq.interpretation.attributions, `danq explain attributions`): completeness of
integrated gradients for every baseline, gradient x input against the exact gradient, strand
symmetry, and the files the command writes.

Completeness is checked on a tiny DanQ trained for a few seconds to detect two short motifs, so
that scores differ from their baselines by tenths rather than thousandths (an untrained model's
differences are ~1e-3, too small to tell a wrong sum from a right one). The integrand (the
gradient along the path) jumps where ReLU units and max-pool winners switch, so the error falls
only about as 1/steps. Measured on this model, 8 windows x 2 targets (differences up to 0.97),
largest |sum - (f(x) - f(x'))| with 256 / 1,024 nodes: 0.0026 / 0.0011 from shuffled baselines,
0.0021 / 0.00053 GC-matched, 0.00072 / 0.00028 zeros (at most 0.8% of the differences above
0.1). The same model trained at learning rate 0.01 (sharper) had 0.026 / 0.0091 (shuffled). The
test uses 512 nodes, 2 random baselines, and allows 1e-2 of |f(x) - f(x')| plus 2e-3 (for
windows whose difference is near 0); measured largest errors 0.00093 (shuffled), 0.00087
(GC-matched), 0.00039 (zeros), at most 0.24% of the differences above 0.1.

The slow test measured (seed 2, 6,000 training sequences, 8 epochs; 10 positives per target,
8 shuffled baselines x 32 nodes) AUROC of |attribution| on motif vs non-motif positions 0.985
(CTCF), 0.976 (SPI1), 0.938 (FOXA1), 0.896 (HNF4A, central), 0.992 (REST, central); GATA1
(held-out AUROC 0.86) is not learned well enough to be asserted on. With a single shuffled
baseline the same AUROCs were 0.73-0.78 (a quarter of the positions get no attribution, see
the module doc); with the zeros baseline 0.89-0.98; with gradient x input 0.75-0.88.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from danq.cli.main import main
from danq.config import DropoutConfig, ModelConfig, TrainConfig
from danq.data.encoding import codes_to_onehot, decode, encode, reverse_complement_codes
from danq.data.synth import generate_chunk_with_sites
from danq.errors import PredictError
from danq.interpretation.attributions import attribute, baseline_window
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq
from danq.predict import score_with_reverse_complement
from danq.prediction.ism import IsmSequence
from tests.interpretation.conftest import SYNTH, SYNTH_SEED, SynthModel

L = 60
MOTIFS = ("TGACTCA", "CACGTG")  # AP-1, E-box: one target each, "the motif is present"
NAMES = ["ap1", "ebox"]
STEPS = 512
REL_TOL, ABS_TOL = 1e-2, 2e-3


def random_windows(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n windows of base codes with each motif planted in about half, and their labels."""
    codes = rng.integers(0, 4, size=(n, L)).astype(np.uint8)
    labels = np.zeros((n, len(MOTIFS)), dtype=np.float32)
    for i in range(n):
        for t, motif in enumerate(MOTIFS):
            if rng.random() < 0.5:
                start = int(rng.integers(0, L - len(motif)))
                codes[i, start : start + len(motif)] = encode(motif)
                labels[i, t] = 1
    return codes, labels


@pytest.fixture(scope="module")
def trained_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DanQ of L bp trained to detect MOTIFS (about 9 s), saved as .keras."""
    cfg = ModelConfig(
        preset="custom", conv_filters=8, conv_width=7, pool_size=4, lstm_units=4, dense_units=8
    )
    model = build_danq(cfg, L, len(MOTIFS), dropout_policy(DropoutConfig(), "baseline"), seed=0)
    compile_danq(model, TrainConfig(learning_rate=0.003), auroc=False)
    codes, labels = random_windows(1000, np.random.default_rng(0))
    x = codes_to_onehot(codes).astype(np.float32)
    model.fit(
        np.concatenate([x, x[:, ::-1, ::-1]]),
        np.concatenate([labels, labels]),
        batch_size=64,
        epochs=10,
        verbose=0,
    )
    path = tmp_path_factory.mktemp("model") / "motifs.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def trained_model(trained_model_file: Path):
    from danq.model.loading import load_model

    return load_model(str(trained_model_file))


def windows_of(codes: np.ndarray) -> list[IsmSequence]:
    """Whole windows of base codes (n, length) as sequences w0, w1, ..."""
    return [IsmSequence(f"w{i}", f"w{i}", 0, c, 0, len(c)) for i, c in enumerate(codes)]


@pytest.mark.parametrize("baseline", ["shuffled", "gc_matched", "zeros"])
def test_integrated_gradients_add_up_to_the_score_difference(trained_model, baseline) -> None:
    codes, _ = random_windows(8, np.random.default_rng(1))
    result = attribute(
        trained_model,
        windows_of(codes),
        [0, 1],
        NAMES,
        "integrated_gradients",
        baseline,
        STEPS,
        batch_size=512,
        seed=3,
        samples=2,
    )
    assert result.values.shape == (8, L, 4, 2)
    # The stored scores are the scoring core's (danq predict's numbers).
    x = codes_to_onehot(codes)
    np.testing.assert_allclose(result.scores, score_with_reverse_complement(trained_model, x))
    assert result.baseline_scores.shape == (8, 1 if baseline == "zeros" else 2, 2)
    difference = result.scores - result.baseline_scores.mean(axis=1)
    assert np.abs(difference).max() > 0.1  # a model whose scores move: the check has teeth
    error = np.abs(result.values.sum(axis=(1, 2)) - difference)
    large = np.abs(difference) > 0.1
    print(
        f"{baseline}: largest |error| {error.max():.2g}, relative where |difference| > 0.1 "
        f"{(error / np.abs(difference))[large].max():.2g}"
    )
    assert (error <= REL_TOL * np.abs(difference) + ABS_TOL).all(), (error, difference)


def test_baselines_keep_n_and_composition() -> None:
    codes = encode("NNACGTTTGGCCAANN" * 4)
    rng = np.random.default_rng(0)
    shuffled = baseline_window(codes, "shuffled", rng)
    gc = baseline_window(codes, "gc_matched", rng)
    onehot = codes_to_onehot(codes)
    for b in (shuffled, gc):
        assert ((b.sum(axis=1) == 0) == (codes == 4)).all()  # N stays N, every base one-hot
    np.testing.assert_array_equal(shuffled.sum(axis=0), onehot.sum(axis=0))
    assert not np.array_equal(shuffled, onehot)
    assert not baseline_window(codes, "zeros", rng).any()
    with pytest.raises(PredictError, match="baseline 'mean'"):
        baseline_window(codes, "mean", rng)


def test_gradient_x_input_is_the_exact_gradient_times_the_input() -> None:
    """A logistic model, p(x) = sigmoid(w . x + b): the strand-averaged score's gradient is
    (p'(x) w + rc(p'(rc x) w)) / 2 in closed form."""
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((L, 4))
    logits = keras.layers.Dense(2, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    w = rng.normal(0, 0.2, size=(L * 4, 2)).astype(np.float32)
    b = np.array([0.1, -0.3], dtype=np.float32)
    model.layers[-1].set_weights([w, b])
    codes = rng.integers(0, 5, size=(5, L)).astype(np.uint8)  # N included
    x = codes_to_onehot(codes).astype(np.float64)
    result = attribute(
        model, windows_of(codes), [1, 0], ["b", "a"], "gradient_x_input", "zeros", 1, 2, 0
    )

    weights = w.astype(np.float64).reshape(L, 4, 2)[..., [1, 0]]
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    expected = np.zeros((5, L, 4, 2))
    for i in range(5):
        for xi, flip in ((x[i], False), (x[i][::-1, ::-1], True)):
            p = sigmoid(np.einsum("lc,lct->t", xi, weights) + b[[1, 0]])
            grad = p * (1 - p) * weights
            expected[i] += (grad[::-1, ::-1] if flip else grad) / 2
    expected *= x[..., None]
    np.testing.assert_allclose(result.values, expected, rtol=1e-4, atol=1e-7)
    assert result.baseline == "none" and result.steps == 0 and result.baselines.shape[1] == 0


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients"])
def test_a_window_and_its_reverse_complement_get_mirrored_attributions(
    trained_model, method
) -> None:
    codes, _ = random_windows(4, np.random.default_rng(2))
    rc = reverse_complement_codes(codes)
    forward, reverse = (
        attribute(trained_model, windows_of(c), [0, 1], NAMES, method, "zeros", 32, 64, 0).values
        for c in (codes, rc)
    )
    scale = np.abs(forward).max()
    assert scale > 1e-3
    np.testing.assert_allclose(reverse, forward[:, ::-1, ::-1], atol=1e-5 * scale)


def run_explain(tmp_path: Path, *argv: str) -> int:
    return main(
        [
            "--params",
            str(tmp_path / "none.yaml"),
            "-S",
            "paths.data_dir=none",
            "explain",
            "attributions",
            *argv,
        ]
    )


def test_cli_writes_the_arrays_and_a_logo_per_sequence_and_target(
    trained_model_file: Path, tmp_path: Path, write_fasta, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    codes, _ = random_windows(1, np.random.default_rng(4))
    contig = decode(codes[0]) * 3  # 180 bp
    genome = write_fasta(tmp_path / "genome.fa", {"chr1": contig})
    out = tmp_path / "attr"
    common = ["--model", str(trained_model_file), "--target-names", str(names), "--out", str(out)]
    code = run_explain(
        tmp_path,
        "--fasta",
        str(genome),
        "--region",
        "chr1:71-90",
        "--targets",
        "ebox",
        "--steps",
        "256",
        *common,
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["attributions.npz", "chr1_71-90.1.ebox.png"]
    arrays = np.load(out / "attributions.npz")
    assert arrays["attributions"].shape == (1, L, 4, 1)
    assert list(arrays["targets"]) == ["ebox"] and list(arrays["target_indices"]) == [1]
    assert str(arrays["method"]) == "integrated_gradients" and str(arrays["baseline"]) == "shuffled"
    # The window of L centred on the 20-bp region: 1-based positions 51..110 of chr1.
    assert list(arrays["positions"][0]) == list(range(51, 111))
    assert (arrays["region_first"][0], arrays["region_last"][0]) == (20, 40)
    assert str(arrays["windows"][0]) == contig[50:110]
    np.testing.assert_array_equal(arrays["onehot"][0], codes_to_onehot(encode(contig[50:110])))
    total = arrays["attributions"].sum(axis=(1, 2))
    assert arrays["baselines"].shape == (1, 8, L, 4)  # attributions.samples
    difference = arrays["scores"] - arrays["baseline_scores"].mean(axis=1)
    assert np.abs(total - difference).max() <= REL_TOL * np.abs(difference).max() + ABS_TOL

    seqs = write_fasta(tmp_path / "seqs.fa", {"a": contig[:40], "b": contig})
    code = run_explain(
        tmp_path, "--input", str(seqs), "--method", "gradient_x_input", "--no-plots", *common
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["attributions.npz"]
    arrays = np.load(out / "attributions.npz")
    assert list(arrays["ids"]) == ["a", "b"] and arrays["attributions"].shape == (2, L, 4, 2)
    assert str(arrays["method"]) == "gradient_x_input" and str(arrays["baseline"]) == "none"
    # gradient x input is zero off the observed base and on N padding
    assert not arrays["attributions"][arrays["onehot"] == 0].any()

    code = run_explain(tmp_path, "--input", str(seqs), "--targets", "ctcf", *common)
    assert code == 1 and "'ctcf' is not one of the model's 2 targets" in capsys.readouterr().err
    assert (out / "attributions.npz").exists()  # the earlier output is left as it was
    code = run_explain(tmp_path, "--region", "chr1:1-5", *common)
    assert code == 1 and "--region needs --fasta" in capsys.readouterr().err


LEARNED = 0.9  # held-out AUROC from which a target counts as learned
MIN_SITE_AUROC = 0.8
SEQUENCES_PER_TARGET = 10
STEPS_SYNTH, SAMPLES_SYNTH = 32, 8


@pytest.mark.slow  # trains a model (~30-45 s on 2 cores), as the motif-breaking test does
def test_attributions_concentrate_on_planted_motifs(synth_model: SynthModel) -> None:
    """On a small DanQ trained on `danq data synth` sequences, for each target whose rule is
    "the motif is present" (single) or "present in the central bin" (central) and that the model
    learned, integrated gradients (8 shuffled baselines) on held-out positive sequences put
    |attribution| (summed over bases) on the bases of that motif's planted instances rather than
    on bases outside every planted instance: AUROC over the positions of SEQUENCES_PER_TARGET
    sequences, pooled."""
    from danq.evaluation.metrics import per_target_auroc_aupr

    model, rules, names = synth_model.model, synth_model.rules, synth_model.names
    held, held_labels, held_sites = generate_chunk_with_sites(
        SYNTH, synth_model.pfms, rules, 1000, np.random.default_rng(SYNTH_SEED + 100)
    )
    held_auroc, _ = per_target_auroc_aupr(
        held_labels, score_with_reverse_complement(model, codes_to_onehot(held))
    )
    site_auroc, completeness = {}, []
    for t, rule in enumerate(rules):
        if rule.category not in ("single", "central") or held_auroc[t] < LEARNED:
            continue
        motif = rule.motifs[0]
        chosen = [
            i
            for i in range(len(held))
            if held_labels[i, t] and any(s.motif == motif for s in held_sites[i])
        ][:SEQUENCES_PER_TARGET]
        result = attribute(
            model,
            windows_of(held[chosen]),
            [t],
            [names[t]],
            "integrated_gradients",
            "shuffled",
            STEPS_SYNTH,
            256,
            0,
            SAMPLES_SYNTH,
        )
        difference = result.scores[:, 0] - result.baseline_scores[:, :, 0].mean(axis=1)
        error = np.abs(result.values.sum(axis=(1, 2, 3)) - difference)
        completeness.append(error / np.abs(difference))
        magnitude, on_site = [], []
        for row, i in enumerate(chosen):
            on_motif = np.zeros(SYNTH.seq_len, dtype=bool)
            on_any = np.zeros(SYNTH.seq_len, dtype=bool)
            for s in held_sites[i]:
                on_any[s.start : s.start + s.length] = True
                on_motif[s.start : s.start + s.length] |= s.motif == motif
            # Positives: the target's motif; negatives: known bases outside every instance.
            kept = on_motif | (~on_any & (held[i] != 4))
            magnitude.append(np.abs(result.values[row, :, :, 0].sum(axis=1))[kept])
            on_site.append(on_motif[kept])
        auroc, _ = per_target_auroc_aupr(
            np.concatenate(on_site)[:, None].astype(np.uint8), np.concatenate(magnitude)[:, None]
        )
        site_auroc[names[t]] = float(auroc[0])
    errors = np.concatenate(completeness)
    print(
        "held-out AUROC:",
        {names[t]: round(float(held_auroc[t]), 3) for t in range(6)},
        "| motif-site vs background |attribution| AUROC:",
        {name: round(a, 3) for name, a in site_auroc.items()},
        f"| IG completeness ({STEPS_SYNTH} nodes) relative error median "
        f"{np.median(errors):.4f} max {errors.max():.4f}",
    )
    assert len(site_auroc) >= 4
    assert all(a > MIN_SITE_AUROC for a in site_auroc.values()), site_auroc
