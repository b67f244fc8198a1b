"""`ParseProtoTextFile` (`util/proto_util.h`): how TF Serving reads its text-format config files.

The file is read whole (`Env::NewReadOnlyMemoryRegionFromFile`: a missing file is
`NOT_FOUND: PATH; No such file or directory`), then parsed by protobuf's C++ text-format parser
(`textformat`), which logs each problem as `Error parsing text-format TYPE: LINE:COL: ...`; a refused
file is `INVALID_ARGUMENT: Invalid protobuf file: 'PATH'`.

`MonitoringConfig` and `SSLConfig` (`config/monitoring_config.proto`, `config/ssl_config.proto`)
are not in tensorflow-serving-api; they are built here from the same names and field numbers.
"""

import errno
import os
from pathlib import Path
from typing import Any

from tfs_traffic.sim import textformat
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.tflog import Log

# `ErrnoToCode` for what reading a file can fail with; other errors are UNKNOWN here.
_ERRNO_CODES = {errno.ENOENT: Code.NOT_FOUND, errno.EACCES: Code.PERMISSION_DENIED, errno.EPERM: Code.PERMISSION_DENIED}


def parse_proto_text_file(path: str | Path, message_class: Any, log: Log) -> Any:
    """The message in a text-format file, or TF Serving's error as a SimError (problems logged)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        code = _ERRNO_CODES.get(e.errno or 0, Code.UNKNOWN)
        raise SimError(code, f"{path}; {os.strerror(e.errno or 0)}") from None
    result = textformat.parse(data, message_class)
    for line in result.warnings:
        log("W", line)
    for line in result.errors:
        log("E", line)
    if result.message is None:
        raise SimError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'")
    return result.message


def _message_classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="tfs_traffic_sim_configs.proto", package="tensorflow.serving")
    file.syntax = "proto3"
    string, boolean, message = 9, 8, 11
    prom = file.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=boolean, label=1)
    prom.field.add(name="path", number=2, type=string, label=1)
    mon = file.message_type.add(name="MonitoringConfig")
    mon.field.add(
        name="prometheus_config", number=1, type=message, label=1, type_name=".tensorflow.serving.PrometheusConfig"
    )
    ssl = file.message_type.add(name="SSLConfig")
    for number, name in ((1, "server_key"), (2, "server_cert"), (3, "custom_ca")):
        ssl.field.add(name=name, number=number, type=string, label=1)
    ssl.field.add(name="client_verify", number=4, type=boolean, label=1)
    pool = descriptor_pool.DescriptorPool()  # its own pool: the names may exist in the default one
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("MonitoringConfig", "SSLConfig")
    }


_classes: dict[str, Any] = {}


def message_class(name: str) -> Any:
    """`MonitoringConfig` or `SSLConfig`."""
    if not _classes:
        _classes.update(_message_classes())
    return _classes[name]
