# Copyright: etcdops.etcd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Render the result of etcd_cluster_info as the table operators know from etcdctl."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

COLUMNS = (
    ("NAME", "name"),
    ("ID", "id"),
    ("ENDPOINT", "endpoint"),
    ("VERSION", "version"),
    ("DB SIZE", "db_size"),
    ("IN USE", "db_size_in_use"),
    ("LEADER", "is_leader"),
    ("LEARNER", "is_learner"),
    ("TERM", "raft_term"),
    ("INDEX", "raft_index"),
    ("APPLIED", "raft_applied_index"),
    ("ERRORS", "errors"),
)


def _human_size(value):
    if not isinstance(value, int):
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1000.0
    return str(value)


def _cell(member, key):
    if key == "endpoint":
        urls = member.get("client_urls") or []
        return urls[0] if urls else ""
    if key in ("db_size", "db_size_in_use"):
        return _human_size(member.get(key))
    if key == "errors":
        errors = list(member.get("errors") or [])
        if member.get("error"):
            errors.insert(0, member["error"])
        return "; ".join(errors)
    value = member.get(key)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def status_table(info):
    """Lines of a table: one row per member, then the cluster's alarms."""
    members = info.get("members") or []
    rows = [[title for title, dummy in COLUMNS]]
    rows.extend([_cell(member, key) for dummy, key in COLUMNS] for member in members)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    alarms = info.get("alarms") or []
    if alarms:
        lines.extend("ALARM %s on member %s" % (alarm.get("alarm"), alarm.get("member_id")) for alarm in alarms)
    else:
        lines.append("no active alarms")
    return lines


class FilterModule(object):
    """etcd status filters."""

    def filters(self):
        return {"status_table": status_table}
