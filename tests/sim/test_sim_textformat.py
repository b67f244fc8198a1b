"""The stand-in's text-format parser against protobuf's C++ one (`src/google/protobuf/text_format.cc`).

TF Serving reads its config files with C++ `TextFormat::ParseFromString`; `tfs_traffic.sim.textformat`
parses them the same way. The oracle is protoc itself (grpcio-tools' `grpc_tools.protoc`, the C++
parser): `protoc --encode=TYPE` parses stdin with `TextFormat::Parser` and reports each problem as
`input:LINE:COL: MESSAGE` — the same position and message TF Serving logs after
`Error parsing text-format TYPE: `. Every case must get the same verdict, the same errors and
warnings in the same order, and, when accepted, the same message.
"""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfs_traffic.sim import protofile, textformat

MODEL_SERVER_CONFIG = [
    b"improperly formatted file",
    b"",
    b"   \n\t ",
    b'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" } }',
    b"model_config_list {",
    b'model_config_list { config { name: "a" }',
    b"model_config_list { config { name: a } }",
    b'model_config_list { config { name: "a" base_path: 3 } }',
    b'model_config_list { config { nme: "a" } }',
    b'model_config_list: { config: { name: "a", model_version_policy { specific { versions: x } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: -1 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { latest { num_versions: -1 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { latest { num_versions: 4294967295 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { latest { num_versions: 4294967296 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { latest { num_versions: 99999999999 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { latest { num_versions: true } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 1.5 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: [1, 2, 3] } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 0x10 versions: 010 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 09 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 1abc } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 1.2.3 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 0x1.5 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: -9223372036854775808 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: -9223372036854775809 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { specific { versions: 9223372036854775808 } } } }',
    b'model_config_list { config { name: "a" model_version_policy { latest {} all {} } } }',
    b'model_config_list { config { name: "a" model_version_policy: { all: {} } } }',
    b'model_config_list { config { name: "a" model_version_policy { all } } }',
    b'model_config_list { config { name: "a" model_version_policy { all: 1 } } }',
    b'model_config_list { config { name: "a" version_labels { key: "x" value: "y" } } }',
    b'model_config_list { config { name: "a" version_labels { key: "a" key: "b" } } }',
    b'model_config_list { config { name: "a" version_labels { key: "a" value: 1 } '
    b'version_labels { key: "a" value: 2 } } }',
    b'model_config_list { config { name: "a" version_labels [{ key: "a" value: 1 }, { key: "b" value: 2 }] } }',
    b'model_config_list { config { name: "a" version_labels: [] } }',
    b'model_config_list { config { name: "a" version_labels [ } }',
    b'model_config_list { config { name: "a" version_labels { value: 1 } } }',
    b'model_config_list { config { name: "a" model_type: TENSORFLOW } }',
    b'model_config_list { config { name: "a" model_type: FOO } }',
    b'model_config_list { config { name: "a" model_type: 7 } }',
    b'model_config_list { config { name: "a" model_type: -1 } }',
    b'model_config_list { config { name: "a" model_type: "x" } }',
    b'model_config_list { config { name: "a" } } custom_model_config {}',
    b'model_config_list { config { name: "a" } } model_config_list { config { name: "b" } }',
    b'model_config_list { config { name: "a" name: "b" } }',
    b'model_config_list { config { name: "" name: "b" } }',
    b'model_config_list { config { name: "a" base_path: "x" \n base_path: "y" } }',
    b'model_config_list { config { name: "a" "b" } }',
    b'model_config_list { config { name: "a" base_path: "x" "y" \'z\' } }',
    b'model_config_list { config { name: "a\\q" base_path: "\\z" } }',
    b'model_config_list { config { name: "a\\x41\\101\\u00e9\\U0001F600\\ud83d\\ude00" } }',
    b'model_config_list { config { name: "a\\x" } }',
    b'model_config_list { config { name: "a\\u12" } }',
    b'model_config_list { config { name: "a\\U00110000" } }',
    b'model_config_list { config { name: "unterminated } }',
    b"model_config_list { config { name: 'a\nb' } }",
    b'model_config_list { config { name: "a\x00b" } }',
    b'model_config_list { config { name: "a" } }\x00',
    b'model_config_list { config { name: "a"\x01 } }',
    b'model_config_list { config { name: "a" \xc3\xa9 } }',
    b"{",
    b"}",
    b'model_config_list { config { name: "a" } } }',
    b'model_config_list { config { name: "a" } ]',
    b'model_config_list < config < name: "a" > >',
    b'model_config_list < config { name: "a" > }',
    b"model_config_list { config: 5 }",
    b'model_config_list { config { name: "a" } ; }',
    b'model_config_list { config { name: "a", base_path: "/b"; } }',
    b'model_config_list { config { name: "a" } }  ;',
    b'model_config_list { config { name.x: "a" } }',
    b'model_config_list { config { name: "a" } abc.5 }',
    b"model_config_list { config { [foo.bar]: 1 } }",
    b'# comment\nmodel_config_list {\n  config {\n    name: "a"\n    base_path: "/x"\n  }\n  bogus: 1\n}\n',
    b'model_config_list { config { name: "a" } }\n# trailing comment',
    b'model_config_list { config { name: "a" } } # comment \n model_config_list',
    b'model_config_list { config { name: "a" } } /* x */',
    b'model_config_list { config { name: "a" \t\tbogus: 1 } }',
    b'model_config_list { config { name: "a" \n\n\t  bogus',
    b'model_config_list{config{name:"a"}}',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: 1e } } } }',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: -inf } } } }',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: nan } } } }',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: 0x1 } } } }',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: 1.5e3f } } } }',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: foo } } } }',
    b'model_config_list { config { name: "a" logging_config { sampling_config { sampling_rate: "1" } } } }',
    b'custom_model_config { type_url: "x" value: "y" }',
    b'custom_model_config { [type.googleapis.com/tensorflow.serving.ModelConfig] { name: "x" } }',
    b'custom_model_config { [type.googleapis.com/foo.Bar] { name: "x" } }',
    b"custom_model_config { [foo.Bar] { } }",
    b"custom_model_config { [/foo.Bar] { } }",
    b"custom_model_config { [x/] { } }",
    b"custom_model_config { [a%zz/foo.Bar] { } }",
    b"custom_model_config { [type.googleapis.com/tensorflow.serving.ModelConfig] {} "
    b"[type.googleapis.com/tensorflow.serving.ModelConfig] {} }",
]
MONITORING_CONFIG = [
    b'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }',
    b"prometheus_config { enable: maybe }",
    b"prometheus_config { enable: 1 } ",
    b"prometheus_config { enable: 2 }",
    b"prometheus_config { enable: t path: 'p' }",
    b"prometheus_config { enable: True enable: false }",
]

# Runs protoc over every case in one process: stdin, stdout and stderr pointed at files each time.
RUNNER = r"""
import base64, json, os, sys, tempfile
from grpc_tools import protoc

descriptor_set, message, proto = sys.argv[1:4]
results = []
for data in json.load(sys.stdin):
    with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        inp.write(base64.b64decode(data))
        inp.seek(0)
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        for fd, target in zip((0, 1, 2), (inp, out, err)):
            os.dup2(target.fileno(), fd)
        try:
            code = protoc.main(["protoc", "--descriptor_set_in=" + descriptor_set, "--encode=" + message, proto])
        finally:
            for fd, old in zip((0, 1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
        out.seek(0)
        err.seek(0)
        results.append([code, base64.b64encode(out.read()).decode(), err.read().decode("utf-8", "surrogateescape")])
print(json.dumps(results))
"""


def _descriptor_set(path: Path) -> None:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: object) -> None:
        name = file.name  # type: ignore[attr-defined]
        if name in files:
            return
        for dependency in file.dependencies:  # type: ignore[attr-defined]
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)  # type: ignore[attr-defined]
        files[name] = proto

    add(model_server_config_pb2.DESCRIPTOR)
    add(protofile.message_class("MonitoringConfig").DESCRIPTOR.file)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString())


def protoc(tmp_path: Path, message: str, proto: str, cases: list[bytes]) -> list[tuple[int, bytes, str]]:
    descriptor_set = tmp_path / "configs.pb"
    if not descriptor_set.exists():
        _descriptor_set(descriptor_set)
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(descriptor_set), message, proto],
        input=json.dumps([base64.b64encode(c).decode() for c in cases]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [(code, base64.b64decode(stdout), stderr) for code, stdout, stderr in json.loads(out)]


def expected(stderr: str) -> tuple[list[str], list[str]]:
    """protoc's `input:L:C: message` lines as (errors, warnings), without the `input:` prefix."""
    errors, warnings = [], []
    for line in stderr.splitlines():
        if not line.startswith("input:"):
            continue
        text = line.removeprefix("input:")
        if ": warning: " in text:
            warnings.append(text.replace(": warning: ", ": ", 1))
        else:
            errors.append(text)
    return errors, warnings


@pytest.mark.parametrize(
    ("message_class", "proto", "cases"),
    [
        (
            model_server_config_pb2.ModelServerConfig,
            "tensorflow_serving/config/model_server_config.proto",
            MODEL_SERVER_CONFIG,
        ),
        (protofile.message_class("MonitoringConfig"), "tfs_traffic_sim_configs.proto", MONITORING_CONFIG),
    ],
    ids=["ModelServerConfig", "MonitoringConfig"],
)
def test_parse_matches_the_cpp_text_format_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message_class: object, proto: str, cases: list[bytes]
) -> None:
    """`text_format.cc:ParserImpl` and `io/tokenizer.cc:Tokenizer`, case by case (see the module doc)."""
    full_name = message_class.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    answers = protoc(tmp_path, full_name, proto, cases)
    assert len(answers) == len(cases)
    for case, (code, encoded, stderr) in zip(cases, answers, strict=True):
        monkeypatch.setattr(textformat, "_warnings_logged", 0)  # ABSL_LOG_EVERY_POW_2 counts per process
        result = textformat.parse(case, message_class)
        errors, warnings = expected(stderr)
        prefix = f"parsing text-format {full_name}: "
        got_errors = [e.split(prefix, 1)[1] for e in result.errors]
        got_warnings = [re.sub(r" \(N = \d+\)", "", w.split(prefix, 1)[1]) for w in result.warnings]
        assert (result.message is not None, got_errors, got_warnings) == (code == 0, errors, warnings), case
        if result.message is not None:
            assert result.message == message_class.FromString(encoded), case  # type: ignore[attr-defined]
