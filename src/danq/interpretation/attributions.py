"""Attribution maps: gradient x input and integrated gradients of a model's scores.

What is attributed. The score of a window is the one `danq predict` reports: the model's output
probability averaged over the window and its reverse complement,
`f(x) = (p(x) + p(rc(x))) / 2` (danq.predict.score_with_reverse_complement). The reverse
complement is taken inside the gradient computation (reverse the positions and the A,G,C,T
channels, an exact permutation), so the gradient of the second strand's output is mapped back
to forward coordinates by the chain rule, and a window's attributions and its reverse
complement's are mirror images (positions and channels reversed). Probabilities rather than
logits are attributed so that the attributions add up to differences of the reported scores.

Methods, per chosen target t, for a one-hot window x (L, 4) (an N is an all-zero row):
- `gradient_x_input`: `x * df_t/dx` at x; non-zero only at the observed base.
- `integrated_gradients`: `(x - x') * integral_0^1 df_t/dx(x' + a (x - x')) da` from a
  baseline x', averaged over `samples` random baselines (one for `zeros`), the integral by
  Gauss-Legendre quadrature with `steps` nodes (numpy.polynomial.legendre.leggauss; exact for
  polynomials of degree 2 steps - 1). The interpolated windows of all baselines are scored in
  batches of `batch_size` (each also on its reverse complement). Completeness: the attributions
  summed over positions and channels equal f_t(x) minus the mean of f_t over the baselines, up
  to the quadrature error (the integrand jumps where ReLU units and max-pool winners switch, so
  the error falls about as 1/steps); the scores are stored so that it can be checked. Averaging
  matters: a single shuffled baseline shares the window's base at about a quarter of the
  positions, where x - x' = 0 gives no attribution however important the base.

Baselines (drawn from a generator seeded with `seed`, the window's index and the sample):
- `shuffled`: the window's bases permuted (a mononucleotide shuffle: base composition kept,
  dinucleotides not), N positions kept where they are;
- `gc_matched`: random bases with the window's GC fraction (G and C, and A and T, equally
  likely), N positions kept;
- `zeros`: the all-zero window (every position N).

Sequences come as danq.prediction.ism windows (a FASTA record's centred window, or the window
centred on a genome region, exactly as `danq predict` and `danq ism` choose them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danq import artifacts
from danq.config import ATTRIBUTION_BASELINES, ATTRIBUTION_METHODS
from danq.data.encoding import ALPHABET, N_CODE, codes_to_onehot, decode
from danq.errors import PredictError
from danq.predict import model_seq_len, score_with_reverse_complement
from danq.prediction.ism import IsmSequence, plot_file_name, safe_name

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

MAX_ARRAY_BYTES = 2 * 2**30  # attributions are held in memory until written
_COMPILED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_GC = (1, 2)  # G and C codes


@dataclass(frozen=True)
class Attributions:
    """Attributions of windows for chosen targets (see the module doc)."""

    sequences: list[IsmSequence]
    target_indices: list[int]
    target_names: list[str]
    method: str
    baseline: str  # "none" for gradient x input
    steps: int  # 0 for gradient x input
    values: np.ndarray  # (n, L, 4, T) float32, channels A,G,C,T
    baselines: np.ndarray  # (n, K, L, 4) float32 baseline windows (K = 0 for gradient x input)
    scores: np.ndarray  # (n, T) f(x)
    baseline_scores: np.ndarray  # (n, K, T) f(baseline)


def baseline_window(codes: np.ndarray, baseline: str, rng: np.random.Generator) -> np.ndarray:
    """The (L, 4) float32 baseline of a window of base codes (see the module doc)."""
    if baseline == "zeros":
        return np.zeros((len(codes), 4), dtype=np.float32)
    known = np.flatnonzero(codes != N_CODE)
    out = codes.copy()
    if baseline == "shuffled":
        out[known] = rng.permutation(codes[known])
    elif baseline == "gc_matched":
        gc = float(np.isin(codes[known], _GC).mean()) if len(known) else 0.5
        probs = np.array([1 - gc, gc, gc, 1 - gc]) / 2  # A, G, C, T
        out[known] = rng.choice(4, size=len(known), p=probs).astype(np.uint8)
    else:
        raise PredictError(
            f"baseline {baseline!r}: expected one of {', '.join(ATTRIBUTION_BASELINES)}"
        )
    return codes_to_onehot(out).astype(np.float32)


def strand_averaged_gradients(
    model: keras.Model, x: np.ndarray, targets: Sequence[int]
) -> np.ndarray:
    """(n, L, 4, T): gradients of the strand-averaged probabilities of the chosen targets
    with respect to the windows x (n, L, 4)."""
    import tensorflow as tf

    gradients = _COMPILED.get(model)
    if gradients is None:
        gradients = _COMPILED[model] = _compiled_gradients(model)
    jacobian = gradients(tf.constant(x, dtype=tf.float32), tf.constant(list(targets), tf.int32))
    return np.moveaxis(jacobian.numpy(), 0, -1)


def _compiled_gradients(model: keras.Model) -> Any:
    """The gradient computation as a TensorFlow graph: 3-4x faster than eager on the full DanQ
    (45 against 12.6 windows/s), traced once per model (and once more for a new batch size)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def gradients(windows: Any, targets: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(windows)
            both = model(tf.concat([windows, tf.reverse(windows, axis=[1, 2])], 0), training=False)
            n = tf.shape(windows)[0]
            # Windows do not interact (inference mode), so the gradient of a target's sum
            # over the batch is each window's own gradient.
            total = tf.reduce_sum(tf.gather((both[:n] + both[n:]) / 2, targets, axis=1), axis=0)
        return tape.jacobian(total, windows)

    return gradients


def integrated_gradients(
    model: keras.Model,
    x: np.ndarray,
    baselines: np.ndarray,
    targets: Sequence[int],
    steps: int,
    batch_size: int,
) -> np.ndarray:
    """(L, 4, T) integrated gradients of one window x (L, 4), averaged over the paths from
    each of baselines (K, L, 4)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2  # from [-1, 1] to [0, 1]
    deltas = (x - baselines).astype(np.float32)
    # Every path's nodes, baseline-major, so that a batch can span several paths.
    path = np.repeat(np.arange(len(baselines)), steps)
    alpha = np.tile(alphas, len(baselines)).astype(np.float32)[:, None, None]
    weight = np.tile(weights, len(baselines))[:, None, None, None]
    total = np.zeros((*deltas.shape, len(targets)), dtype=np.float64)
    for lo in range(0, len(path), batch_size):
        part = slice(lo, lo + batch_size)
        points = baselines[path[part]] + alpha[part] * deltas[path[part]]
        grads = strand_averaged_gradients(model, points, targets)
        np.add.at(total, path[part], weight[part] * grads)
    return (deltas[..., None] * total).mean(axis=0).astype(np.float32)


def attribute(
    model: keras.Model,
    sequences: Sequence[IsmSequence],
    target_indices: list[int],
    target_names: list[str],
    method: str,
    baseline: str,
    steps: int,
    batch_size: int,
    seed: int,
    samples: int = 1,
) -> Attributions:
    """Attributions of every window for the chosen targets (see the module doc)."""
    if method not in ATTRIBUTION_METHODS:
        choices = ", ".join(ATTRIBUTION_METHODS)
        raise PredictError(f"method {method!r}: expected one of {choices}")
    if min(steps, batch_size, samples) < 1:
        raise PredictError(
            f"steps ({steps}), batch size ({batch_size}) and baseline samples ({samples}) must "
            "be at least 1"
        )
    seq_len = model_seq_len(model)
    for seq in sequences:
        if len(seq.window) != seq_len:
            raise PredictError(
                f"{seq.name}: window of {len(seq.window)} bp for a model of {seq_len} bp"
            )
    n, t = len(sequences), len(target_indices)
    if n * seq_len * 4 * t * 4 > MAX_ARRAY_BYTES:
        raise PredictError(
            f"{n} sequences x {t} targets x {seq_len} bp: the attributions would take more than "
            f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB; choose fewer targets or sequences per run"
        )
    targets = np.asarray(target_indices)
    x = codes_to_onehot(np.stack([s.window for s in sequences])).astype(np.float32)
    if method == "gradient_x_input":
        baseline, baselines = "none", np.zeros((n, 0, seq_len, 4), dtype=np.float32)
        values = np.concatenate(
            [
                x[lo : lo + batch_size, ..., None]
                * strand_averaged_gradients(model, x[lo : lo + batch_size], target_indices)
                for lo in range(0, n, batch_size)
            ]
        ).astype(np.float32)
    else:
        if baseline not in ATTRIBUTION_BASELINES:
            raise PredictError(
                f"baseline {baseline!r}: expected one of {', '.join(ATTRIBUTION_BASELINES)}"
            )
        samples = 1 if baseline == "zeros" else samples  # all the same
        baselines = np.array(
            [
                [
                    baseline_window(s.window, baseline, np.random.default_rng([seed, i, k]))
                    for k in range(samples)
                ]
                for i, s in enumerate(sequences)
            ],
            dtype=np.float32,
        ).reshape(n, samples, seq_len, 4)
        values = np.stack(
            [
                integrated_gradients(model, x[i], baselines[i], target_indices, steps, batch_size)
                for i in range(n)
            ]
        )
    scores = _scores(model, x, targets, batch_size)
    baseline_scores = _scores(model, baselines.reshape(-1, seq_len, 4), targets, batch_size)
    return Attributions(
        list(sequences),
        list(target_indices),
        list(target_names),
        method,
        baseline,
        steps if method == "integrated_gradients" else 0,
        values,
        baselines,
        scores,
        baseline_scores.reshape(n, baselines.shape[1], t),
    )


def _scores(model: keras.Model, x: np.ndarray, targets: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, T) float32 scores of the chosen targets, batch_size windows per call."""
    out = np.zeros((len(x), len(targets)), dtype=np.float32)
    for lo in range(0, len(x), batch_size):
        out[lo : lo + batch_size] = score_with_reverse_complement(model, x[lo : lo + batch_size])[
            :, targets
        ]
    return out


def array_fields(result: Attributions) -> dict[str, Any]:
    """What attributions.npz holds; positions are 1-based on the contig or record."""
    seqs = result.sequences
    seq_len = result.values.shape[1]
    return {
        "attributions": result.values,
        "onehot": codes_to_onehot(np.stack([s.window for s in seqs])),
        "baselines": result.baselines,
        "scores": result.scores,
        "baseline_scores": result.baseline_scores,
        "ids": np.array([s.name for s in seqs]),
        "contigs": np.array([s.contig for s in seqs]),
        "positions": np.stack([s.window_start + 1 + np.arange(seq_len) for s in seqs]),
        "region_first": np.array([s.first for s in seqs]),
        "region_last": np.array([s.last for s in seqs]),
        "windows": np.array([decode(s.window) for s in seqs]),
        "targets": np.array(result.target_names),
        "target_indices": np.array(result.target_indices),
        "channels": np.array(ALPHABET),
        "method": np.array(result.method),
        "baseline": np.array(result.baseline),
        "steps": np.array(result.steps),
    }


def plot_attribution(result: Attributions, i: int, t: int) -> Figure:
    """A logo over the region part of window i: each position's attribution for target t
    (summed over the 4 channels) as the height of the observed base."""
    import logomaker
    import pandas as pd
    from matplotlib.figure import Figure

    seq = result.sequences[i]
    span = slice(seq.first, seq.last)
    onehot = codes_to_onehot(seq.window[span]).astype(np.float32)
    per_position = result.values[i, span, :, t].sum(axis=1)
    heights = pd.DataFrame(onehot * per_position[:, None], columns=list(ALPHABET))
    heights.index = seq.window_start + 1 + np.arange(seq.first, seq.last)
    fig = Figure(figsize=(float(np.clip(len(heights) / 10, 8, 80)), 2.8), layout="constrained")
    ax = fig.subplots()
    logomaker.Logo(heights[list("ACGT")], ax=ax)
    method, baseline_note = result.method.replace("_", " "), ""
    if result.method == "integrated_gradients":
        k = result.baselines.shape[1]
        method += f" from {k} {result.baseline} baseline(s), {result.steps} steps"
        baseline_note = f", baselines' mean {result.baseline_scores[i, :, t].mean():.4g}"
    ax.set_title(
        f"{seq.name}, target {result.target_names[t]}: score {result.scores[i, t]:.4g}"
        f"{baseline_note}\n{method}",
        loc="left",
        fontsize="medium",
    )
    ax.set_xlabel(f"position on {seq.contig} (1-based)")
    ax.set_ylabel("attribution")
    return fig


def _write_npz(fields: dict[str, Any], tmp: Path) -> None:
    with open(tmp, "wb") as fh:  # a file, not a name: numpy would append .npz
        np.savez_compressed(fh, **fields)


def write_attributions(
    result: Attributions, out_dir: str | os.PathLike[str], plot: bool = True
) -> None:
    """Write <name>.<target index>.<target>.png per window and target (plot), then
    attributions.npz, into out_dir, replaced as a whole when all are written."""
    stems = [safe_name(s.name) for s in result.sequences]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise PredictError(
            f"sequence names {', '.join(repeated)} occur more than once (as file names); "
            "names must be unique"
        )
    out = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".attr-", dir=artifacts.staging_parent(out)))
    try:
        if plot:
            for i, stem in enumerate(stems):
                for t, (index, name) in enumerate(
                    zip(result.target_indices, result.target_names, strict=True)
                ):
                    figure = plot_attribution(result, i, t)
                    artifacts.write_atomically(
                        staging / plot_file_name(stem, index, name),
                        partial(figure.savefig, format="png", dpi=100),
                    )
        artifacts.write_atomically(
            staging / artifacts.ATTRIBUTIONS_ARRAY_FILE,
            partial(_write_npz, array_fields(result)),
        )
        artifacts.publish_dir(staging, out, artifacts.ATTRIBUTIONS_ARRAY_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
