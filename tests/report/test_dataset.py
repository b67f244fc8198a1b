"""The tf.data helper: sliding windows of one version's qps, ready for a Keras LSTM."""

import numpy as np
import pytest
import tensorflow as tf  # installed by `make setup`; optional for users

from tfs_traffic.report.dataset import version_series, windowed_dataset
from tfs_traffic.report.export import Row, to_dataframe


def frame(n: int):
    rows = [Row(1000.0 + 60 * i, "ml", "m", "1", float(i), 1) for i in range(n)]
    rows += [Row(1000.0 + 60 * i, "ml", "m", "2", 100.0, 1) for i in range(n)]
    return to_dataframe(rows)


def test_windows_are_consecutive_values_and_the_next_ones() -> None:
    ds = windowed_dataset(frame(10), "m", "1", window=4, horizon=2, batch_size=100)
    [(x, y)] = list(ds.as_numpy_iterator())
    assert x.shape == (5, 4, 1) and y.shape == (5, 2)
    np.testing.assert_array_equal(x[0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y[0], [4, 5])
    np.testing.assert_array_equal(x[-1, :, 0], [4, 5, 6, 7])
    np.testing.assert_array_equal(y[-1], [8, 9])
    np.testing.assert_array_equal(version_series(frame(3), "m", "2"), [100, 100, 100])


def test_a_keras_lstm_trains_on_it() -> None:
    ds = windowed_dataset(frame(64), "m", "1", window=8, horizon=1, batch_size=16)
    model = tf.keras.Sequential([tf.keras.Input(shape=(8, 1)), tf.keras.layers.LSTM(4), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    x, _ = next(iter(ds))
    assert model(x).shape == (16, 1)


def test_too_short_or_unknown_version() -> None:
    with pytest.raises(ValueError, match="fewer than"):
        windowed_dataset(frame(3), "m", "1", window=4)
    with pytest.raises(ValueError, match="no rows"):
        version_series(frame(3), "m", "9")
