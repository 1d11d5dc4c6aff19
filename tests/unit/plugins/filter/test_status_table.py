from ansible_collections.etcdops.etcd.plugins.filter.status_table import status_table

INFO = {
    "members": [
        {"id": "8e9e05c52164694d", "name": "cp1", "client_urls": ["https://10.0.0.11:2379"], "version": "3.5.35",
         "db_size": 20480, "db_size_in_use": 16384, "is_leader": True, "is_learner": False,
         "raft_term": 2, "raft_index": 9, "raft_applied_index": 9, "errors": []},
        {"id": "91bc3c398fb3c146", "name": "cp2", "client_urls": ["https://10.0.0.12:2379"],
         "error": "connection refused: https://10.0.0.12:2379 (is etcd running on cp2?)"},
    ],
    "alarms": [],
}


def test_one_row_per_member_with_header_and_rule():
    lines = status_table(INFO)
    assert lines[0].split()[:3] == ["NAME", "ID", "ENDPOINT"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("cp1 ") and "20.5 kB" in lines[2] and "true" in lines[2]
    assert lines[3].startswith("cp2 ") and "connection refused" in lines[3]
    assert lines[-1] == "no active alarms"


def test_columns_line_up():
    lines = status_table(INFO)
    assert lines[2].index("8e9e05c52164694d") == lines[0].index("ID")
    assert lines[3].index("91bc3c398fb3c146") == lines[0].index("ID")


def test_alarms_are_listed():
    info = dict(INFO, alarms=[{"member_id": "8e9e05c52164694d", "alarm": "NOSPACE"}])
    assert status_table(info)[-1] == "ALARM NOSPACE on member 8e9e05c52164694d"


def test_empty_cluster_still_renders():
    assert status_table({})[0].startswith("NAME")
