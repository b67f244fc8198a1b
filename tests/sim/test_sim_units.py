"""The sim's renderers: TF's Prometheus exposition rules and TF Serving's REST number/JSON format."""

import numpy as np

from tfs_traffic import exposition
from tfs_traffic.exposition import COUNTER, GAUGE, HISTOGRAM, Family, Histogram
from tfs_traffic.sim import tfjson
from tfs_traffic.sim.source import aspired_versions, parse_version_dir


def test_render_follows_prometheus_exporter_rules() -> None:
    families = [
        Family("/tensorflow/serving/request_count", COUNTER, ("model_name", "status"), {}),
        Family(
            "/tensorflow/serving/model_call_count",
            COUNTER,
            ("model_name", "model_version"),
            {("m", "2"): 5, ("m", "10"): 0, ('we"ird\\', "1"): 1},
        ),
        Family("/tensorflow/serving/model_version_available", GAUGE, ("model_name", "model_version"), {("m", "2"): 1}),
        Family("/x/lat-ency", HISTOGRAM, ("api",), {("p",): Histogram([10.0, 18.0], [1, 0, 2], 1234.5)}),
        Family("9lives", GAUGE, ("a.b",), {("v",): 3}),
    ]
    assert exposition.render(families) == (
        "# TYPE :tensorflow:serving:model_call_count counter\n"
        ':tensorflow:serving:model_call_count{model_name="m",model_version="10"} 0\n'
        ':tensorflow:serving:model_call_count{model_name="m",model_version="2"} 5\n'
        ':tensorflow:serving:model_call_count{model_name="we\\"ird\\\\",model_version="1"} 1\n'
        "# TYPE :tensorflow:serving:model_version_available gauge\n"
        ':tensorflow:serving:model_version_available{model_name="m",model_version="2"} 1\n'
        "# TYPE :tensorflow:serving:request_count counter\n"
        "# TYPE :x:lat:ency histogram\n"
        ':x:lat:ency_bucket{api="p",le="10"} 1\n'
        ':x:lat:ency_bucket{api="p",le="18"} 1\n'
        ':x:lat:ency_bucket{api="p",le="+Inf"} 3\n'
        ':x:lat:ency_sum{api="p"} 1234.5\n'
        ':x:lat:ency_count{api="p"} 3\n'
        "# TYPE _9lives gauge\n"  # sorted by TF name: "/..." < "9lives"
        '_9lives{a_b="v"} 3\n'
    )
    assert exposition.render([]) == "\n"
    parsed = exposition.parse(exposition.render(families))
    assert parsed[":tensorflow:serving:model_call_count"][(("model_name", 'we"ird\\'), ("model_version", "1"))] == 1


def test_rest_float_format_matches_tf_serving() -> None:
    values = np.array([2.5, 3.0, 0.1, 1e7, 123456.7, 3e-5, -0.0, np.nan, np.inf, -np.inf, 1 / 3], dtype=np.float32)
    assert tfjson.format_floats(values) == [
        "2.5",
        "3.0",
        "0.1",
        "1e+07",
        "123456.703",
        "3e-05",
        "-0.0",
        "NaN",
        "Infinity",
        "-Infinity",
        "0.333333343",
    ]


def test_rest_pretty_writer_layouts() -> None:
    y = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    assert (
        tfjson.predict_response({"y": y}, row_format=True) == '{\n    "predictions": [[1.0, 2.0], [3.0, 4.0]\n    ]\n}'
    )
    assert (
        tfjson.predict_response({"y": y[0]}, row_format=False)
        == '{\n    "outputs": [\n        1.0,\n        2.0\n    ]\n}'
    )
    two = tfjson.predict_response({"a": y[:, 0], "b": y[:, 1]}, row_format=True)
    assert two == (
        '{\n    "predictions": [\n        {\n            "a": 1.0,\n            "b": 2.0\n        },\n'
        '        {\n            "a": 3.0,\n            "b": 4.0\n        }\n    ]\n}'
    )
    assert tfjson.error_body('say "no"') == '{\n    "error": "say \\"no\\""\n}'


def test_version_directories_and_policies() -> None:
    from tensorflow_serving.config import model_server_config_pb2

    assert [parse_version_dir(n) for n in ("1", "007", " 3", "+4", "x1", "1.5", "", "99999999999999999999")] == [
        1,
        7,
        3,
        4,
        None,
        None,
        None,
        None,
    ]
    model = model_server_config_pb2.ModelConfig()
    disk = {1: "1", 2: "2", 10: "10"}
    assert aspired_versions(model.model_version_policy, disk) == {10}
    model.model_version_policy.latest.num_versions = 2
    assert aspired_versions(model.model_version_policy, disk) == {2, 10}
    model.model_version_policy.specific.versions.extend([1, 5])
    assert aspired_versions(model.model_version_policy, disk) == {1}
    model.model_version_policy.all.SetInParent()
    assert aspired_versions(model.model_version_policy, disk) == {1, 2, 10}


def test_row_format_bulk_path_equals_rapidjson_walk() -> None:
    """The one-output fast path writes exactly what the element-by-element writer does."""
    for shape in [(3,), (2, 3), (2, 2, 2), (0,), (2, 0), (1, 2, 0), (3, 1)]:
        y = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) / 4
        fast = tfjson.predict_response({"y": y}, row_format=True)
        writer = tfjson.PrettyWriter()
        writer.start_object()
        writer.key("predictions")
        writer.start_array()
        texts, offset = tfjson.format_floats(y), 0
        for _ in range(shape[0]):
            writer.single_line = True
            offset = tfjson._tensor_values(writer, texts, shape, 1, offset)
            writer.single_line = False
        writer.end_array()
        writer.end_object()
        assert fast == writer.text(), shape


def test_vectorised_float_format_equals_reference() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            (rng.standard_normal(20000) * 10.0 ** rng.integers(-12, 12, 20000)).astype(np.float32),
            rng.integers(-(10**7), 10**7, 5000).astype(np.float32),
            np.round(rng.random(5000) * 100, 3).astype(np.float32) * np.float32(0.5) + np.float32(2),
            np.array([0, -0.0, 1e6, 999999, 999999.5, 1e9, 16777217, 100000.5, 1e-5, 1.17549435e-38, 3e38], np.float32),
            np.array([np.nan, np.inf, -np.inf], np.float32),
        ]
    )
    assert tfjson.format_floats(values) == [tfjson.format_float(v) for v in values]
