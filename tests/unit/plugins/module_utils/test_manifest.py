"""Reading and editing kubeadm's etcd manifest line by line: the operator's edits, and nothing else."""

import copy
import difflib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import (
    CRICTL_RUNTIME,
    MANIFEST_MAX_BYTES,
    PROCESS_TABLE,
    ManifestError,
    ManifestLimitError,
    PodWatcher,
    RuntimeUnavailable,
    StaticPodManifest,
    etcd_version_of_tag,
    flag_item,
    normalize_flag_name,
    split_image,
    wait_for_pod,
)

# kubeadm's etcd.yaml as kubeadm writes it (indentless lists); not named .yaml, so linters leave its style alone.
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "manifests" / "kubeadm-etcd-3.5.manifest"
KUBEADM = FIXTURE.read_text()


def manifest(text=KUBEADM, container=None):
    return StaticPodManifest(text, path="/etc/kubernetes/manifests/etcd.yaml", container=container)


def changed_lines(before, after):
    """(removed, added) lines of a unified diff."""
    diff = list(difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0))
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


# Reading what the restore needs


def test_reads_kubeadm_etcd_manifest():
    m = manifest()
    assert m.pod_name == "etcd" and m.namespace == "kube-system" and m.container_name == "etcd"
    assert m.program == "etcd"
    assert m.argv[0] == "etcd" and len(m.argv) == 20
    assert m.data_dir == "/var/lib/etcd"
    assert m.get_flag("name") == "cp1"
    assert m.get_flag("--initial-cluster") == "cp1=https://10.0.0.11:2380"
    assert m.get_flag("initial-advertise-peer-urls") == "https://10.0.0.11:2380"
    assert m.get_flag("advertise-client-urls") == "https://10.0.0.11:2379"
    assert m.get_flag("listen-client-urls") == "https://127.0.0.1:2379,https://10.0.0.11:2379"
    assert m.get_flag("cert-file") == "/etc/kubernetes/pki/etcd/server.crt"
    assert m.get_flag("peer-trusted-ca-file") == "/etc/kubernetes/pki/etcd/ca.crt"
    assert m.get_flag("client-cert-auth") == "true"
    assert m.get_flag("force-new-cluster") is None
    assert m.get_flag("force-new-cluster", False) is False


def test_image_tag_and_etcd_version():
    m = manifest()
    assert m.image == "registry.k8s.io/etcd:3.5.16-0"
    assert m.image_tag == "3.5.16-0"
    assert m.etcd_version == "3.5.16"


@pytest.mark.parametrize("image, parts", [
    ("registry.k8s.io/etcd:3.5.16-0", ("registry.k8s.io/etcd", "3.5.16-0", None)),
    ("registry.local:5000/etcd:3.6.0-0", ("registry.local:5000/etcd", "3.6.0-0", None)),
    ("registry.local:5000/etcd", ("registry.local:5000/etcd", None, None)),
    ("quay.io/coreos/etcd:v3.4.34@sha256:abcd", ("quay.io/coreos/etcd", "v3.4.34", "sha256:abcd")),
])
def test_split_image(image, parts):
    assert split_image(image) == parts


@pytest.mark.parametrize("tag, version", [("3.5.16-0", "3.5.16"), ("v3.4.34", "3.4.34"), ("latest", None), (None, None)])
def test_etcd_version_of_tag(tag, version):
    assert etcd_version_of_tag(tag) == version


def test_host_paths_of_the_data_dir_and_pki():
    m = manifest()
    assert m.host_paths == {
        "etcd-certs": {"path": "/etc/kubernetes/pki/etcd", "type": "DirectoryOrCreate"},
        "etcd-data": {"path": "/var/lib/etcd", "type": "DirectoryOrCreate"},
    }
    assert m.host_path(m.data_dir) == "/var/lib/etcd"
    assert m.host_path("/var/lib/etcd/member/snap") == "/var/lib/etcd/member/snap"
    assert m.host_path("/var/lib/etcdfoo") is None
    assert m.host_path("/tmp") is None


def test_host_path_follows_a_mount_to_another_host_directory():
    text = KUBEADM.replace("      path: /var/lib/etcd\n", "      path: /data/etcd\n")
    m = manifest(text)
    assert m.host_path("/var/lib/etcd") == "/data/etcd"
    assert m.host_path("/var/lib/etcd/member") == "/data/etcd/member"


def test_flag_item_and_names():
    assert flag_item("force-new-cluster", True) == "--force-new-cluster"
    assert flag_item("client-cert-auth", False) == "--client-cert-auth=false"
    assert flag_item("snapshot-count", 10000) == "--snapshot-count=10000"
    assert normalize_flag_name("--data-dir") == normalize_flag_name("data-dir") == "data-dir"
    for bad in ("", "---x", "a b", "--", "x=y"):
        with pytest.raises(ManifestError):
            normalize_flag_name(bad)


# Editing: one line per flag, everything else byte-identical


def test_changing_a_flag_changes_exactly_its_line():
    m = manifest()
    value = "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380"
    after = m.edit_flags({"initial-cluster": value})
    assert changed_lines(KUBEADM, after) == (
        ["    - --initial-cluster=cp1=https://10.0.0.11:2380\n"],
        ["    - --initial-cluster=%s\n" % value],
    )
    assert KUBEADM.splitlines().index("    - --initial-cluster=cp1=https://10.0.0.11:2380") == \
        after.splitlines().index("    - --initial-cluster=%s" % value)
    assert manifest(after).get_flag("initial-cluster") == value


def test_adding_a_flag_adds_one_line_at_its_sorted_place():
    after = manifest().edit_flags({"force-new-cluster": True})
    assert changed_lines(KUBEADM, after) == ([], ["    - --force-new-cluster\n"])
    lines = after.splitlines()
    at = lines.index("    - --force-new-cluster")
    assert lines[at - 1] == "    - --experimental-watch-progress-notify-interval=5s"
    assert lines[at + 1] == "    - --initial-advertise-peer-urls=https://10.0.0.11:2380"
    assert manifest(after).get_flag("force-new-cluster") is True


def test_initial_cluster_state_goes_after_initial_cluster():
    after = manifest().edit_flags({"initial-cluster-state": "existing"})
    lines = after.splitlines()
    at = lines.index("    - --initial-cluster-state=existing")
    assert lines[at - 1].startswith("    - --initial-cluster=")
    assert changed_lines(KUBEADM, after) == ([], ["    - --initial-cluster-state=existing\n"])


def test_removing_a_flag_removes_exactly_its_line():
    after = manifest().edit_flags(remove_flags=["snapshot-count"])
    assert changed_lines(KUBEADM, after) == (["    - --snapshot-count=10000\n"], [])
    assert "snapshot-count" not in manifest(after).flags


def test_add_then_remove_gives_back_the_same_bytes():
    m = manifest()
    with_flag = m.edit_flags({"force-new-cluster": True, "initial-cluster-state": "existing"})
    back = manifest(with_flag).edit_flags(remove_flags=["--force-new-cluster", "initial-cluster-state"])
    assert back == KUBEADM


def test_setting_what_is_there_changes_nothing():
    m = manifest()
    assert m.edit_flags({"data-dir": "/var/lib/etcd", "name": "cp1", "snapshot-count": 10000}) == KUBEADM
    # a boolean that is already true, written as =true
    assert m.edit_flags({"client-cert-auth": True}) == KUBEADM
    assert m.edit_flags(remove_flags=["force-new-cluster"]) == KUBEADM
    assert m.edit_flags() == KUBEADM
    forced = m.edit_flags({"force-new-cluster": True})
    assert manifest(forced).edit_flags({"force-new-cluster": True}) == forced


def test_boolean_false_and_back():
    after = manifest().edit_flags({"client-cert-auth": False})
    assert changed_lines(KUBEADM, after) == (["    - --client-cert-auth=true\n"], ["    - --client-cert-auth=false\n"])
    forced = manifest().edit_flags({"force-new-cluster": True})
    off = manifest(forced).edit_flags({"force-new-cluster": False})
    assert changed_lines(forced, off) == (["    - --force-new-cluster\n"], ["    - --force-new-cluster=false\n"])


def test_several_changes_at_once_touch_only_their_lines():
    after = manifest().edit_flags(
        {"force-new-cluster": True, "data-dir": "/var/lib/etcd-restored", "zzz-last": "1"},
        ["snapshot-count", "experimental-initial-corrupt-check"])
    removed, added = changed_lines(KUBEADM, after)
    assert sorted(removed) == sorted([
        "    - --data-dir=/var/lib/etcd\n", "    - --experimental-initial-corrupt-check=true\n",
        "    - --snapshot-count=10000\n"])
    assert sorted(added) == sorted([
        "    - --data-dir=/var/lib/etcd-restored\n", "    - --force-new-cluster\n", "    - --zzz-last=1\n"])
    assert manifest(after).argv[-1] == "--zzz-last=1"


def test_structure_is_the_original_except_the_flags():
    after = manifest().edit_flags({"force-new-cluster": True})
    original, edited = yaml.safe_load(KUBEADM), yaml.safe_load(after)
    command = edited["spec"]["containers"][0].pop("command")
    del original["spec"]["containers"][0]["command"]
    assert edited == original
    assert "--force-new-cluster" in command


def test_comments_quotes_and_indentation_are_kept():
    text = ("# written by kubeadm, edited by hand\n"
            + KUBEADM.replace("    - --name=cp1\n", "    - --name=cp1  # this member\n")
            .replace("    - --initial-cluster=cp1=https://10.0.0.11:2380\n",
                     '    - "--initial-cluster=cp1=https://10.0.0.11:2380"\n')
            .replace("  hostNetwork: true\n", "  hostNetwork: true   # etcd listens on the node's address\n"))
    after = manifest(text).edit_flags({"name": "cp9", "initial-cluster": "cp9=https://10.0.0.19:2380"})
    assert changed_lines(text, after) == (
        ['    - "--initial-cluster=cp1=https://10.0.0.11:2380"\n', "    - --name=cp1  # this member\n"],
        ['    - "--initial-cluster=cp9=https://10.0.0.19:2380"\n', "    - --name=cp9  # this member\n"],
    )


def test_indented_sequences_keep_their_indentation():
    start, end = KUBEADM.index("    - etcd\n"), KUBEADM.index("    image:")
    text = KUBEADM[:start] + KUBEADM[start:end].replace("    - ", "      - ") + KUBEADM[end:]
    m = manifest(text)
    after = m.edit_flags({"force-new-cluster": True})
    assert changed_lines(text, after) == ([], ["      - --force-new-cluster\n"])


def test_crlf_line_endings_are_kept():
    text = KUBEADM.replace("\n", "\r\n")
    after = manifest(text).edit_flags({"force-new-cluster": True}, ["snapshot-count"])
    assert "\n" not in after.replace("\r\n", "")
    assert "    - --force-new-cluster\r\n" in after
    assert "snapshot-count" not in after


def test_values_that_yaml_would_misread_are_quoted():
    value = "a #b: c"
    after = manifest().edit_flags({"log-outputs": value})
    assert manifest(after).get_flag("log-outputs") == value
    assert changed_lines(KUBEADM, after)[1] == ['    - "--log-outputs=a #b: c"\n']


def test_args_list_receives_new_flags():
    text = KUBEADM.replace("  - command:\n    - etcd\n", "  - command:\n    - etcd\n    args:\n", 1)
    m = manifest(text)
    assert m.command == ["etcd"] and m.args[0] == "--advertise-client-urls=https://10.0.0.11:2379"
    assert m.get_flag("name") == "cp1"
    after = m.edit_flags({"force-new-cluster": True})
    assert changed_lines(text, after) == ([], ["    - --force-new-cluster\n"])
    assert "--force-new-cluster" in manifest(after).args


def test_flag_in_two_items():
    text = KUBEADM.replace("    - --data-dir=/var/lib/etcd\n", "    - --data-dir\n    - /var/lib/etcd\n")
    m = manifest(text)
    assert m.data_dir == "/var/lib/etcd"
    after = m.edit_flags({"data-dir": "/var/lib/etcd-new"})
    assert changed_lines(text, after) == (["    - /var/lib/etcd\n"], ["    - /var/lib/etcd-new\n"])
    assert m.edit_flags({"data-dir": "/var/lib/etcd"}) == text
    removed = m.edit_flags(remove_flags=["data-dir"])
    assert changed_lines(text, removed) == (["    - --data-dir\n", "    - /var/lib/etcd\n"], [])
    with pytest.raises(ManifestError, match="two items"):
        m.edit_flags({"data-dir": True})


def test_value_item_that_yaml_would_read_as_a_number_is_quoted():
    text = KUBEADM.replace("    - --snapshot-count=10000\n", "    - --snapshot-count\n    - '10000'\n")
    after = manifest(text).edit_flags({"snapshot-count": 5000})
    assert changed_lines(text, after) == (["    - '10000'\n"], ["    - '5000'\n"])
    assert manifest(after).get_flag("snapshot-count") == "5000"


def test_single_dash_flags_keep_their_dash():
    text = KUBEADM.replace("    - --name=cp1\n", "    - -name=cp1\n")
    m = manifest(text)
    assert m.get_flag("name") == "cp1"
    after = m.edit_flags({"name": "cp2"})
    assert changed_lines(text, after) == (["    - -name=cp1\n"], ["    - -name=cp2\n"])


def test_duplicated_flag_is_refused_for_set_and_removed_entirely():
    text = KUBEADM.replace("    - --name=cp1\n", "    - --name=cp1\n    - --force-new-cluster\n    - --force-new-cluster=true\n")
    m = manifest(text)
    with pytest.raises(ManifestError, match="appears 2 times"):
        m.edit_flags({"force-new-cluster": False})
    assert m.edit_flags(remove_flags=["force-new-cluster"]) == KUBEADM


def test_flag_both_set_and_removed_is_refused():
    with pytest.raises(ManifestError, match="both set and removed"):
        manifest().edit_flags({"force-new-cluster": True}, ["--force-new-cluster"])


@pytest.mark.parametrize("value", [None, ["a"], {"a": 1}, "two\nlines"])
def test_unwritable_values_are_refused(value):
    with pytest.raises(ManifestError):
        manifest().edit_flags({"initial-cluster-state": value})


def test_container_by_name():
    text = KUBEADM.replace("  hostNetwork: true\n", "  - name: sidecar\n    image: busybox\n    command:\n    - sleep\n"
                           "    - --for=ever\n  hostNetwork: true\n")
    m = manifest(text, container="sidecar")
    assert m.program == "sleep" and m.get_flag("for") == "ever"
    after = m.edit_flags({"for": "now"})
    assert changed_lines(text, after) == (["    - --for=ever\n"], ["    - --for=now\n"])
    assert manifest(text).container_name == "etcd"
    assert manifest(text, container="etcd").edit_flags({"for": "x"}).count("--for=") == 2


# Refusals: a clear message, no guessing


def refused(text, match, container=None, **edit):
    with pytest.raises(ManifestError, match=match) as caught:
        m = manifest(text, container=container)
        m.edit_flags(edit.get("flags", {"force-new-cluster": True}), edit.get("remove"))
    assert "/etc/kubernetes/manifests/etcd.yaml" in str(caught.value)
    return str(caught.value)


def test_invalid_yaml_is_refused():
    refused(KUBEADM.replace("  name: etcd\n  namespace", "  name: [etcd\n  namespace"), "not valid YAML")


def test_not_a_pod_is_refused():
    refused(KUBEADM.replace("kind: Pod", "kind: Deployment"), r"not a Pod manifest \(kind: Deployment\)")


def test_empty_and_scalar_files_are_refused():
    refused("", "not a Kubernetes object")
    refused("just text\n", "not a Kubernetes object")


def test_several_documents_are_refused():
    refused(KUBEADM + "---\n" + KUBEADM, "not valid YAML")


def test_missing_container_is_refused():
    message = refused(KUBEADM, "no container named 'etcd-main'", container="etcd-main")
    assert "containers: etcd" in message


def test_no_containers_is_refused():
    refused("apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec: {}\n", "no spec.containers")


def test_flow_style_command_is_refused():
    start, end = KUBEADM.index("  - command:\n"), KUBEADM.index("    image:")
    flow = KUBEADM[:start] + "  - command: [etcd, --data-dir=/var/lib/etcd, --name=cp1]\n" + KUBEADM[end:]
    assert manifest(flow).get_flag("name") == "cp1"
    refused(flow, "flow style")


def test_flow_style_list_that_is_not_edited_does_not_matter():
    start, end = KUBEADM.index("  - command:\n"), KUBEADM.index("    image:")
    text = KUBEADM[:start] + "  - command: [etcd]\n    args:\n" + KUBEADM[start + len("  - command:\n    - etcd\n"):]
    after = manifest(text).edit_flags({"force-new-cluster": True})
    assert changed_lines(text, after) == ([], ["    - --force-new-cluster\n"])
    text = KUBEADM.replace("    image: registry", "    args: []\n    image: registry")
    after = manifest(text).edit_flags({"force-new-cluster": True})
    assert changed_lines(text, after) == ([], ["    - --force-new-cluster\n"])


def test_nested_list_in_command_is_refused():
    start, end = KUBEADM.index("    - etcd\n"), KUBEADM.index("    image:")
    nested = KUBEADM[:start] + "    - [etcd, --name=cp1]\n" + KUBEADM[end:]
    refused(nested, "not a list of strings")


def test_anchored_command_shared_with_another_container_is_refused():
    start, end = KUBEADM.index("  - command:\n"), KUBEADM.index("    image:")
    text = (KUBEADM[:start] + "  - command: &cmd\n    - etcd\n    - --name=cp1\n" + KUBEADM[end:]
            .replace("  hostNetwork: true\n", "  - name: twin\n    image: busybox\n    command: *cmd\n  hostNetwork: true\n"))
    assert manifest(text, container="twin").get_flag("name") == "cp1"
    refused(text, "would change more than the flags")


def test_list_at_the_end_of_a_file_without_final_newline():
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - --name=cp1"
    added = manifest(text).edit_flags({"force-new-cluster": True, "snapshot-count": 1})
    assert added == text.replace("    - --name=cp1", "    - --force-new-cluster\n    - --name=cp1\n    - --snapshot-count=1")
    assert manifest(added).edit_flags(remove_flags=["force-new-cluster", "snapshot-count"]) == text
    assert manifest(text).edit_flags(remove_flags=["name"]) == text.replace("\n    - --name=cp1", "")


def test_multi_line_items_are_refused():
    text = KUBEADM.replace("    - --name=cp1\n", "    - --name=cp1\n    - >-\n      --log-level=info\n")
    assert manifest(text).get_flag("log-level") == "info"
    refused(text, "block scalar")
    text = KUBEADM.replace("    - --name=cp1\n", '    - "--name=c\\\n      p1"\n')
    assert manifest(text).get_flag("name") == "cp1"
    refused(text, "spans several lines")


def test_shell_wrapper_is_refused():
    text = KUBEADM.replace("    - etcd\n", "    - /bin/sh\n    - -c\n    - exec etcd --name=cp1\n", 1)
    refused(text, "runs a shell")


def test_adding_without_command_or_args_is_refused():
    text = KUBEADM[:KUBEADM.index("  - command:\n")] + "  - image: registry.k8s.io/etcd:3.5.16-0\n" + \
        KUBEADM[KUBEADM.index("    imagePullPolicy:"):]
    assert manifest(text).argv == []
    refused(text, "no command or args list")


def test_refusal_changes_nothing_in_the_object():
    m = manifest()
    before = copy.deepcopy(m.document)
    with pytest.raises(ManifestError):
        m.edit_flags({"x": None})
    assert m.document == before and m.text == KUBEADM


def test_from_file_reads_and_names_the_file(tmp_path):
    path = tmp_path / "etcd.yaml"
    path.write_text(KUBEADM)
    assert StaticPodManifest.from_file(str(path)).get_flag("name") == "cp1"
    path.write_bytes(b"kind: Pod\n\xff\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        StaticPodManifest.from_file(str(path))
    with pytest.raises(ManifestError, match="cannot read"):
        StaticPodManifest.from_file(str(tmp_path / "missing.yaml"))


# A damaged or crafted manifest (a backup, a parked copy, a bad disk): refused in a moment with what to do


def billion_laughs(levels=9):
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += ['lol%d: &lol%d [%s]' % (i, i, ", ".join(["*lol%d" % (i - 1)] * 10)) for i in range(1, levels + 1)]
    return "kind: Pod\n" + "\n".join(lines) + "\n"


def refused_quickly(text, error, match):
    started = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        manifest(text)
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "/etc/kubernetes/manifests/etcd.yaml" in message
    return message


def test_billion_laughs_is_refused_before_anything_walks_the_copies():
    message = refused_quickly(billion_laughs(), ManifestLimitError, "more than 100000 YAML nodes")
    assert "kubeadm init phase etcd local" in message and "line " in message


def test_merge_keys_that_multiply_are_counted_like_aliases():
    lines = ["a0: &a0 {k0: v, k1: v, k2: v, k3: v, k4: v, k5: v, k6: v, k7: v, k8: v, k9: v}"]
    lines += ["a%d: &a%d {<<: [%s]}" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 9)]
    refused_quickly("kind: Pod\n" + "\n".join(lines) + "\n", ManifestLimitError, "YAML nodes")


def test_anchors_a_person_might_write_still_read():
    text = KUBEADM.replace("  name: etcd\n", "  name: &n etcd\n", 1).replace(
        "  namespace: kube-system\n", "  namespace: kube-system\n  labels2: {component: *n}\n", 1)
    assert manifest(text).metadata["labels2"] == {"component": "etcd"}


@pytest.mark.parametrize("text", [
    "kind: Pod\nspec: " + "[" * 40 + "]" * 40 + "\n",
    "kind: Pod\nspec:\n" + "".join("%s- \n" % (" " * (2 * i)) for i in range(40)),
    "kind: Pod\nspec: " + "{a: " * 40 + "1" + "}" * 40 + "\n",
    "kind: Pod\nx: &x " + "[" * 20 + "]" * 20 + "\nspec: " + "[" * 20 + "*x" + "]" * 20 + "\n",
], ids=["flow-lists", "block-lists", "flow-mappings", "an-alias-that-deepens"])
def test_deep_nesting_is_refused_without_recursion(text):
    refused_quickly(text, ManifestLimitError, "more than 32 levels deep")


def test_very_deep_nesting_is_refused_too_not_a_recursion_error():
    refused_quickly("[" * 100000 + "]" * 100000, ManifestLimitError, "levels deep")


@pytest.mark.parametrize("text,match", [
    ("kind: Pod\nspec: &s {a: *s}\n", "inside the node it names"),
    ("kind: Pod\nspec: *nothing\n", "names no anchor"),
])
def test_recursive_and_undefined_aliases_are_refused(text, match):
    refused_quickly(text, ManifestLimitError, match)


def test_a_huge_manifest_is_refused_before_it_is_parsed():
    refused_quickly("kind: Pod\n" + "#" * MANIFEST_MAX_BYTES, ManifestLimitError, "more than the 1048576")


def test_a_huge_file_is_refused_from_its_size_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "etcd.yaml"
    with open(str(path), "wb") as handle:
        handle.truncate(MANIFEST_MAX_BYTES + 1)  # sparse: costs nothing, reads as NULs
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    expected = "%d bytes, more than the %d" % (MANIFEST_MAX_BYTES + 1, MANIFEST_MAX_BYTES)
    with pytest.raises(ManifestLimitError, match=expected):
        StaticPodManifest.from_file(str(path))
    assert reads == []


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "etcd.yaml"
    os.mkfifo(str(path))
    with pytest.raises(ManifestError, match="not a regular file"):
        StaticPodManifest.from_file(str(path))


@pytest.mark.parametrize("text,match", [
    ("- kind: Pod\n", "holds list, not a mapping"),
    ("just a string\n", "holds str, not a mapping"),
    ("", "holds nothing"),
    ("kind: Pod\n---\nkind: Pod\n", "expected a single document"),
])
def test_a_document_that_is_not_one_mapping_is_refused(text, match):
    refused_quickly(text, ManifestError, match)


def test_binary_garbage_is_refused_as_such(tmp_path):
    path = tmp_path / "etcd.yaml"
    path.write_bytes(os.urandom(4096).replace(b"\x00", b"") + b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="not UTF-8"):
        StaticPodManifest.from_file(str(path))
    with pytest.raises(ManifestError, match="not valid YAML"):
        manifest("kind: Pod\n\x00\x01\x02\x1b[0m\n")


@pytest.mark.parametrize("value,error,match", [
    ("1" + "0" * 5000, ManifestLimitError, "a number of 5001 characters"),
    ("1:" * 1000 + "1", ManifestLimitError, "a number of"),
    ("2026-13-01", ManifestError, "month must be in 1..12"),
    ("!!int nine", ManifestError, "cannot read 'nine'"),
    ("!!float ._", ManifestError, "cannot read"),
    ("!!python/object:os.system echo", ManifestError, "could not determine a constructor"),
])
def test_scalars_python_cannot_convert_safely_are_refused(value, error, match):
    refused_quickly("kind: Pod\nx: %s\n" % value, error, match)


# Watching the pod: crictl's JSON and the process table


def crictl_container(name="etcd", pod="etcd-cp1", namespace="kube-system", state="CONTAINER_RUNNING",
                     created_ns=None, restarts=0, container_id="0c1d"):
    return {
        "id": container_id * 16,
        "podSandboxId": "9f3e" * 16,
        "metadata": {"name": name, "attempt": restarts},
        "image": {"image": "sha256:2e96e5913fc06e3d26915af3d0f2ca5048cc4b6327e661e80da792cbf8d8d9d4",
                  "annotations": {}, "userSpecifiedImage": "", "runtimeHandler": ""},
        "imageRef": "sha256:2e96e5913fc06e3d26915af3d0f2ca5048cc4b6327e661e80da792cbf8d8d9d4",
        "state": state,
        "createdAt": str(created_ns or int(time.time() * 1e9)),
        "labels": {"io.kubernetes.container.name": name, "io.kubernetes.pod.name": pod,
                   "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": "5a6f1f0e7d3c"},
        "annotations": {"io.kubernetes.container.hash": "1d2e3f4a", "io.kubernetes.container.restartCount": str(restarts),
                        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                        "io.kubernetes.container.terminationMessagePolicy": "File",
                        "io.kubernetes.pod.terminationGracePeriod": "30"},
    }


def test_crictl_containers_are_filtered_by_pod_namespace_and_state():
    listed = {"containers": [
        crictl_container(container_id="aaaa", restarts=2),
        crictl_container(container_id="bbbb", state="CONTAINER_EXITED"),
        crictl_container(container_id="cccc", pod="etcdbackup-7c9f"),
        crictl_container(container_id="dddd", namespace="default", pod="etcd-cp1"),
        crictl_container(container_id="eeee", name="etcd-sidecar"),
    ]}
    calls = []

    def run_command(argv):
        calls.append(argv)
        return 0, json.dumps(listed), ""

    watcher = PodWatcher([manifest()], run_command, crictl="/usr/bin/crictl")
    found = watcher.containers()
    assert [c["id"][:4] for c in found] == ["aaaa"]
    assert found[0]["restarts"] == 2 and found[0]["pod"] == "etcd-cp1"
    assert calls == [["/usr/bin/crictl", "ps", "-o", "json", "--name", "^etcd$"]]


@pytest.mark.parametrize("answer", [(1, "", "connect: no such file or directory"), (0, "CONTAINER  IMAGE", "")])
def test_crictl_failure_falls_back_to_the_process_table(answer):
    watcher = PodWatcher([manifest()], lambda argv: answer, crictl="/usr/bin/crictl", proc_root="/nonexistent")
    seen = watcher.observe()
    assert seen["runtime"] == PROCESS_TABLE and watcher.runtime_error
    assert watcher.runtime == PROCESS_TABLE


def test_without_crictl_and_without_a_command_there_is_nothing_to_ask():
    text = KUBEADM[:KUBEADM.index("  - command:\n")] + "  - image: registry.k8s.io/etcd:3.5.16-0\n" + \
        KUBEADM[KUBEADM.index("    imagePullPolicy:"):]
    with pytest.raises(RuntimeUnavailable, match="no command"):
        PodWatcher([manifest(text)], None, crictl=None).observe()


@pytest.fixture
def fake_etcd(tmp_path):
    """Start processes whose argv[0] is .../etcd (a symlink to Python), with the given flags."""
    link = tmp_path / "bin" / "etcd"
    link.parent.mkdir()
    os.symlink(sys.executable, str(link))
    started = []

    def start(*flags):
        proc = subprocess.Popen([str(link), "-c", "import time; time.sleep(60)"] + list(flags))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_process_table_finds_the_member_by_name_and_data_dir(fake_etcd, tmp_path):
    data_dir = str(tmp_path / "data")
    text = KUBEADM.replace("--name=cp1", "--name=unit-%d" % os.getpid()).replace("--data-dir=/var/lib/etcd", "--data-dir=" + data_dir)
    m = manifest(text)
    mine = fake_etcd("--name=unit-%d" % os.getpid(), "--data-dir=" + data_dir)
    fake_etcd("--name=unit-%d" % os.getpid(), "--data-dir=/elsewhere")  # a temporary etcd on another data dir
    fake_etcd("--name=other", "--data-dir=" + data_dir)
    time.sleep(0.3)
    watcher = PodWatcher([m], None, crictl=None)
    found = watcher.processes()
    assert [p["pid"] for p in found] == [mine.pid]
    assert abs(found[0]["started"] - time.time()) < 5


class ScriptedWatcher(object):
    """Answers observe() from a list of (containers, processes); the last answer repeats."""

    def __init__(self, answers, runtime=CRICTL_RUNTIME):
        self.answers = list(answers)
        self.runtime = runtime

    def observe(self):
        containers, processes = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return {"runtime": self.runtime, "containers": containers, "processes": processes}


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def container(cid, created=1000.0, restarts=0):
    return {"id": cid, "created_ns": int(created * 1e9), "restarts": restarts, "pod": "etcd-cp1"}


def wait(watcher, state, timeout=10, settle=3, since=None):
    clock = Clock()
    ok, details = wait_for_pod(watcher, state, timeout, settle=settle, since=since, clock=clock.time, sleep=clock.sleep)
    return ok, details, clock.now - 1000.0


def test_stopped_when_neither_crictl_nor_processes_show_it():
    ok, details, took = wait(ScriptedWatcher([([container("a")], [{"pid": 7, "started": 1.0}]),
                                              ([], [{"pid": 7, "started": 1.0}]), ([], [])]), "stopped")
    assert ok and took == 2
    assert details == {"runtime": CRICTL_RUNTIME, "container_ids": [], "pids": [], "waited": 2.0}


def test_stopped_times_out_naming_what_still_runs():
    ok, details, took = wait(ScriptedWatcher([([], [{"pid": 7, "started": 1.0}])]), "stopped", timeout=5)
    assert not ok and took == 5
    assert details["pids"] == [7] and "pid 7" in details["reason"]


def test_running_needs_the_settle_time():
    ok, details, took = wait(ScriptedWatcher([([], []), ([container("a", restarts=1)], [])]), "running", settle=3)
    assert ok and took == 4
    assert details["container_ids"] == ["a"] and details["restarts"] == 1


def test_a_crash_loop_is_not_running():
    answers = [([container(c)], []) for c in "abcdefghijklmnop"]
    ok, details, _took = wait(ScriptedWatcher(answers), "running", timeout=10, settle=3)
    assert not ok and "crash loop" in details["reason"]


def test_running_after_a_change_ignores_the_container_from_before():
    answers = [([container("old", created=900.0)], [])] * 3 + [([container("new", created=1003.0)], [])]
    ok, details, took = wait(ScriptedWatcher(answers), "running", settle=2, since=1000.0)
    assert ok and details["container_ids"] == ["new"] and took == 5
    ok, details, _took = wait(ScriptedWatcher([([container("old", created=900.0)], [])]), "running", timeout=4, since=1000.0)
    assert not ok and "before the manifest changed" in details["reason"]


def test_running_from_the_process_table():
    answers = [([], []), ([], [{"pid": 41, "started": 1001.0}])]
    ok, details, _took = wait(ScriptedWatcher(answers, runtime=PROCESS_TABLE), "running", settle=1, since=1000.0)
    assert ok and details["pids"] == [41] and details["container_ids"] == [] and details["restarts"] == 0


@pytest.mark.parametrize("spec", [
    # a mount whose name no volume has (a volume without a name), names and paths of the wrong type
    "{containers: [{name: etcd, volumeMounts: [{mountPath: /var/lib/etcd}]}], volumes: [{hostPath: {path: /x}}]}",
    "{containers: [{name: etcd, volumeMounts: [{name: [a], mountPath: /var/lib/etcd}]}], "
    "volumes: [{name: [a], hostPath: {path: /x}}]}",
    "{containers: [{name: etcd, volumeMounts: [{name: d, mountPath: 5}]}], volumes: [{name: d, hostPath: {path: 7}}]}",
    "{containers: [{name: etcd, volumeMounts: 5, image: 7}], volumes: 3}",
    "{containers: [{name: etcd, volumeMounts: {a: b}}], volumes: {name: d}}",
])
def test_volumes_and_mounts_of_the_wrong_shape_are_no_host_path(spec):
    found = StaticPodManifest("kind: Pod\nmetadata: {name: [x], namespace: 3}\nspec: %s\n" % spec)
    assert found.host_path("/var/lib/etcd") is None
    assert found.pod_name is None and found.namespace == "default"
    assert found.image is None and found.image_tag is None and found.etcd_version is None
