"""crictl stand-in for the etcdops lab: answers from the kubelet stand-in's container records.

Output shapes follow the real crictl (cri-tools) against containerd: `ps -o json` gives
{"containers": [...]} with CRI field names, `inspect` gives {"status": ..., "info": {"pid": ...}}.
As on a real node, `stop` ends the process and the kubelet then restarts the static pod's container;
`rm` forgets an exited container.
"""

import argparse
import json
import os
import re
import signal
import sys
import time

import yaml

# Installed as /usr/local/bin/<name>; the shared module stays in the lab's library directory.
sys.path.insert(0, os.environ.get("ETCDOPS_LAB_LIB", "/usr/local/lib/etcdops-lab"))
import labcri  # noqa: E402

RUNTIME_VERSION = "lab-standin"


def fail(message):
    print('time="%s" level=fatal msg="%s"' % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), message), file=sys.stderr)
    sys.exit(1)


def ago(ns):
    seconds = max(0, time.time() - int(ns) / 1e9)
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return "%d seconds ago" % seconds
    if seconds < 120:
        return "About a minute ago"
    if seconds < 3600:
        return "%d minutes ago" % (seconds // 60)
    if seconds < 7200:
        return "About an hour ago"
    return "%d hours ago" % (seconds // 3600)


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("   ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)).rstrip())


def pods_by_id():
    return {p["id"]: p for p in labcri.pods()}


def container_json(record):
    return {
        "id": record["id"],
        "podSandboxId": record["pod_id"],
        "metadata": {"name": record["name"], "attempt": record["attempt"]},
        "image": {"image": record["image"], "annotations": {}, "userSpecifiedImage": ""},
        "imageRef": record["image"],
        "state": record["state"],
        "createdAt": str(record["created_at"]),
        "labels": record.get("labels", {}),
        "annotations": record.get("annotations", {}),
    }


def pod_json(record):
    return {
        "id": record["id"],
        "metadata": {"name": record["name"], "uid": record["uid"], "namespace": record["namespace"],
                     "attempt": record.get("attempt", 0)},
        "state": record["state"],
        "createdAt": str(record["created_at"]),
        "labels": record.get("labels", {}),
        "annotations": record.get("annotations", {}),
        "runtimeHandler": "",
    }


def emit(document, output):
    if output == "yaml":
        print(yaml.safe_dump(document, sort_keys=False), end="")
    else:
        print(json.dumps(document, indent=2))


def one_container(id_prefix):
    matches = labcri.find(labcri.containers(), id_prefix)
    if not matches:
        fail('rpc error: code = NotFound desc = an error occurred when try to find container "%s": not found' % id_prefix)
    if len(matches) > 1:
        fail('rpc error: code = Unknown desc = container ID prefix "%s" is ambiguous' % id_prefix)
    return matches[0]


def cmd_ps(args):
    pods = pods_by_id()
    records = labcri.containers()
    if not args.all and not args.state:
        records = [r for r in records if r["state"] == labcri.CONTAINER_RUNNING]
    if args.state:
        wanted = "CONTAINER_" + args.state.upper().replace("CONTAINER_", "")
        records = [r for r in records if r["state"] == wanted]
    if args.name:
        records = [r for r in records if re.search(args.name, r["name"])]
    if args.pod:
        records = [r for r in records if r["pod_id"].startswith(args.pod)]
    if args.id:
        records = [r for r in records if r["id"].startswith(args.id)]
    for label in args.label or []:
        key, _sep, value = label.partition("=")
        records = [r for r in records if r.get("labels", {}).get(key) == value]
    records.sort(key=lambda r: r["created_at"], reverse=True)
    if args.latest:
        records = records[:1]
    if args.quiet:
        for record in records:
            print(record["id"])
        return 0
    if args.output in ("json", "yaml"):
        emit({"containers": [container_json(r) for r in records]}, args.output)
        return 0
    rows = []
    for r in records:
        pod = pods.get(r["pod_id"], {})
        rows.append([r["id"][:13], r["image"],
                     ago(r["created_at"]), r["state"].replace("CONTAINER_", ""), r["name"], r["attempt"],
                     r["pod_id"][:13], pod.get("name", ""), pod.get("namespace", "")])
    table(rows, ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE"])
    return 0


def cmd_pods(args):
    records = labcri.pods()
    if args.name:
        records = [r for r in records if re.search(args.name, r["name"])]
    if args.namespace:
        records = [r for r in records if re.search(args.namespace, r["namespace"])]
    if args.state:
        wanted = "SANDBOX_" + args.state.upper().replace("SANDBOX_", "")
        records = [r for r in records if r["state"] == wanted]
    for label in args.label or []:
        key, _sep, value = label.partition("=")
        records = [r for r in records if r.get("labels", {}).get(key) == value]
    records.sort(key=lambda r: r["created_at"], reverse=True)
    if args.latest:
        records = records[:1]
    if args.quiet:
        for record in records:
            print(record["id"])
        return 0
    if args.output in ("json", "yaml"):
        emit({"items": [pod_json(r) for r in records]}, args.output)
        return 0
    rows = [[r["id"][:13], ago(r["created_at"]), r["state"].replace("SANDBOX_", ""), r["name"], r["namespace"],
             r.get("attempt", 0), "(default)"] for r in records]
    table(rows, ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"])
    return 0


def cmd_inspect(args):
    documents = []
    for id_prefix in args.ids:
        r = one_container(id_prefix)
        documents.append({
            "status": {
                "id": r["id"],
                "metadata": {"attempt": r["attempt"], "name": r["name"]},
                "state": r["state"],
                "createdAt": labcri.rfc3339(r["created_at"]),
                "startedAt": labcri.rfc3339(r["started_at"]),
                "finishedAt": labcri.rfc3339(r["finished_at"]),
                "exitCode": r["exit_code"],
                "image": {"annotations": {}, "image": r["image"], "userSpecifiedImage": ""},
                "imageRef": r["image"],
                "reason": r.get("reason", ""),
                "message": r.get("message", ""),
                "labels": r.get("labels", {}),
                "annotations": r.get("annotations", {}),
                "mounts": [],
                "logPath": r["log_path"],
            },
            "info": {
                "sandboxID": r["pod_id"],
                "pid": r["pid"],
                "removing": False,
                "runtimeType": RUNTIME_VERSION,
                "config": {"metadata": {"name": r["name"], "attempt": r["attempt"]},
                           "image": {"image": r["image"]}, "command": r.get("command", [])},
            },
        })
    if args.output == "go-template" and args.template:
        fail("go-template output is not supported by the lab's crictl")
    for document in documents:
        emit(document, "yaml" if args.output == "yaml" else "json")
    return 0


def cmd_inspectp(args):
    for id_prefix in args.ids:
        matches = labcri.find(labcri.pods(), id_prefix)
        if len(matches) != 1:
            fail('rpc error: code = NotFound desc = an error occurred when try to find sandbox "%s": not found' % id_prefix)
        emit({"status": dict(pod_json(matches[0]), network={"ip": ""})}, args.output)
    return 0


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie is gone for our purpose: its parent (the kubelet) just has not reaped it yet.
        try:
            with open("/proc/%d/stat" % pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def stop_record(record, timeout):
    if record["state"] != labcri.CONTAINER_RUNNING or not record.get("pid"):
        return
    pid = record["pid"]
    try:
        os.killpg(pid, signal.SIGTERM if timeout > 0 else signal.SIGKILL)
    except ProcessLookupError:
        return
    if not wait_gone(pid, timeout):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(pid, 10)


def cmd_stop(args):
    for id_prefix in args.ids:
        record = one_container(id_prefix)
        stop_record(record, args.timeout)
        print(record["id"] if len(id_prefix) == 64 else id_prefix)
    return 0


def cmd_rm(args):
    for id_prefix in args.ids:
        record = one_container(id_prefix)
        if record["state"] == labcri.CONTAINER_RUNNING:
            if not args.force:
                fail('rpc error: code = Unknown desc = failed to remove container "%s": container is running, '
                     'stop it before removing or use --force' % id_prefix)
            stop_record(record, 0)
        labcri.remove_container(record["id"])
        print(id_prefix)
    return 0


def cmd_logs(args):
    record = one_container(args.id)
    try:
        with open(record["log_path"], "rb") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        lines = []
    if args.tail is not None and args.tail >= 0:
        lines = lines[-args.tail:] if args.tail else []
    for line in lines:
        parts = line.split(b" ", 3)
        if len(parts) < 4:
            continue
        stamp, stream, _tag, text = parts
        target = sys.stderr.buffer if stream == b"stderr" else sys.stdout.buffer
        target.write((stamp + b" " if args.timestamps else b"") + text + b"\n")
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def cmd_version(args):
    print("Version:  0.1.0\nRuntimeName:  etcdops-lab\nRuntimeVersion:  %s\nRuntimeApiVersion:  v1" % RUNTIME_VERSION)
    return 0


def cmd_info(args):
    emit({"status": {"conditions": [{"type": "RuntimeReady", "status": True}, {"type": "NetworkReady", "status": True}]}}, "json")
    return 0


def parser():
    p = argparse.ArgumentParser(prog="crictl", description="crictl stand-in of the etcdops lab")
    # Accepted for compatibility with scripts that name the runtime endpoint; there is only one runtime.
    p.add_argument("-r", "--runtime-endpoint", default=None)
    p.add_argument("-i", "--image-endpoint", default=None)
    p.add_argument("-t", "--timeout", default=None)
    p.add_argument("-D", "--debug", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("--name")
    ps.add_argument("-p", "--pod")
    ps.add_argument("--id")
    ps.add_argument("-s", "--state")
    ps.add_argument("--label", action="append")
    ps.add_argument("-l", "--latest", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
    ps.add_argument("--no-trunc", action="store_true")
    ps.set_defaults(func=cmd_ps)

    pods = sub.add_parser("pods", help="list pod sandboxes")
    pods.add_argument("--name")
    pods.add_argument("--namespace")
    pods.add_argument("-s", "--state")
    pods.add_argument("--label", action="append")
    pods.add_argument("-l", "--latest", action="store_true")
    pods.add_argument("-q", "--quiet", action="store_true")
    pods.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
    pods.add_argument("--no-trunc", action="store_true")
    pods.set_defaults(func=cmd_pods)

    inspect = sub.add_parser("inspect", help="show a container's status")
    inspect.add_argument("ids", nargs="+")
    inspect.add_argument("-o", "--output", default="json", choices=["json", "yaml", "go-template", "table"])
    inspect.add_argument("--template")
    inspect.set_defaults(func=cmd_inspect)

    inspectp = sub.add_parser("inspectp", help="show a pod sandbox's status")
    inspectp.add_argument("ids", nargs="+")
    inspectp.add_argument("-o", "--output", default="json", choices=["json", "yaml"])
    inspectp.set_defaults(func=cmd_inspectp)

    stop = sub.add_parser("stop", help="stop running containers (the kubelet restarts static pods)")
    stop.add_argument("ids", nargs="+")
    stop.add_argument("--timeout", type=int, default=10)
    stop.set_defaults(func=cmd_stop)

    rm = sub.add_parser("rm", help="remove exited containers")
    rm.add_argument("ids", nargs="+")
    rm.add_argument("-f", "--force", action="store_true")
    rm.set_defaults(func=cmd_rm)

    logs = sub.add_parser("logs", help="print a container's log")
    logs.add_argument("id")
    logs.add_argument("--tail", type=int)
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("-f", "--follow", action="store_true", help="accepted, not followed")
    logs.set_defaults(func=cmd_logs)

    sub.add_parser("version").set_defaults(func=cmd_version)
    sub.add_parser("info").set_defaults(func=cmd_info)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
