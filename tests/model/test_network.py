"""DanQ architecture, parameter counts, JASPAR initialisation, seeding, compile and saving."""

import keras
import numpy as np
import pytest
from pyjaspar import jaspardb

from danq.config import DropoutConfig, ModelConfig, parse_params
from danq.data.jaspar import vertebrate_pfms
from danq.errors import ConfigError
from danq.model.dropout import LSTM_DROPOUT, POOL_DROPOUT, dropout_policy
from danq.model.network import build_danq, compile_danq, jaspar_filter_weights

BASELINE = dropout_policy(DropoutConfig(), "baseline")
RANDOM = dropout_policy(DropoutConfig(), "random_dropout")
TINY = ModelConfig(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_full_danq_parameter_count_and_shapes():
    model = build_danq(ModelConfig(), seq_len=1000, n_targets=919, policy=BASELINE)
    assert trainable_count(model) == 46_926_479
    # The only non-trainable weights are the two dropout rates.
    assert model.count_params() == 46_926_479 + 2
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {
        "sequence": (1000, 4),
        "motif_conv": (975, 320),
        "motif_pool": (75, 320),
        POOL_DROPOUT: (75, 320),
        "bilstm": (75, 640),
        LSTM_DROPOUT: (75, 640),
        "flatten": (48000,),
        "dense": (925,),
        "targets": (919,),
    }
    lstm = model.get_layer("bilstm").forward_layer
    # cuDNN-eligible settings.
    assert (lstm.activation.__name__, lstm.recurrent_activation.__name__) == ("tanh", "sigmoid")
    assert (lstm.recurrent_dropout, lstm.unroll, lstm.use_cudnn) == (0, False, "auto")


def test_danq_jaspar_preset_parameter_count_and_original_init():
    cfg = ModelConfig(preset="danq_jaspar")
    assert (cfg.jaspar_init, cfg.jaspar_release) == ("original", "JASPAR2016")
    model = build_danq(cfg, seq_len=1000, n_targets=919, policy=RANDOM, seed=11)
    assert trainable_count(model) == 67_892_175
    kernel, bias, placed = jaspar_filter_weights(1024, 30, "JASPAR2016", seed=11, mode="original")
    # As DanQ-JASPAR_train.py: all 519 JASPAR 2016 CORE vertebrate motifs, then 6 reverse
    # complements.
    assert len(placed) == 525
    conv_kernel, conv_bias = model.get_layer("motif_conv").get_weights()
    np.testing.assert_array_equal(conv_kernel, kernel)
    np.testing.assert_array_equal(conv_bias, bias)


def jaspar_pfm(release: str, motif_id: str) -> np.ndarray:
    """Independent reading of the pyjaspar counts, reordered from ACGT to AGCT."""
    counts = jaspardb(release=release).fetch_motif_by_id(motif_id).counts
    pfm = np.array([counts["A"], counts["G"], counts["C"], counts["T"]], dtype=float).T
    return pfm / pfm.sum(axis=1, keepdims=True)


def test_original_jaspar_init_places_every_motif_with_margins_then_six_reverse_complements():
    kernel, bias, placed = jaspar_filter_weights(600, 30, "JASPAR2016", seed=3, mode="original")
    ids = sorted(
        m.matrix_id
        for m in jaspardb(release="JASPAR2016").fetch_motifs(
            collection="CORE", tax_group=["vertebrates"]
        )
    )
    assert len(ids) == 519
    assert [p.filter_index for p in placed] == list(range(525))
    assert [p.motif_id for p in placed[:519]] == ids
    assert not any(p.reverse_complement for p in placed[:519])
    assert [(p.motif_id, p.reverse_complement) for p in placed[519:]] == [
        ("MA0035.3", True),  # Gata1
        ("MA0138.2", True),  # REST
        ("MA0139.1", True),  # CTCF
        ("MA0140.2", True),  # GATA1::TAL1
        ("MA0141.3", True),  # ESRRB
        ("MA0142.1", True),  # Pou5f1::Sox2
    ]
    # At least 3 bp from either end of the filter, at offsets that vary.
    assert all(3 <= p.offset and p.offset + p.length <= 27 for p in placed)
    assert len({p.offset for p in placed if p.length == 11}) > 5
    by_filter = {p.filter_index: p for p in placed}
    for index in (0, 98, 300, 518, 519, 521):
        p = by_filter[index]
        pfm = jaspar_pfm("JASPAR2016", p.motif_id)
        if p.reverse_complement:
            pfm = pfm[::-1, ::-1]
        assert p.length == len(pfm)
        window = kernel[p.offset : p.offset + p.length, :, index]
        np.testing.assert_allclose(window, pfm - 0.25, atol=1e-6)
        # Outside the motif the filter stays random, as Keras 0.x initialised it.
        outside = np.delete(kernel[:, :, index], np.s_[p.offset : p.offset + p.length], axis=0)
        assert np.all(np.abs(outside) <= 0.05) and np.any(outside != 0)
    # CTCF forward (filter 98) and its reverse complement (filter 521).
    assert by_filter[98].motif_id == by_filter[521].motif_id == "MA0139.1"
    assert np.all((bias[:525] >= -1.0) & (bias[:525] < 0.0)) and len(set(bias[:525])) == 525
    # The remaining filters are random: U(-0.05, 0.05), zero bias.
    rest = kernel[:, :, 525:]
    assert np.all(np.abs(rest) <= 0.05) and rest.std() > 0.02 and np.all(bias[525:] == 0.0)


def test_original_jaspar_init_needs_room_for_every_motif():
    with pytest.raises(ConfigError, match=r"model\.conv_filters: 524 filters .* 525 motif"):
        jaspar_filter_weights(524, 30, "JASPAR2016", seed=0, mode="original")
    with pytest.raises(ConfigError, match=r"model\.conv_width"):
        jaspar_filter_weights(600, 11, "JASPAR2016", seed=0, mode="original")
    # Narrower filters keep only the motifs that fit with margins: DanQ's 26 bp drops 4.
    _, _, placed = jaspar_filter_weights(600, 26, "JASPAR2016", seed=0, mode="original")
    assert len([p for p in placed if not p.reverse_complement]) == 515
    assert all(p.length <= 20 for p in placed)


def test_jaspar_init_setting_accepts_the_former_booleans():
    assert ModelConfig(preset="custom", jaspar_init=True).jaspar_init == "sample"
    assert ModelConfig(preset="custom", jaspar_init=False).jaspar_init == "none"
    with pytest.raises(ConfigError, match=r"model\.jaspar_init"):
        parse_params({"model": {"jaspar_init": "centred"}})


def test_original_jaspar_init_in_a_built_model():
    cfg = ModelConfig(
        preset="custom",
        conv_filters=530,
        conv_width=30,
        pool_size=10,
        lstm_units=2,
        dense_units=2,
        jaspar_init="original",
        jaspar_release="JASPAR2016",
    )
    model = build_danq(cfg, seq_len=60, n_targets=2, policy=BASELINE, seed=5)
    kernel, bias = model.get_layer("motif_conv").get_weights()
    expected = jaspar_filter_weights(530, 30, "JASPAR2016", seed=5, mode="original")
    np.testing.assert_array_equal(kernel, expected[0])
    np.testing.assert_array_equal(bias, expected[1])


def test_sampled_jaspar_filters_hold_pfm_minus_quarter_at_recorded_offset():
    kernel, bias, placed = jaspar_filter_weights(16, 12, "JASPAR2024", seed=2)
    assert kernel.shape == (12, 4, 16) and bias.shape == (16,)
    assert len(placed) == 8 and [p.filter_index for p in placed] == list(range(8))
    motifs = {
        m.matrix_id: m
        for m in jaspardb(release="JASPAR2024").fetch_motifs(
            collection="CORE", tax_group=["vertebrates"]
        )
    }
    for p in placed:
        counts = motifs[p.motif_id].counts
        # Independent reading of the pyjaspar counts, reordered from ACGT to AGCT.
        pfm = np.array([counts["A"], counts["G"], counts["C"], counts["T"]]).T
        pfm = pfm / pfm.sum(axis=1, keepdims=True)
        if p.reverse_complement:
            pfm = pfm[::-1, ::-1]
        assert p.length == len(pfm) <= 12 and 0 <= p.offset <= 12 - p.length
        window = kernel[p.offset : p.offset + p.length, :, p.filter_index]
        np.testing.assert_allclose(window, pfm - 0.25, atol=1e-6)
    assert np.all((bias[:8] >= -1.0) & (bias[:8] < 0.0))
    assert np.all(bias[8:] == 0.0)
    # Forward and reverse-complement filters come in pairs of the same motif.
    assert [p.motif_id for p in placed[::2]] == [p.motif_id for p in placed[1::2]]


def test_jaspar_init_is_seeded_and_skips_long_motifs():
    first = jaspar_filter_weights(40, 8, "JASPAR2024", seed=7)
    again = jaspar_filter_weights(40, 8, "JASPAR2024", seed=7)
    other = jaspar_filter_weights(40, 8, "JASPAR2024", seed=8)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[2] == again[2] and first[2] != other[2]
    assert all(p.length <= 8 for p in first[2])
    assert any(len(pfm) > 8 for pfm in vertebrate_pfms("JASPAR2024").values())


def test_unknown_jaspar_release_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.jaspar_release"):
        jaspar_filter_weights(8, 10, "JASPAR1999", seed=0)


def test_same_seed_same_initial_weights():
    def weights(seed):
        return build_danq(TINY, 100, 5, RANDOM, seed=seed).get_weights()

    first, again, other = weights(3), weights(3), weights(4)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dropout_layers_start_at_policy_rates():
    baseline = build_danq(TINY, 100, 5, BASELINE, seed=0)
    assert baseline.get_layer(POOL_DROPOUT).current_rate() == pytest.approx(0.2)
    assert baseline.get_layer(LSTM_DROPOUT).current_rate() == pytest.approx(0.5)
    random = build_danq(TINY, 100, 5, RANDOM, seed=0)
    assert random.get_layer(POOL_DROPOUT).current_rate() == pytest.approx(0.2)  # mid-range


def test_pool_larger_than_sequence_names_the_key():
    cfg = ModelConfig(preset="custom", conv_filters=8, conv_width=10, pool_size=200)
    with pytest.raises(ConfigError, match=r"model\.pool_size"):
        build_danq(cfg, 100, 5, BASELINE)


def test_zero_filters_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.conv_filters"):
        parse_params({"model": {"conv_filters": 0}})


def test_compile_and_train_tiny_model():
    train_cfg = parse_params({"train": {"learning_rate": 0.01, "rho": 0.8, "epsilon": 1e-6}}).train
    model = compile_danq(build_danq(TINY, 100, 5, RANDOM, seed=0), train_cfg)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert model.optimizer.rho == 0.8
    assert model.optimizer.epsilon == pytest.approx(1e-6)
    # The default is Keras 3's (the original's Keras 0.x used 1e-6: module docstring).
    default = compile_danq(build_danq(TINY, 100, 5, RANDOM, seed=0), parse_params({}).train)
    assert default.optimizer.epsilon == pytest.approx(1e-7)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype="float32")[rng.integers(4, size=(32, 100))]
    y = rng.integers(2, size=(32, 5)).astype("float32")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert 0.0 <= history.history["auroc"][-1] <= 1.0


def test_saved_model_reloads_and_predicts_identically(tmp_path):
    model = build_danq(TINY, 100, 5, RANDOM, seed=1)
    model.get_layer(LSTM_DROPOUT).set_rate(0.57)
    path = tmp_path / "danq.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.eye(4, dtype="float32")[np.random.default_rng(1).integers(4, size=(8, 100))]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_layer(LSTM_DROPOUT).current_rate() == pytest.approx(0.57)
