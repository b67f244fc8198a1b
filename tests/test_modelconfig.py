"""Models config parsing with the real ModelServerConfig protos from tensorflow-serving-api."""

import pytest

from tfs_traffic import modelconfig
from tfs_traffic.errors import UsageError

CONFIG = """
model_config_list {
  config {
    name: "resnet"
    base_path: "/models/resnet"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 2 }
    version_labels { key: "canary" value: 3 }
  }
  config {
    name: "bert"
    base_path: "/models/bert"
    model_version_policy { latest { num_versions: 2 } }
  }
}
"""


def test_entries_carry_labels_and_policies(tmp_path) -> None:
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    resnet, bert = modelconfig.load_entries(path)
    assert (resnet.name, resnet.policy, dict(resnet.version_labels)) == ("resnet", "all", {"stable": 2, "canary": 3})
    assert resnet.labels_by_version() == {2: ["stable"], 3: ["canary"]}
    assert (bert.name, bert.policy, bert.policy_versions) == ("bert", "latest", (2,))


def test_specific_versions_rewrite_keeps_labels_and_other_models() -> None:
    message = modelconfig.parse_text(CONFIG)
    rewritten = modelconfig.with_specific_versions(message, {"resnet": [3, 2]})
    again = modelconfig.entries(modelconfig.parse_text(modelconfig.to_text(rewritten)))
    assert (again[0].policy, again[0].policy_versions, dict(again[0].version_labels)) == (
        "specific",
        (2, 3),
        {"stable": 2, "canary": 3},
    )
    assert (again[1].policy, again[1].policy_versions) == ("latest", (2,))
    assert message.model_config_list.config[0].model_version_policy.WhichOneof("policy_choice") == "all"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { name: 'a' bogus: 1 } }", "malformed ModelServerConfig"),
        ("model_config_list { config { base_path: '/x' } }", "has no name"),
        ("model_config_list { config { name: 'a' } config { name: 'a' } }", "configured twice"),
    ],
)
def test_bad_configs_get_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        modelconfig.parse_text(text, "models.config")


def test_unreadable_config(tmp_path) -> None:
    with pytest.raises(UsageError, match="cannot read models config"):
        modelconfig.load(tmp_path / "nope.config")
