"""RandomRateDropout, dropout policies and the redraw callback, on a tiny DanQ."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from danq.config import DropoutConfig, ModelConfig, RandomDropout, parse_params
from danq.errors import ConfigError
from danq.model.dropout import (
    LSTM_DROPOUT,
    POOL_DROPOUT,
    DropoutRedrawCallback,
    RandomRateDropout,
    dropout_policy,
)
from danq.model.network import build_danq, compile_danq

TINY = ModelConfig(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
SEQ_LEN, N_TARGETS, N_SAMPLES, BATCH = 100, 5, 64, 16  # 4 full batches per epoch


def random_policy(redraw):
    return dropout_policy(
        DropoutConfig(random_dropout=RandomDropout(redraw=redraw)), "random_dropout"
    )


def tiny_model(policy, seed=0):
    model = build_danq(TINY, SEQ_LEN, N_TARGETS, policy, seed=seed)
    return compile_danq(model, parse_params({}).train, auroc=False)


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype="float32")[rng.integers(4, size=(N_SAMPLES, SEQ_LEN))]
    y = rng.integers(2, size=(N_SAMPLES, N_TARGETS)).astype("float32")
    return x, y


class RateRecorder(keras.callbacks.Callback):
    """Records (epoch, batch, pool rate, lstm rate) as the layers hold them at each batch."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        rates = [self.model.get_layer(n).current_rate() for n in (POOL_DROPOUT, LSTM_DROPOUT)]
        self.rows.append((self.epoch, batch, *rates))


def fit_recording(model, redraw_callback, epochs, initial_epoch=0):
    recorder = RateRecorder()
    x, y = tiny_data()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[redraw_callback, recorder],  # the recorder sees each batch's fresh draw
    )
    return recorder.rows


@pytest.fixture(scope="module")
def random_model():
    # One compiled model for all fits: later fits reuse its traced train step.
    return tiny_model(random_policy("epoch"))


def test_baseline_rates_are_fixed():
    policy = dropout_policy(DropoutConfig(), "baseline")
    assert policy.ranges == {POOL_DROPOUT: (0.2, 0.2), LSTM_DROPOUT: (0.5, 0.5)}
    rows = fit_recording(tiny_model(policy), DropoutRedrawCallback(policy, seed=1), epochs=2)
    assert len(rows) == 8
    assert all(r[2:] == pytest.approx((0.2, 0.5)) for r in rows)


def test_random_rates_stay_in_range_over_many_draws(random_model):
    callback = DropoutRedrawCallback(random_policy("batch"), seed=3)
    callback.set_model(random_model)
    callback.on_train_begin()
    draws = []
    for epoch in range(20):
        callback.on_epoch_begin(epoch)
        for batch in range(50):
            callback.on_train_batch_begin(batch)
            draws.append(callback.current_rates())
        callback.on_epoch_end(epoch)
    pool = np.array([d[POOL_DROPOUT] for d in draws])
    lstm = np.array([d[LSTM_DROPOUT] for d in draws])
    assert pool.min() >= 0.1 - 1e-7 and pool.max() <= 0.3 + 1e-7
    assert lstm.min() >= 0.4 - 1e-7 and lstm.max() <= 0.6 + 1e-7
    # Uniform draws spread over the whole range.
    assert pool.min() < 0.11 and pool.max() > 0.29 and abs(pool.mean() - 0.2) < 0.01
    assert len(callback.epoch_rates) == 20
    assert callback.epoch_rates[0][POOL_DROPOUT] == pytest.approx(pool[:50].mean(), abs=1e-6)


@pytest.mark.parametrize("redraw", ["run", "epoch", "batch"])
def test_rates_change_on_schedule_only(random_model, redraw):
    rows = fit_recording(random_model, DropoutRedrawCallback(random_policy(redraw), seed=4), 3)
    assert len(rows) == 12
    distinct_per_epoch = [len({r[2:] for r in rows if r[0] == e}) for e in range(3)]
    distinct = len({r[2:] for r in rows})
    expected = {"run": ([1, 1, 1], 1), "epoch": ([1, 1, 1], 3), "batch": ([4, 4, 4], 12)}
    assert (distinct_per_epoch, distinct) == expected[redraw]


@pytest.mark.parametrize("redraw", ["run", "epoch", "batch"])
def test_restored_state_repeats_future_draws(random_model, redraw):
    policy = random_policy(redraw)
    uninterrupted = fit_recording(random_model, DropoutRedrawCallback(policy, seed=5), 4)

    first = DropoutRedrawCallback(policy, seed=5)
    fit_recording(random_model, first, 2)
    saved = json.loads(json.dumps(first.get_state()))
    resumed = DropoutRedrawCallback(policy, seed=999)
    resumed.set_state(saved)
    rows = fit_recording(random_model, resumed, 4, initial_epoch=2)
    assert rows == [r for r in uninterrupted if r[0] >= 2]


def test_rate_changes_never_retrace_the_train_step():
    model = tiny_model(random_policy("batch"))
    traces = []
    train_step = model.train_step

    def counting_train_step(data):
        traces.append(1)  # Python side effect: runs only while tracing
        return train_step(data)

    model.train_step = counting_train_step
    counts = []
    count_traces = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: counts.append(len(traces))
    )
    x, y = tiny_data()
    redraw = DropoutRedrawCallback(random_policy("batch"), seed=6)
    model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[redraw, count_traces])
    # Keras traces the step on the first batch (twice here); redraws never add a trace.
    assert len(counts) == 12 and set(counts) == {counts[0]}


def test_compiled_call_reads_the_current_rate(random_model):
    x, _ = tiny_data()
    train_call = tf.function(lambda x: random_model(x, training=True))
    pool, lstm = (random_model.get_layer(n) for n in (POOL_DROPOUT, LSTM_DROPOUT))
    pool.set_rate(0.0)
    lstm.set_rate(0.0)
    inference = random_model(x, training=False)
    np.testing.assert_allclose(train_call(x), inference, rtol=1e-6, atol=1e-6)
    lstm.set_rate(0.9)
    assert not np.allclose(train_call(x), inference, rtol=1e-3, atol=1e-3)
    assert train_call.experimental_get_tracing_count() == 1


def test_inference_is_deterministic(random_model):
    x, _ = tiny_data()
    random_model.get_layer(POOL_DROPOUT).set_rate(0.3)
    random_model.get_layer(LSTM_DROPOUT).set_rate(0.6)
    first = random_model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, random_model.predict(x, verbose=0))
    np.testing.assert_allclose(first, random_model(x, training=False), rtol=1e-6, atol=1e-7)


def test_dropout_layer_scales_kept_units():
    layer = RandomRateDropout(0.5, seed=0)
    out = keras.ops.convert_to_numpy(layer(np.ones((200, 50), "float32"), training=True))
    assert set(np.unique(out)) == {0.0, 2.0}
    assert abs((out == 0).mean() - 0.5) < 0.02


def test_callback_state_is_json():
    state = DropoutRedrawCallback(random_policy("epoch"), seed=None).get_state()
    assert json.loads(json.dumps(state)) == state


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"baseline": {"pool": 1.0}}, "dropout.baseline.pool"),
        ({"baseline": {"lstm": -0.1}}, "dropout.baseline.lstm"),
        (
            {"random_dropout": {"pool": {"low": -0.1, "high": 0.3}}},
            "dropout.random_dropout.pool.low",
        ),
        (
            {"random_dropout": {"lstm": {"low": 0.4, "high": 1.0}}},
            "dropout.random_dropout.lstm.high",
        ),
        ({"random_dropout": {"lstm": {"low": 0.6, "high": 0.4}}}, "dropout.random_dropout.lstm"),
        ({"random_dropout": {"redraw": "step"}}, "dropout.random_dropout.redraw"),
    ],
)
def test_bad_dropout_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_params({"dropout": raw})


@pytest.mark.parametrize("rate", [1.0, -0.1])
def test_layer_rejects_rates_outside_unit_interval(rate):
    with pytest.raises(ValueError, match="dropout rate"):
        RandomRateDropout(rate)
    with pytest.raises(ValueError, match="dropout rate"):
        RandomRateDropout(0.2).set_rate(rate)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant"):
        dropout_policy(DropoutConfig(), "gaussian")
