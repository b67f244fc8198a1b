#!/usr/bin/env python3
"""Re-create the three-commit series on any TF Serving release tag (maintainers' tool, not shipped).

Every series in patches/ was made by this script from one description: the metrics unit comes from
patches/tools/unit/ and the service tests' shared body from patches/tools/test_util/ (both written
with `int64_t`), the commit messages from patches/tools/messages/, and the call sites, tests and
BUILD deps are inserted on the target tag's own source at anchors that every release from 2.4.0 to
2.20.0 has. Each anchor is asserted, so a release whose code moved
stops with the anchor it missed instead of producing a wrong patch. The unit's 64-bit type follows
the tag's core/servable_id.h (`int64` up to 2.7, `int64_t` from 2.8); TFRT hunks are added where the
tag has servables/tensorflow/tfrt_servable.cc.

  .venv/bin/python patches/tools/make_series.py --mirror /path/to/serving.git --tag 2.20.0 \
      --out patches/2.20.0 --applies-to "2.20.0"
  patches/tools/check_tags.sh /path/to/serving.git   # which series applies to which tag

--out is emptied of NNNN-*.patch files first; with --applies-to the `series` file is written too.
"""

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
DATE = '2025-11-22T12:00:00+0000'
AUTHOR_NAME = 'Seed 004d96ee maintainers'
AUTHOR_EMAIL = 'maintainers@users.noreply.h-seed-004d96ee.example'
UNIT: dict = {}
TEST_UTIL: dict = {}
MESSAGES: list = []

SERV = 'tensorflow_serving/servables/tensorflow/'
MS = 'tensorflow_serving/model_servers/'
INC = '"tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"'
TEST_UTIL_INC = '"tensorflow_serving/servables/tensorflow/model_traffic_metrics_test_util.h"'
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
    if len(idx) > 1 and lines[idx[0] + 1].strip() == '':  # the file's own header
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


def unit_text(name, s, it):
    """A unit (or test util) file as the tag spells TF's 64-bit integer: `int64` (from platform/types.h) up to 2.7."""
    if it == 'int64':
        s = re.sub(r'\bint64_t\b', 'int64', s)
        s = replace1(s, '#include <cstdint>\n', '', name)
        s = re.sub(r'(#define \w+\n)\n\n', r'\1\n', s)
        if not name.endswith('_test.cc'):
            s = add_include(s, '"tensorflow/core/platform/types.h"')
    return s


UNIT_BUILD = '''cc_library(
    name = "model_traffic_metrics",
    srcs = ["model_traffic_metrics.cc"],
    hdrs = ["model_traffic_metrics.h"],
    visibility = [
        "//visibility:public",
    ],
    deps = [
        "@com_google_absl//absl/container:flat_hash_set",
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
        "@com_google_absl//absl/strings",
        "@org_tensorflow//tensorflow/core:lib",
        "@org_tensorflow//tensorflow/core:test",
    ],
)

'''

# The service tests' shared body (0002).
TEST_UTIL_BUILD = '''cc_library(
    name = "model_traffic_metrics_test_util",
    testonly = 1,
    srcs = ["model_traffic_metrics_test_util.cc"],
    hdrs = ["model_traffic_metrics_test_util.h"],
    deps = [
        ":model_traffic_metrics",
        "//tensorflow_serving/apis:model_cc_proto",
        "@com_google_absl//absl/strings",
        "@org_tensorflow//tensorflow/core:lib",
        "@org_tensorflow//tensorflow/core:test",
    ],
)

'''


def p0001(it):
    for name in UNIT:
        write(SERV + name, unit_text(name, UNIT[name], it))
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


def counted_calls(send):
    """The shared body: `send` (statements sending `request`) by number, by label and with no version."""
    return f'''  test_util::TestModelCallRecordedUnderResolvedVersion(
      kTestModelVersion, kTestModelLabel, model_spec, [&]() {{
{send}      }});
'''


def model_call_count_cell(it):
    return f'''  monitoring::CounterCell* const model_call_count =
      internal::GetModelCallCount()->GetCell(kTestModelName,
                                             absl::StrCat(kTestModelVersion));
  const {it} initial_count = model_call_count->value();
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


def add_test_includes(s, cell=False):
    """The shared body's include; `cell` when the test reads model_call_count itself too."""
    if cell:
        s = add_include(s, '"absl/strings/str_cat.h"')
        s = add_include(s, INC)
    return add_include(s, TEST_UTIL_INC)


LABEL_STATIC = '''
    {comment}    (*model_config->mutable_version_labels())[kTestModelLabel] =
        kTestModelVersion;
    TF_ASSERT_OK(server_core_->ReloadConfig(config));
'''.replace('{comment}', LABEL_COMMENT)


def service_test(path, fixture, kind, api, signature, send):
    s = read(path)
    s = add_test_includes(s)
    s = add_test_constants(s, path)
    create = '    TF_ASSERT_OK(ServerCore::Create(std::move(options), &server_core_));\n'
    s = replace1(s, create, create + LABEL_STATIC, path)
    if 'TFRT' in fixture:
        head = f'''// Verifies that each {api}() on the TFRT servable is counted once, under the
// version it resolved to, whether the request names that version by number, by
// label or not at all.
'''
    else:
        head = f'''// Verifies that each {api}() is counted once, under the version it resolved
// to, whether the request names that version by number, by label or not at all.
'''
    body = (
        head
        + f'''TEST_F({fixture}, RecordsModelCallUnderResolvedVersion) {{
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
        + counted_calls(send)
        + '}\n\n'
    )
    anchor = f'// Verifies that {api}WithModelSpec() uses the model spec override'
    s = insert_before(s, anchor, body, path)
    write(path, s)


def label_after_create(s, path):
    """The fixture's `return ServerCore::Create(...)` also adds the label, once the version is loaded."""
    return replace1(
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


def predict_test(it):
    path = SERV + 'predict_impl_test.cc'
    s = add_test_includes(read(path), cell=True)
    s = add_test_constants(s, path)
    s = label_after_create(s, path)
    send = '''        TF_ASSERT_OK(predictor.Predict(GetRunOptions(), GetServerCore(),
                                       request, &response));
'''
    test = f'''// Verifies that each Predict() is counted once, under the version it resolved
// to, whether the request names that version by number, by label or not at all.
TEST_F(PredictImplTest, RecordsModelCallUnderResolvedVersion) {{
  PredictRequest request;
  PredictResponse response;

  ModelSpec* model_spec = request.mutable_model_spec();
  model_spec->set_name(kTestModelName);

  TensorProto tensor_proto;
  tensor_proto.add_float_val(2.0);
  tensor_proto.set_dtype(tensorflow::DT_FLOAT);
  (*request.mutable_inputs())[kInputTensorKey] = tensor_proto;

  TensorflowPredictor predictor;
{counted_calls(send)}
{model_call_count_cell(it)}
  // A request that resolves to the version and then fails is counted too.
  model_spec->set_signature_name("signature_that_does_not_exist");
  EXPECT_FALSE(
      predictor.Predict(GetRunOptions(), GetServerCore(), request, &response)
          .ok());
  EXPECT_EQ(initial_count + 1, model_call_count->value());

  // A request for a version that is not loaded is not counted.
  model_spec->clear_signature_name();
  model_spec->mutable_version()->set_value(kTestModelVersion + 1);
  EXPECT_EQ(
      tensorflow::error::NOT_FOUND,
      predictor.Predict(GetRunOptions(), GetServerCore(), request, &response)
          .code());
  EXPECT_EQ(initial_count + 1, model_call_count->value());
}}

'''
    anchor = 'TEST_F(PredictImplTest, PredictionWithNamedRegressionSignature) {'
    write(path, insert_before(s, anchor, test, path))


def multi_inference_test(it):
    path = SERV + 'multi_inference_helper_test.cc'
    s = add_test_includes(read(path), cell=True)
    s = add_test_constants(s, path)
    s = label_after_create(s, path)
    send = '''        TF_ASSERT_OK(RunMultiInferenceWithServerCore(
            RunOptions(), this->GetServerCore(), thread::ThreadPoolOptions(),
            request, &response));
'''
    test = f'''// Verifies that each MultiInference request is counted once, under the version
// it resolved to, whether the request names that version by number, by label or
// not at all.
TYPED_TEST_P(MultiInferenceTest, RecordsModelCallUnderResolvedVersion) {{
  MultiInferenceRequest request;
  AddInput({{{{"x", 2}}}}, &request);
  PopulateTask("regress_x_to_y", kRegressMethodName, -1, request.add_tasks());
  ModelSpec* model_spec = request.mutable_tasks(0)->mutable_model_spec();
  MultiInferenceResponse response;

{counted_calls(send)}}}

// Verifies that a MultiInference request with two tasks is counted once: both
// tasks run on the one version the request resolved to.
TYPED_TEST_P(MultiInferenceTest, RecordsOneModelCallForTwoTasks) {{
  MultiInferenceRequest request;
  AddInput({{{{"x", 2}}}}, &request);
  PopulateTask("regress_x_to_y", kRegressMethodName, -1, request.add_tasks());
  PopulateTask("classify_x_to_y", kClassifyMethodName, -1,
               request.add_tasks());
  MultiInferenceResponse response;
{model_call_count_cell(it)}
  TF_ASSERT_OK(RunMultiInferenceWithServerCore(
      RunOptions(), this->GetServerCore(), thread::ThreadPoolOptions(), request,
      &response));
  EXPECT_EQ(2, response.results_size());
  EXPECT_EQ(initial_count + 1, model_call_count->value());
}}

'''
    anchor = 'TYPED_TEST_P(MultiInferenceTest, ModelSpecOverride) {'
    s = insert_before(s, anchor, test, path)
    s = replace1(
        s,
        '    ModelSpecOverride, ThreadPoolOptions);',
        '    RecordsModelCallUnderResolvedVersion, RecordsOneModelCallForTwoTasks,\n'
        '    ModelSpecOverride, ThreadPoolOptions);',
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
            s = s[: m.end()] + '  RecordModelCall(name(), version());\n' + s[m.end() :]
        write(p, s)
        build = add_dep(build, 'tfrt_servable', ':model_traffic_metrics')

    for name, text in TEST_UTIL.items():
        write(SERV + name, unit_text(name, text, it))
    anchor = 'cc_library(\n    name = "util",\n'
    build = replace1(build, anchor, TEST_UTIL_BUILD + anchor, 'BUILD util')
    predict_test(it)
    service_test(
        SERV + 'classification_service_test.cc', 'ClassificationServiceTest', 'Classification', 'Classify',
        'classify_x_to_y',
        '''        TF_ASSERT_OK(TensorflowClassificationServiceImpl::Classify(
            RunOptions(), server_core_.get(), thread::ThreadPoolOptions(),
            request, &response));
''')
    service_test(
        SERV + 'regression_service_test.cc', 'RegressionServiceTest', 'Regression', 'Regress', 'regress_x_to_y',
        '''        TF_ASSERT_OK(TensorflowRegressionServiceImpl::Regress(
            RunOptions(), server_core_.get(), thread::ThreadPoolOptions(),
            request, &response));
''')
    multi_inference_test(it)
    tests = ['classification_service_test', 'regression_service_test']
    if tfrt and os.path.exists(SERV + 'tfrt_classification_service_test.cc'):
        service_test(
            SERV + 'tfrt_classification_service_test.cc', 'TFRTClassificationServiceTest', 'Classification',
            'Classify', 'classify_x_to_y',
            '''        TF_ASSERT_OK(TFRTClassificationServiceImpl::Classify(
            run_options_, server_core_.get(), request, &response));
''')
        tests.append('tfrt_classification_service_test')
    for t in tests:
        build = add_dep(build, t, ':model_traffic_metrics_test_util')
    # These two read model_call_count themselves too.
    for t in ('predict_impl_test', 'multi_inference_helper_test'):
        build = add_dep(build, t, ':model_traffic_metrics')
        build = add_dep(build, t, ':model_traffic_metrics_test_util')
        build = add_dep(build, t, '@com_google_absl//absl/strings')
    write(SERV + 'BUILD', build)
    commit(2)


def p0003(it):
    h = MS + 'server_core.h'
    s = add_include(read(h), INC)
    # After model_labels_to_versions_, whose declaration spells TF's 64-bit integer as the tag does
    # (int64 up to 2.7, int64_t from 2.8): that context makes an int64 series refuse an int64_t
    # tree and the other way round, and the members go before 'manager_' on destruction.
    labels = re.search(
        r'  std::unique_ptr<std::map<string, std::map<string, int64(?:_t)?>>>\n'
        r'      model_labels_to_versions_ TF_GUARDED_BY\(model_labels_to_versions_mu_\);\n\n',
        s,
    )
    assert labels and f'int64{"_t" if it == "int64_t" else ""}>>>' in labels.group(0), 'server_core.h label map'
    members = '''  // Sets /tensorflow/serving/model_version_available from the servable states
  // published on 'servable_event_bus_', through the subscription below. Both
  // are declared after 'manager_' so that they are destroyed before it: the
  // subscription stops the updates, then the recorder sets the versions this
  // core made available back to 0 ('manager_' unloads them on destruction
  // without publishing servable states).
  ModelVersionAvailabilityRecorder model_version_availability_;
  std::unique_ptr<EventBus<ServableState>::Subscription>
      model_version_availability_subscription_;

'''
    s = s[: labels.end()] + members + s[labels.end() :]
    write(h, s)

    c = MS + 'server_core.cc'
    s = add_include(read(c), INC)
    fn = '''
// Records a servable's state on the model_version_available gauge: a version
// is available from kAvailable until it starts unloading or reaches kEnd,
// which is also where a version whose load failed ends up.
void UpdateModelVersionAvailability(
    const ServableState& state, ModelVersionAvailabilityRecorder* recorder) {
  switch (state.manager_state) {
    case ServableState::ManagerState::kAvailable:
      recorder->RecordAvailable(state.id.name, state.id.version);
      break;
    case ServableState::ManagerState::kUnloading:
    case ServableState::ManagerState::kEnd:
      recorder->RecordUnavailable(state.id.name, state.id.version);
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
      model_version_availability_subscription_(servable_event_bus_->Subscribe(
          [recorder = &model_version_availability_](
              const EventBus<ServableState>::EventAndTime& event_and_time) {
            UpdateModelVersionAvailability(event_and_time.event, recorder);
          })) {
''',
        c,
    )
    write(c, s)

    t = MS + 'server_core_test.cc'
    s = add_include(read(t), '"absl/strings/str_cat.h"')
    s = add_include(s, INC)
    available = '''TEST_P(ServerCoreTest, ModelVersionAvailableFollowsServableState) {
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

TEST_P(ServerCoreTest, DestroyingServerCoreMakesItsModelVersionsUnavailable) {
  const string version = absl::StrCat(test_util::kTestModelVersion);
  std::unique_ptr<ServerCore> server_core;
  TF_ASSERT_OK(CreateServerCore(GetTestModelServerConfigForFakePlatform(),
                                &server_core));
  EXPECT_EQ(1, internal::GetModelVersionAvailable()
                   ->GetCell(test_util::kTestModelName, version)
                   ->value());

  // The manager unloads the model on destruction without publishing servable
  // states; the core sets the gauge to 0 itself.
  server_core = nullptr;
  EXPECT_EQ(0, internal::GetModelVersionAvailable()
                   ->GetCell(test_util::kTestModelName, version)
                   ->value());
}

'''
    anchor = 'TEST_P(ServerCoreTest, ReloadConfigHandlesLoadingAPreviouslyUnloadedModel) {'
    s = insert_before(s, anchor, available, t)
    erroring = '''TEST_P(ServerCoreTest, ErroringModelIsUnavailableWithoutModelCallCount) {
  // A model name no other test loads, so that no call count series exists.
  constexpr char kErroringModelName[] = "erroring_model";
  ServerCore::Options options = GetDefaultOptions();
  test_util::StoragePathErrorInjectingSourceAdapterConfig source_adapter_config;
  source_adapter_config.set_error_message("injected error");
  ::google::protobuf::Any source_adapter_config_any;
  source_adapter_config_any.PackFrom(source_adapter_config);
  (*(*options.platform_config_map
          .mutable_platform_configs())[test_util::kFakePlatform]
        .mutable_source_adapter_config()) = source_adapter_config_any;
  options.model_server_config = GetTestModelServerConfigForFakePlatform();
  options.model_server_config.mutable_model_config_list()
      ->mutable_config(0)
      ->set_name(kErroringModelName);
  const string version = absl::StrCat(test_util::kTestModelVersion);

  std::unique_ptr<ServerCore> server_core;
  EXPECT_FALSE(ServerCore::Create(std::move(options), &server_core).ok());

  EXPECT_THAT(
      internal::ExportedModelVersions(
          "/tensorflow/serving/model_version_available"),
      ::testing::Contains(::testing::Pair(kErroringModelName, version)));
  EXPECT_EQ(0, internal::GetModelVersionAvailable()
                   ->GetCell(kErroringModelName, version)
                   ->value());
  EXPECT_THAT(
      internal::ExportedModelVersions("/tensorflow/serving/model_call_count"),
      ::testing::Not(
          ::testing::Contains(::testing::Pair(kErroringModelName, version))));
}

'''
    anchor = 'TEST_P(ServerCoreTest, IllegalReconfigurationToCustomConfig) {'
    s = insert_before(s, anchor, erroring, t)
    write(t, s)

    b = read(MS + 'BUILD')
    b = add_dep(b, 'server_core', '//tensorflow_serving/servables/tensorflow:model_traffic_metrics')
    b = add_dep(b, 'server_core_test', '//tensorflow_serving/servables/tensorflow:model_traffic_metrics')
    b = add_dep(b, 'server_core_test', '@com_google_absl//absl/strings')
    write(MS + 'BUILD', b)
    commit(3)


def load_sources():
    """The unit and the service tests' util (int64_t spelling, by file name) and the three commit messages."""
    unit = {f.name: f.read_text() for f in sorted((TOOLS / 'unit').iterdir())}
    test_util = {f.name: f.read_text() for f in sorted((TOOLS / 'test_util').iterdir())}
    messages = [f.read_text() for f in sorted((TOOLS / 'messages').glob('000?.txt'))]
    assert len(messages) == 3, messages
    return unit, test_util, messages


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mirror', required=True, help='git dir of a TF Serving clone (bare is fine)')
    parser.add_argument('--tag', required=True, help='release tag to build the series for')
    parser.add_argument('--out', required=True, help='directory to write the NNNN-*.patch files to')
    parser.add_argument('--applies-to', metavar='TAGS', help='also write the series file, for these release tags')
    args = parser.parse_args()
    global UNIT, TEST_UTIL, MESSAGES
    UNIT, TEST_UTIL, MESSAGES = load_sources()
    out = Path(args.out).resolve()  # before the chdir below
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
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob('[0-9][0-9][0-9][0-9]-*.patch'):
            old.unlink()
        subprocess.run(['git', 'format-patch', '-q', '--no-signature', '--filename-max-length=80', '-o', str(out), 'base'],
                       check=True)
    if args.applies_to:
        names = sorted(p.name for p in out.glob('[0-9][0-9][0-9][0-9]-*.patch'))
        (out / 'series').write_text(
            '# Per-version call count and availability metrics for TF Serving (see ../README.md).\n'
            f'# Applies to: {" ".join(args.applies_to.split())}\n' + ''.join(f'{n}\n' for n in names))
    print(f'{args.tag}: series ({it}) written to {out}')


if __name__ == '__main__':
    main()
