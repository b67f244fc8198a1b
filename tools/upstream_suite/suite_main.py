"""Runs inside the test process: TF Serving's integration test file, unchanged, under its own absl main.

    python suite_main.py SOURCE TEST_TMPDIR XML_OUTPUT TEST_NAME...

Bazel would put `tensorflow_serving/model_servers/test_util` on the import path; here the source
tree's `tensorflow_serving/` is added to the installed `tensorflow_serving` package's path (after the
installed one, so `apis/` and `config/` stay tensorflow-serving-api's generated modules). The flags
are what absltest reads: `--test_tmpdir` (the test writes its model configs there) and
`--xml_output_file` (one result per test, read by `run.py`); the test names select the tests to run.
`TEST_SRCDIR` comes from the environment `run.py` sets.
"""

import os
import runpy
import sys


def main() -> None:
    source, test_tmpdir, xml_output, *tests = sys.argv[1:]
    import tensorflow_serving

    tensorflow_serving.__path__.append(os.path.join(source, "tensorflow_serving"))
    test_file = os.path.join(source, "tensorflow_serving", "model_servers", "tensorflow_model_server_test.py")
    sys.argv = [
        test_file,
        f"--test_tmpdir={test_tmpdir}",
        f"--xml_output_file={xml_output}",
        *(f"TensorflowModelServerTest.{name}" for name in tests),
    ]
    runpy.run_path(test_file, run_name="__main__")


if __name__ == "__main__":
    main()
