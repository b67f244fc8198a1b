"""The stand-in's JSON, base64 and number rules against the real libraries TF Serving 2.20 links.

`tests/sim/cpp/tf_serving_oracle.cc` is compiled with g++ against Debian's rapidjson-dev (1.1.0,
the version `tensorflow_serving/workspace.bzl` pins; reader.h, writer.h, prettywriter.h and
internal/{dtoa,strtod}.h identical to upstream's) and libabsl-dev, and called the way
`util/json_tensor.cc` calls them. Each test feeds the same inputs to it and to the sim's Python
and wants the same answer for every one.
"""

import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tfs_traffic import exposition
from tfs_traffic.sim import absl, rapidjson, tfjson
from tfs_traffic.sim.stock_metrics import EXAMPLE_BUCKETS, LATENCY_BUCKETS

SOURCE = Path(__file__).parent / "cpp" / "tf_serving_oracle.cc"


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path("/usr/include/rapidjson/reader.h").exists() or shutil.which("pkg-config") is None:
        pytest.fail("needs rapidjson-dev, libabsl-dev and pkg-config (make setup installs them)")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "absl_strings", "absl_str_format"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    binary = tmp_path_factory.mktemp("oracle") / "tf_serving_oracle"
    subprocess.run(["g++", "-std=c++17", "-O1", "-o", str(binary), str(SOURCE), *flags], check=True)
    return binary


def _records(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _ask(oracle: Path, mode: str, data: bytes) -> list[str]:
    return subprocess.run([str(oracle), mode], input=data, capture_output=True, check=True).stdout.decode().split("\n")


FIXED_BODIES = [
    b"",
    b" \t\r\n",
    b'{"a" 1}',
    b"[1,]",
    b'{"a":1,}',
    b'"abc',
    b'{"a":"\\x"}',
    b'{"instances":[1]} trailing bytes are ignored',
    b'{"x":1,"x":2}',
    b'{"x": {"b64": "QUJD", "b64": "QUJD"}}',
    b"[Inf, -Inf, Infinity, NaN, -NaN]",
    b'{"x":1e400}',
    b'{"x": tru}',
    b'{"x":-}',
    b'{"x":1.}',
    b'{"x":1e}',
    b'\xef\xbb\xbf{"x":1}',
    b'\xbb{"x":1}',
    b'{"x":"\xff\xfe"}',
    b'{"x":"\\ud800"}',
    b'{"x":"\\ud800\\u0041"}',
    b'{"x":"\\udc00"}',
    b"[1,2]\x00ignored",
    b'{"x":\x00}',
    b'{"x":"\\u0001\\u001f\\"\\\\/\\b\\f\\n\\r\\t\x7f\xc3\xa9"}',
    b'{"x":' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"x": [' + b",".join(b"1234.5678" for _ in range(100)) + b"]}",
    b'{"x": [{"a": [1, {"b": null}], "c": true}, false, []], "y": {}}',
    b'{"x": [1.0, 2.5, 1e21, 1e22, 1e-7, 0.1, 5e-324, -0.0, -0, 18446744073709551615, 18446744073709551616]}',
    b'{"x": [-9223372036854775808, -9223372036854775809, 4294967295, 4294967296, -2147483648, 370515.98592907377]}',
    b'{"x": [1.7976931348623157e308, 10e308, 1e-400, 1.23456789012345678901234567890e-5]}',
    b'{"x": "' + "\u00e9".encode() * 200 + b'"}',
    b'{"x": [NaN, 1]}',
    b'{"x": [1, NaN]}',
    b"01",
    b"-Infinit",
    b'{"x":Infinityx}',
    b'{"x":Na}',
    b"{,}",
    b'{"a":1 "b":2}',
    b'["a" "b"]',
    b"[1:2]",
    b'{"a"}',
    b'{"a":}',
    b"[}",
    b'{"\\uZZZZ":1}',
    b'{"a":"\t"}',
    b'{"a":nul}',
]


def _random_number(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.3:
        return repr(rnd.uniform(-1e6, 1e6))
    if kind < 0.5:
        return repr(rnd.random() * 10.0 ** rnd.randint(-300, 300))
    if kind < 0.7:
        return str(rnd.randint(-(10 ** rnd.randint(1, 25)), 10 ** rnd.randint(1, 25)))
    whole = str(rnd.randint(1, 10**20))
    frac = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 30)))
    return f"{whole}.{frac}" + rnd.choice(["", f"e{rnd.randint(-340, 320)}", f"E+{rnd.randint(0, 30)}"])


def _mutated(rnd: random.Random, count: int) -> list[bytes]:
    bases = [
        b'{"instances": [1.0, 2.0], "signature_name": "s"}',
        b'{"x": {"a": [1, "b", null, true]}, "y": [1e5, -2]}',
        b'{"inputs": {"x": [[1],[2]]}}',
    ]
    alphabet = b'{}[]:,"\\ 0123456789.eE+-truefalsnNaIiy\x00\x7f\xff\t'
    out = []
    for _ in range(count):
        body = bytearray(rnd.choice(bases))
        for _ in range(rnd.randint(1, 3)):
            op, pos = rnd.random(), rnd.randrange(len(body) + 1)
            if op < 0.4 and body:
                del body[min(pos, len(body) - 1)]
            elif op < 0.8:
                body.insert(pos, rnd.choice(alphabet))
            elif body:
                body[min(pos, len(body) - 1)] = rnd.choice(alphabet)
        out.append(bytes(body))
    return out


def _mine(body: bytes) -> list[str]:
    try:
        value = rapidjson.parse(body)
    except rapidjson.ParseError as e:
        return [f"E {e.offset} {e.message}"]
    out = ["V " + rapidjson.utf8(rapidjson.debug_string(value)).hex()]
    if isinstance(value, dict) and "x" in value:
        out.append("K " + rapidjson.utf8(rapidjson.debug_string(value["x"])).hex())
        out.append("F " + rapidjson.utf8(rapidjson.debug_string(value["x"], limit=2**62)).hex())
    return out


def test_request_json_parses_and_quotes_like_rapidjson(oracle: Path) -> None:
    """`util/json_tensor.cc:ParseJson` (ParseStream with kParseIterativeFlag | kParseNanAndInfFlag |
    kParseStopWhenDoneFlag: error texts and offsets, trailing bytes, BOM, NUL, surrogates, duplicate
    keys found first) and `JsonValueToDebugString` (PrettyWriter, kFormatSingleLineArray, 256-byte cut,
    Grisu2 doubles): every body answers the same in rapidjson 1.1.0 and in `sim.rapidjson`."""
    rnd = random.Random(13)
    numbers = [("{" + '"x": [' + ", ".join(_random_number(rnd) for _ in range(20)) + "]}").encode() for _ in range(400)]
    bodies = [body for body in FIXED_BODIES if body] + numbers + _mutated(rnd, 3000)
    theirs = _ask(oracle, "json", _records(bodies))
    mismatches = []
    at = 0
    for body in bodies:
        mine = _mine(body)
        if theirs[at] != mine[0] or theirs[at + 1 : at + len(mine)] != mine[1:]:
            mismatches.append((body[:80], mine[0][:80], theirs[at][:80]))
        at += 1
        while at < len(theirs) and theirs[at][:2] in ("K ", "F "):
            at += 1
    assert mismatches == []
    assert len(bodies) == 3447
    assert sum(line.startswith("E ") for line in theirs) == sum(_mine(b)[0].startswith("E ") for b in bodies)


def test_b64_decodes_like_absl_base64_unescape(oracle: Path) -> None:
    """`json_tensor.cc:JsonDecodeBase64Object` -> `absl::Base64Unescape` (`absl/strings/escaping.cc:
    Base64UnescapeInternal`): padding optional, `=`/`.` pads counted, whitespace skipped."""
    rnd = random.Random(5)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    cases = ["", "QQ", "QQ=", "QQ==", "QQ===", "QUI", "QUI=", "QUI==", "QUJD", "QUJD=", "QR", "Q", "QU JD"]
    cases += ["QQ= =", "QQ..", "QQ.=", "QQ=x", "QQ==QQ", "Q\x00JD", "\u00e9", "-_-_", "====", "\x0cQQ\x0c", "QUJD\x0b"]
    for _ in range(3000):
        cases.append(
            "".join(
                rnd.choice(alphabet + "= .\n\t-_\x0b") if rnd.random() < 0.2 else rnd.choice(alphabet)
                for _ in range(rnd.randint(0, 12))
            )
        )
    theirs = _ask(oracle, "b64", _records([c.encode() for c in cases]))
    mine = [("FAIL" if (d := absl.base64_unescape(c)) is None else f"OK {d.hex()}") for c in cases]
    assert [(c, m) for c, m, t in zip(cases, mine, theirs, strict=False) if m != t] == []
    assert theirs[:4] == ["OK ", "OK 41", "FAIL", "OK 41"]  # "", unpadded "QQ", a short pad, full pad
    assert mine.count("FAIL") == theirs.count("FAIL") > 100


def test_float_output_formats_like_write_decimal(oracle: Path) -> None:
    """`json_tensor.cc:WriteDecimal<float>`: `absl::StrCat(float)`, the `absl::SimpleAtof` round trip,
    `%.9g`, `.0` for whole numbers without exponent; large magnitudes included (1.5e10 is half-way
    between two floats after six digits)."""
    rnd = random.Random(7)
    values = np.concatenate(
        [
            np.array([rnd.getrandbits(32) for _ in range(20000)], dtype=np.uint32).view(np.float32),
            np.array([rnd.randint(-(2**31), 2**31) for _ in range(3000)], dtype=np.float32),
            np.array([rnd.uniform(1, 3.4) * 10.0 ** rnd.randint(-40, 37) for _ in range(5000)], dtype=np.float32),
            np.array([0.0, -0.0, 1e7, 123456792, 3.4028235e38, 1e-45, 999999.9, 1e9, 16777217, 1.5e10], np.float32),
        ]
    )
    lines = "\n".join(f"{bits:08x}" for bits in values.view(np.uint32).tolist()) + "\n"
    theirs = _ask(oracle, "float", lines.encode())[: len(values)]
    assert [
        (float(v), m, t) for v, m, t in zip(values, tfjson.format_floats(values), theirs, strict=True) if m != t
    ] == []
    assert theirs[-10:] == [
        "0.0",
        "-0.0",
        "1e+07",
        "123456792.0",
        "3.40282347e+38",
        "1.4013e-45",
        "999999.875",
        "1e+09",
        "16777216.0",
        "1.5e+10",
    ]


def test_metric_page_numbers_format_like_strcat_double(oracle: Path) -> None:
    """`util/prometheus_exporter.cc:SerializeHistogram`: bucket limits and sums via `absl::StrCat(double)`,
    for the stock buckets (`monitoring::Buckets::Exponential`) and random values."""
    rnd = random.Random(3)
    values = [*LATENCY_BUCKETS, *EXAMPLE_BUCKETS]
    values += [rnd.uniform(0, 1e6) for _ in range(2000)] + [
        rnd.uniform(1, 10) * 10.0 ** rnd.randint(-300, 300) for _ in range(2000)
    ]
    values += [0.0, -0.0, 1e6, 999999.5, 0.0001, 0.00001, 1234565.0]
    lines = "\n".join(struct.pack(">d", v).hex() for v in values) + "\n"
    theirs = _ask(oracle, "double", lines.encode())[: len(values)]
    mine = [exposition._six_digits(v) for v in values]
    assert [(v, m, t) for v, m, t in zip(values, mine, theirs, strict=True) if m != t] == []
    assert theirs[:4] == ["10", "18", "32.4", "58.32"]
