"""Sliding-window `(x, y)` pairs from one version's traffic, as a `tf.data.Dataset`.

For learning from operations data (forecasting a version's load, say): x is `window` consecutive
qps values shaped (window, 1) — what a Keras LSTM expects — and y the `horizon` values after them.
TensorFlow is optional; only this module needs it.
"""

from typing import Any


def version_series(frame: Any, model_name: str, model_version: str, column: str = "qps") -> Any:
    """One version's column as a float32 numpy array in time order, gaps as 0."""
    rows = frame[(frame["model_name"] == model_name) & (frame["model_version"] == str(model_version))]
    if rows.empty:
        raise ValueError(f"no rows for {model_name}:{model_version}")
    rows = rows.groupby("timestamp", sort=True)[column].sum(min_count=1)
    return rows.fillna(0).to_numpy(dtype="float32")


def windowed_dataset(
    frame: Any,
    model_name: str,
    model_version: str,
    window: int = 24,
    horizon: int = 1,
    batch_size: int = 32,
    column: str = "qps",
) -> Any:
    """Batches of (x, y): x shaped (batch, window, 1), y shaped (batch, horizon)."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("windowed_dataset needs TensorFlow: pip install tensorflow-cpu") from None
    values = version_series(frame, model_name, model_version, column)
    if len(values) < window + horizon:
        raise ValueError(f"{len(values)} points are fewer than window + horizon = {window + horizon}")
    size = window + horizon
    ds = tf.data.Dataset.from_tensor_slices(values)
    ds = ds.window(size, shift=1, drop_remainder=True).flat_map(lambda w: w.batch(size))
    ds = ds.map(lambda w: (tf.expand_dims(w[:window], -1), w[window:]))
    # window()/flat_map() hide the length; stating it lets Keras count steps per epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(values) - size + 1))
    return ds.batch(batch_size)
