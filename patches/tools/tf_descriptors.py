"""Write a FileDescriptorSet of the TF protos that TF Serving's protos import, from TensorFlow's Python package.

Usage: python tf_descriptors.py SERVING_SRC OUT.pb (with the .venv that has tensorflow-cpu). syntax_check.sh hands
the set to protoc as --descriptor_set_in: the pip package ships TF's generated C++ headers but no .proto files.
"""

import importlib
import re
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

_IMPORT = re.compile(r'^import (?:public )?"([^"]+)";', re.M)


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    imports = {
        name
        for proto in src.rglob('*.proto')
        for name in _IMPORT.findall(proto.read_text())
        if not name.startswith('tensorflow_serving/')
    }
    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(descriptor) -> None:  # dependencies first, as protoc wants them
        if descriptor.name in seen:
            return
        for dependency in descriptor.dependencies:
            add(dependency)
        seen.add(descriptor.name)
        descriptor.CopyToProto(files.file.add())

    missing = []
    for name in sorted(imports):
        try:
            importlib.import_module(name[: -len('.proto')].replace('/', '.') + '_pb2')
            add(descriptor_pool.Default().FindFileByName(name))
        except (ImportError, KeyError):
            missing.append(name)
    out.write_bytes(files.SerializeToString())
    print(f'{len(files.file)} TF proto descriptors; not in the pip package: {", ".join(missing) or "none"}')


if __name__ == '__main__':
    main()
