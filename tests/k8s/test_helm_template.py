"""`helm template`'s output around Helm's engine, on a small chart: the expected text is written by
hand from Helm v4.2.3's pkg/cmd/template.go, pkg/action/action.go (renderResources) and
pkg/release/v1/util (SplitManifests keeps a document's line endings, SortManifests, InstallOrder)."""

from pathlib import Path

from tfs_traffic.k8s import helm


def small_chart(root: Path) -> Path:
    chart = root / "small"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: small\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("port: 80\n")
    (chart / "templates" / "_helpers.tpl").write_text('{{- define "small.name" -}}{{ .Release.Name }}{{- end }}\n')
    (chart / "templates" / "NOTES.txt").write_text("installed {{ .Release.Name }}\n")
    (chart / "templates" / "empty.yaml").write_text("{{- if false }}\nkind: Secret\n{{- end }}\n")
    (chart / "templates" / "a-widgets.yaml").write_text(
        "---\n# first widget\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n"
        "---\napiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\n"
    )
    (chart / "templates" / "b-service.yaml").write_text(
        'apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ include "small.name" . }}\n'
        "spec:\n  ports:\n    - port: {{ .Values.port }}\n"
    )
    (chart / "templates" / "c-config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n"
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n"
    )
    (chart / "templates" / "d-hook.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations:\n    helm.sh/hook: test\n"
    )
    return chart


def test_template_output_matches_helms_format(tmp_path: Path) -> None:
    text, manifests = helm.template({"port": 8080}, chart_dir=small_chart(tmp_path), release="demo", namespace="ns")
    # ServiceAccount and ConfigMap before Service (install order), the unknown kinds after every
    # known one, alphabetically (Gadget before Widget); the hook last; NOTES.txt, the partial and
    # the empty file nowhere. A file's last document keeps its newline, so a blank line follows it.
    assert text == (
        "---\n# Source: small/templates/c-config.yaml\n"
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n\n"
        "---\n# Source: small/templates/c-config.yaml\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
        "---\n# Source: small/templates/b-service.yaml\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: demo\nspec:\n  ports:\n    - port: 8080\n\n"
        "---\n# Source: small/templates/a-widgets.yaml\n"
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\n\n"
        "---\n# Source: small/templates/a-widgets.yaml\n"
        "# first widget\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n"
        "---\n# Source: small/templates/d-hook.yaml\n"
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations:\n    helm.sh/hook: test\n\n"
    )
    assert [m.kind for m in manifests] == ["ServiceAccount", "ConfigMap", "Service", "Gadget", "Widget", "Pod"]
    assert helm.notes({}, chart_dir=tmp_path / "small", release="demo", namespace="ns") == "installed demo\n"


def test_split_manifests_like_helm() -> None:
    # A separator is `---` at the start or after a newline; the whitespace around it goes with it.
    assert helm.split_manifests("\n\n---\na: 1\n \n---  \nb: 2\n\n") == ["a: 1", "b: 2\n\n"]
    assert helm.split_manifests("a: 1\n  ---\n") == ["a: 1\n  ---\n"]  # indented: no separator
    assert helm.split_manifests("a: 1\n---\nb: 2\n") == ["a: 1", "b: 2\n"]
    assert helm.split_manifests("x: '---'\n") == ["x: '---'\n"]


def test_merge_values_like_helm() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert helm.merge_values(base, {"a": {"c": [3]}, "d": {"e": 1}}) == {"a": {"b": 1, "c": [3]}, "d": {"e": 1}}
    assert helm.merge_values(base, {"a": None}) == {"a": None, "d": "x"}  # null is Helm's to apply later
