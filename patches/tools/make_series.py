#!/usr/bin/env python3
"""Re-create the three-commit series on any TF Serving release tag (maintainers' tool, not shipped).

Every series in patches/ was made by this script from one description: the metrics unit and the
commit messages are taken from the reference series (patches/2.20.0), and the call sites, tests and
BUILD deps are re-inserted on the target tag's own source at anchors that every release from 2.4.0
to 2.20.0 has. Each anchor is asserted, so a release whose code moved stops with the anchor it
missed instead of producing a wrong patch. The unit's 64-bit type follows the tag's
core/servable_id.h (`int64` up to 2.7, `int64_t` from 2.8); TFRT hunks are added where the tag has
servables/tensorflow/tfrt_servable.cc.

  .venv/bin/python patches/tools/make_series.py --mirror /path/to/serving.git --tag 2.20.0 --out /tmp/s
  patches/tools/check_tags.sh /path/to/serving.git   # which series applies to which tag

Then copy the new NNNN-*.patch files into patches/<tag>/ with a `series` file ("# Applies to: ...").
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tfs_traffic.patchunit import new_files  # noqa: E402

DATE = '2025-11-22T12:00:00+0000'
AUTHOR_NAME = 'Seed 004d96ee maintainers'
AUTHOR_EMAIL = 'maintainers@users.noreply.h-seed-004d96ee.example'
UNIT: dict = {}
MESSAGES: list = []

SERV = 'tensorflow_serving/servables/tensorflow/'
MS = 'tensorflow_serving/model_servers/'
INC = '"tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"'
LABEL_COMMENT = '// A label can only point to a loaded version, so it is added once loaded.\n'


def read(p):
    with open(p) as f:
        return f.read()


def write(p, s):
    with open(p, 'w') as f:
        f.write(s)


def replace1(s, old, new, what=''):
    assert s.count(old) == 1, (what, old)
    return s.replace(old, new)


def insert_before(s, anchor, text, what=''):
    """Insert `text` before `anchor`, or before the comment lines right above it."""
    assert s.count(anchor) == 1, (what, anchor)
    pos = s.index(anchor)
    while True:
        prev = s.rfind('\n', 0, pos - 1) + 1
        if pos > 0 and s[prev:pos].startswith('//'):
            pos = prev
        else:
            break
    return s[:pos] + text + s[pos:]


def int_type():
    s = read('tensorflow_serving/core/servable_id.h')
    return 'int64_t' if re.search(r'^\s+int64_t version;', s, re.M) else 'int64'


def add_include(s, path):
    """Insert '#include <path>' among the quoted includes, after the last smaller one sharing its top directory."""
    inc = f'#include {path}\n'
    if inc in s:
        return s
    lines = s.splitlines(keepends=True)
    idx = [i for i, line in enumerate(lines) if line.startswith('#include "')]
    if lines[idx[0] + 1].strip() == '':  # the file's own header
        idx = idx[1:]
    top = path.strip('"').split('/')[0]
    same = [i for i in idx if lines[i].split('"')[1].split('/')[0] == top]
    if same:
        smaller = [i for i in same if lines[i] < inc]
        pos = smaller[-1] + 1 if smaller else same[0]
    else:
        bigger = [i for i in idx if lines[i] > inc]
        pos = bigger[0] if bigger else idx[-1] + 1
    lines.insert(pos, inc)
    return ''.join(lines)


def add_dep(s, target, dep):
    """Add a dep to a BUILD target's deps in buildifier order."""

    def key(d):
        d = d.strip().strip(',').strip('"')
        return (0 if d.startswith(':') else 1 if d.startswith('//') else 2, d)

    start = s.index(f'    name = "{target}",\n')
    end = s.index('\n)\n', start)
    block = s[start:end]
    ds = block.index('    deps = [\n') + len('    deps = [\n')
    de = block.index('    ],', ds)
    lines = block[ds:de].splitlines(keepends=True)
    new = f'        "{dep}",\n'
    if new in lines:
        return s
    pos = len(lines)
    for i, line in enumerate(lines):
        if key(line) > key(new):
            pos = i
            break
    lines.insert(pos, new)
    block = block[:ds] + ''.join(lines) + block[de:]
    return s[:start] + block + s[end:]


def commit(n):
    subprocess.run(['git', 'add', '-A'], check=True)
    subprocess.run(['git', 'commit', '-q', '-m', MESSAGES[n - 1]], check=True)


def unit_text(name, it):
    s = UNIT[SERV + name]
    if it == 'int64':
        s = re.sub(r'\bint64_t\b', 'int64', s)
        if not name.endswith('_test.cc'):
            s = replace1(s, '#include <cstdint>\n#include <string>\n', '#include <string>\n', name)
            s = replace1(
                s,
                '#include "tensorflow/core/lib/monitoring/gauge.h"\n',
                '#include "tensorflow/core/lib/monitoring/gauge.h"\n#include "tensorflow/core/platform/types.h"\n',
                name,
            )
    return s


UNIT_BUILD = '''cc_library(
    name = "model_traffic_metrics",
    srcs = ["model_traffic_metrics.cc"],
    hdrs = ["model_traffic_metrics.h"],
    visibility = [
        "//visibility:public",
    ],
    deps = [
        "@com_google_absl//absl/strings",
        "@org_tensorflow//tensorflow/core:lib",
    ],
)

cc_test(
    name = "model_traffic_metrics_test",
    size = "small",
    srcs = ["model_traffic_metrics_test.cc"],
    deps = [
        ":model_traffic_metrics",
        "//tensorflow_serving/core/test_util:test_main",
        "@org_tensorflow//tensorflow/core:lib",
        "@org_tensorflow//tensorflow/core:test",
    ],
)

'''


def p0001(it):
    for name in ('model_traffic_metrics.h', 'model_traffic_metrics.cc', 'model_traffic_metrics_test.cc'):
        write(SERV + name, unit_text(name, it))
    s = read(SERV + 'BUILD')
    anchor = 'cc_library(\n    name = "util",\n'
    write(SERV + 'BUILD', replace1(s, anchor, UNIT_BUILD + anchor, 'BUILD util'))
    commit(1)


def insert_after_handle(s, func, stmt):
    """Insert `stmt` right after the GetServableHandle statement in the definition of `func`."""
    defs = list(re.finditer(r'^\S[^\n]*\b' + re.escape(func) + r'\(', s, re.M))
    assert defs, func
    start = defs[-1].start()
    end = s.index('\n}\n', start)
    body = s[start:end]
    h = re.search(r'  TF_RETURN_IF_ERROR\(core->GetServableHandle\([^;]*\);\n', body)
    assert h, func
    body = body[: h.end()] + stmt + body[h.end() :]
    return s[:start] + body + s[end:]


EXAMPLE_X_80 = '''      "input {{"
      "  example_list {{"
      "    examples {{"
      "      features {{"
      "        feature: {{"
      "          key  : \\"x\\""
      "          value: {{"
      "            float_list: {{"
      "              value: [ 80.0 ]"
      "            }}"
      "          }}"
      "        }}"
      "      }}"
      "    }}"
      "  }}"
      "}}");
'''


def counted_calls(call, it, indent_cell='      '):
    return f'''  monitoring::CounterCell* const model_call_count =
      internal::GetModelCallCount()->GetCell(kTestModelName,
                                             absl::StrCat(kTestModelVersion));
  const {it} initial_count = model_call_count->value();

  model_spec->mutable_version()->set_value(kTestModelVersion);
{call}  EXPECT_EQ(initial_count + 1, model_call_count->value());

  model_spec->set_version_label(kTestModelLabel);
{call}  EXPECT_EQ(initial_count + 2, model_call_count->value());

  model_spec->clear_version_choice();
{call}  EXPECT_EQ(initial_count + 3, model_call_count->value());
'''


def add_test_constants(s, what):
    if 'constexpr int kTestModelVersion = 123;\n' not in s:
        s = replace1(
            s,
            'constexpr char kTestModelName[] = "test_model";\n',
            'constexpr char kTestModelName[] = "test_model";\nconstexpr int kTestModelVersion = 123;\n',
            what,
        )
    return replace1(
        s,
        'constexpr int kTestModelVersion = 123;\n',
        'constexpr int kTestModelVersion = 123;\nconstexpr char kTestModelLabel[] = "stable";\n',
        what,
    )


def add_test_includes(s):
    s = add_include(s, '"absl/strings/str_cat.h"')
    return add_include(s, INC)


LABEL_STATIC = '''
    {comment}    (*model_config->mutable_version_labels())[kTestModelLabel] =
        kTestModelVersion;
    TF_ASSERT_OK(server_core_->ReloadConfig(config));
'''.replace('{comment}', LABEL_COMMENT)


def service_test(path, fixture, kind, api, signature, call, it):
    s = read(path)
    s = add_test_includes(s)
    s = add_test_constants(s, path)
    create = '    TF_ASSERT_OK(ServerCore::Create(std::move(options), &server_core_));\n'
    s = replace1(s, create, create + LABEL_STATIC, path)
    if 'TFRT' in fixture:
        head = f'''// Verifies that each {api}() on the TFRT servable is counted once, under the
// version that served it, whether the request names that version by number, by
// label or not at all.
'''
    else:
        head = f'''// Verifies that each {api}() is counted once, under the version that served
// it, whether the request names that version by number, by label or not at all.
'''
    body = (
        head
        + f'''TEST_F({fixture}, RecordsModelCallUnderServedVersion) {{
  auto request = test_util::CreateProto<{kind}Request>(
      "model_spec {{"
      "  name: \\"test_model\\""
      "  signature_name: \\"{signature}\\""
      "}}"
'''
        + EXAMPLE_X_80.format()
        + f'''  {kind}Response response;
  ModelSpec* model_spec = request.mutable_model_spec();
'''
        + counted_calls(call, it)
        + '}\n\n'
    )
    anchor = f'// Verifies that {api}WithModelSpec() uses the model spec override'
    s = insert_before(s, anchor, body, path)
    write(path, s)


def predict_test(it):
    path = SERV + 'predict_impl_test.cc'
    s = add_test_includes(read(path))
    s = add_test_constants(s, path)
    for ret in ('    return ServerCore::Create(std::move(options), server_core);\n',):
        s = replace1(
            s,
            ret,
            '''    TF_RETURN_IF_ERROR(ServerCore::Create(std::move(options), server_core));

    '''
            + LABEL_COMMENT
            + '''    (*model_config->mutable_version_labels())[kTestModelLabel] =
        kTestModelVersion;
    return (*server_core)->ReloadConfig(config);
''',
            path,
        )
    call = '''  TF_ASSERT_OK(
      predictor.Predict(GetRunOptions(), GetServerCore(), request, &response));
'''
    test = f'''// Verifies that each Predict() is counted once, under the version that served
// it, whether the request names that version by number, by label or not at all.
TEST_F(PredictImplTest, RecordsModelCallUnderServedVersion) {{
  PredictRequest request;
  PredictResponse response;

  ModelSpec* model_spec = request.mutable_model_spec();
  model_spec->set_name(kTestModelName);

  TensorProto tensor_proto;
  tensor_proto.add_float_val(2.0);
  tensor_proto.set_dtype(tensorflow::DT_FLOAT);
  (*request.mutable_inputs())[kInputTensorKey] = tensor_proto;

  monitoring::CounterCell* const model_call_count =
      internal::GetModelCallCount()->GetCell(kTestModelName,
                                             absl::StrCat(kTestModelVersion));
  const {it} initial_count = model_call_count->value();
  TensorflowPredictor predictor;

  model_spec->mutable_version()->set_value(kTestModelVersion);
{call}  EXPECT_EQ(initial_count + 1, model_call_count->value());

  model_spec->set_version_label(kTestModelLabel);
{call}  EXPECT_EQ(initial_count + 2, model_call_count->value());

  model_spec->clear_version_choice();
{call}  EXPECT_EQ(initial_count + 3, model_call_count->value());

  // A request for a version that is not loaded is not counted.
  model_spec->mutable_version()->set_value(kTestModelVersion + 1);
  EXPECT_EQ(
      tensorflow::error::NOT_FOUND,
      predictor.Predict(GetRunOptions(), GetServerCore(), request, &response)
          .code());
  EXPECT_EQ(initial_count + 3, model_call_count->value());
}}

'''
    anchor = 'TEST_F(PredictImplTest, PredictionWithNamedRegressionSignature) {'
    write(path, insert_before(s, anchor, test, path))


def multi_inference_test(it):
    path = SERV + 'multi_inference_helper_test.cc'
    s = add_test_includes(read(path))
    s = add_test_constants(s, path)
    s = replace1(
        s,
        '    return ServerCore::Create(std::move(options), server_core);\n',
        '''    TF_RETURN_IF_ERROR(ServerCore::Create(std::move(options), server_core));

    '''
        + LABEL_COMMENT
        + '''    (*model_config->mutable_version_labels())[kTestModelLabel] =
        kTestModelVersion;
    return (*server_core)->ReloadConfig(config);
''',
        path,
    )
    call = '''  TF_ASSERT_OK(RunMultiInferenceWithServerCore(
      RunOptions(), this->GetServerCore(), thread::ThreadPoolOptions(), request,
      &response));
'''
    test = f'''// Verifies that each MultiInference request is counted once, under the version
// that served it, whether the request names that version by number, by label or
// not at all.
TYPED_TEST_P(MultiInferenceTest, RecordsModelCallUnderServedVersion) {{
  MultiInferenceRequest request;
  AddInput({{{{"x", 2}}}}, &request);
  PopulateTask("regress_x_to_y", kRegressMethodName, /*version=*/0,
               request.add_tasks());
  ModelSpec* model_spec = request.mutable_tasks(0)->mutable_model_spec();
  MultiInferenceResponse response;

''' + counted_calls(call, it) + '}\n\n'
    anchor = 'TYPED_TEST_P(MultiInferenceTest, ModelSpecOverride) {'
    s = insert_before(s, anchor, test, path)
    s = replace1(
        s,
        '    ModelSpecOverride, ThreadPoolOptions);',
        '    RecordsModelCallUnderServedVersion, ModelSpecOverride, ThreadPoolOptions);',
        path,
    )
    write(path, s)


def p0002(it):
    sites = [
        ('predict_impl.cc', 'TensorflowPredictor::PredictWithModelSpec', 'bundle'),
        ('classification_service.cc', 'TensorflowClassificationServiceImpl::ClassifyWithModelSpec', 'saved_model_bundle'),
        ('regression_service.cc', 'TensorflowRegressionServiceImpl::RegressWithModelSpec', 'saved_model_bundle'),
        ('multi_inference_helper.cc', 'RunMultiInferenceWithServerCoreWithModelSpec', 'bundle'),
    ]
    build = read(SERV + 'BUILD')
    for f, func, var in sites:
        p = SERV + f
        s = add_include(read(p), INC)
        call = f'  RecordModelCall({var}.id().name, {var}.id().version);\n'
        if len(call) > 81:
            call = f'  RecordModelCall({var}.id().name,\n                  {var}.id().version);\n'
        write(p, insert_after_handle(s, func, call))
        build = add_dep(build, f[: -len('.cc')], ':model_traffic_metrics')
    tfrt = os.path.exists(SERV + 'tfrt_servable.cc')
    if tfrt:
        p = SERV + 'tfrt_servable.cc'
        s = add_include(read(p), INC)
        for api in ('Classify', 'Regress', 'Predict', 'MultiInference'):
            m = re.search(r'  TRACELITERAL\("TfrtSavedModelServable::' + api + r'"\);\n(  auto recorder = CreateRecorder\(\);\n)?', s)
            assert m, api
            s = s[: m.end()] + '  RecordModelCall(std::string(name()), version());\n' + s[m.end() :]
        write(p, s)
        build = add_dep(build, 'tfrt_servable', ':model_traffic_metrics')

    predict_test(it)
    service_test(
        SERV + 'classification_service_test.cc', 'ClassificationServiceTest', 'Classification', 'Classify',
        'classify_x_to_y',
        '''  TF_ASSERT_OK(TensorflowClassificationServiceImpl::Classify(
      RunOptions(), server_core_.get(), thread::ThreadPoolOptions(), request,
      &response));
''', it)
    service_test(
        SERV + 'regression_service_test.cc', 'RegressionServiceTest', 'Regression', 'Regress', 'regress_x_to_y',
        '''  TF_ASSERT_OK(TensorflowRegressionServiceImpl::Regress(
      RunOptions(), server_core_.get(), thread::ThreadPoolOptions(), request,
      &response));
''', it)
    multi_inference_test(it)
    tests = ['predict_impl_test', 'classification_service_test', 'regression_service_test', 'multi_inference_helper_test']
    if tfrt and os.path.exists(SERV + 'tfrt_classification_service_test.cc'):
        service_test(
            SERV + 'tfrt_classification_service_test.cc', 'TFRTClassificationServiceTest', 'Classification',
            'Classify', 'classify_x_to_y',
            '''  TF_ASSERT_OK(TFRTClassificationServiceImpl::Classify(
      run_options_, server_core_.get(), request, &response));
''', it)
        tests.append('tfrt_classification_service_test')
    for t in tests:
        build = add_dep(build, t, ':model_traffic_metrics')
        build = add_dep(build, t, '@com_google_absl//absl/strings')
    write(SERV + 'BUILD', build)
    commit(2)


def p0003(it):
    h = MS + 'server_core.h'
    s = read(h)
    s = replace1(
        s,
        '  std::shared_ptr<ServableStateMonitor> servable_state_monitor_;\n',
        '''  std::shared_ptr<ServableStateMonitor> servable_state_monitor_;
  // Keeps /tensorflow/serving/model_version_available in step with the
  // servable states published on 'servable_event_bus_'.
  std::unique_ptr<EventBus<ServableState>::Subscription>
      model_version_available_subscription_;
''',
        h,
    )
    write(h, s)

    c = MS + 'server_core.cc'
    s = add_include(read(c), INC)
    fn = '''
// Sets a model version's availability metric from its servable state: 1 when
// it becomes available, 0 when it starts unloading or reaches the end state.
void RecordModelVersionAvailability(
    const EventBus<ServableState>::EventAndTime& event_and_time) {
  const ServableState& state = event_and_time.event;
  switch (state.manager_state) {
    case ServableState::ManagerState::kAvailable:
      RecordModelVersionAvailable(state.id.name, state.id.version);
      break;
    case ServableState::ManagerState::kUnloading:
    case ServableState::ManagerState::kEnd:
      RecordModelVersionUnavailable(state.id.name, state.id.version);
      break;
    default:
      break;
  }
}

}  // namespace
'''
    # the anonymous namespace holding the local helpers ends right before the public methods banner
    m = re.search(r'\n}  // namespace\n(?=\n// \*+\n// Public Methods\.)', s)
    assert m, 'server_core.cc helpers namespace'
    s = s[: m.start()] + fn + s[m.end() :]
    s = replace1(
        s,
        '''    : options_(std::move(options)),
      servable_event_bus_(EventBus<ServableState>::CreateEventBus()) {
''',
        '''    : options_(std::move(options)),
      servable_event_bus_(EventBus<ServableState>::CreateEventBus()),
      model_version_available_subscription_(
          servable_event_bus_->Subscribe(RecordModelVersionAvailability)) {
''',
        c,
    )
    write(c, s)

    t = MS + 'server_core_test.cc'
    s = add_include(read(t), '"absl/strings/str_cat.h"')
    s = add_include(s, INC)
    test = '''TEST_P(ServerCoreTest, ModelVersionAvailableFollowsServableState) {
  const ModelServerConfig nonempty_config =
      GetTestModelServerConfigForFakePlatform();
  ModelServerConfig empty_config;
  empty_config.mutable_model_config_list();
  const ServableId servable_id = {test_util::kTestModelName,
                                  test_util::kTestModelVersion};
  const string version = absl::StrCat(test_util::kTestModelVersion);

  std::unique_ptr<ServerCore> server_core;
  TF_ASSERT_OK(CreateServerCore(nonempty_config, &server_core));
  EXPECT_EQ(1, internal::GetModelVersionAvailable()
                   ->GetCell(test_util::kTestModelName, version)
                   ->value());

  TF_ASSERT_OK(server_core->ReloadConfig(empty_config));
  // Wait for the unload to finish (ReloadConfig() doesn't block on this).
  test_util::WaitUntilServableManagerStateIsOneOf(
      *server_core->servable_state_monitor(), servable_id,
      {ServableState::ManagerState::kEnd});
  EXPECT_EQ(0, internal::GetModelVersionAvailable()
                   ->GetCell(test_util::kTestModelName, version)
                   ->value());
}

'''
    anchor = 'TEST_P(ServerCoreTest, ReloadConfigHandlesLoadingAPreviouslyUnloadedModel) {'
    s = insert_before(s, anchor, test, t)
    write(t, s)

    b = read(MS + 'BUILD')
    b = add_dep(b, 'server_core', '//tensorflow_serving/servables/tensorflow:model_traffic_metrics')
    b = add_dep(b, 'server_core_test', '//tensorflow_serving/servables/tensorflow:model_traffic_metrics')
    write(MS + 'BUILD', b)
    commit(3)


def message(patch_text):
    """The commit message of a `git format-patch` file."""
    head, _, rest = patch_text.partition('\n\n')
    subject = re.search(r'^Subject: (?:\[PATCH[^\]]*\] )?(.*(?:\n .*)*)', head, re.M).group(1).replace('\n', '')
    return subject + '\n\n' + rest.split('\n---\n')[0].strip() + '\n'


def load_reference(series_dir):
    """Unit sources (int64_t spelling) and the three commit messages, from the reference series."""
    patches = sorted(Path(series_dir).glob('*.patch'))
    assert len(patches) == 3, patches
    unit = {}
    for p in patches:
        unit.update(new_files(p.read_text()))
    return unit, [message(p.read_text()) for p in patches]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mirror', required=True, help='git dir of a TF Serving clone (bare is fine)')
    parser.add_argument('--tag', required=True, help='release tag to build the series for')
    parser.add_argument('--out', required=True, help='directory to write the NNNN-*.patch files to')
    parser.add_argument('--reference', default=str(Path(__file__).resolve().parents[1] / '2.20.0'),
                        help='series whose unit and messages are reused (default: patches/2.20.0)')
    args = parser.parse_args()
    global UNIT, MESSAGES
    UNIT, MESSAGES = load_reference(args.reference)
    env = dict(os.environ, GIT_AUTHOR_DATE=DATE, GIT_COMMITTER_DATE=DATE)
    with tempfile.TemporaryDirectory(prefix='tfs-series-') as tmp:
        # Test data blobs may be absent from a partial mirror; they are never patched.
        archive = subprocess.run(
            ['git', '--git-dir', args.mirror, 'archive', args.tag, '--', '.',
             ':(exclude)tensorflow_serving/servables/tensorflow/testdata', ':(exclude)tensorflow_serving/example/testdata'],
            capture_output=True, check=True).stdout
        subprocess.run(['tar', '-x', '-C', tmp], input=archive, check=True)
        os.chdir(tmp)
        os.environ.update(env)
        subprocess.run(['git', 'init', '-q'], check=True)
        subprocess.run(['git', 'add', '-A'], check=True)
        base = ['git', '-c', 'user.name=upstream', '-c', 'user.email=upstream@localhost']
        subprocess.run([*base, 'commit', '-q', '-m', args.tag], check=True)
        for key, value in (('user.name', AUTHOR_NAME), ('user.email', AUTHOR_EMAIL)):
            subprocess.run(['git', 'config', key, value], check=True)
        subprocess.run(['git', 'tag', 'base'], check=True)
        it = int_type()
        p0001(it)
        p0002(it)
        p0003(it)
        out = Path(args.out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(['git', 'format-patch', '-q', '--no-signature', '--filename-max-length=80', '-o', str(out), 'base'],
                       check=True)
    print(f'{args.tag}: series ({it}) written to {out}')


if __name__ == '__main__':
    main()
