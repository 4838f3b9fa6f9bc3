"""optuna-dashboard on a run: its API lists the study, trials, user attributes and artifacts."""
from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest
from _fake_run import MEMBERS, make_fake_run
from _wsgi import call

from morphnas.search.cli import main
from morphnas.search.study.dashboard import dashboard_app, dashboard_server


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("runs"))


def t_note(trial: dict) -> str:
    return trial["note"]["body"]


def test_api_lists_study_trials_user_attrs_and_artifacts(fake):
    run, lb, results = fake
    app = dashboard_app(run)
    status, _, body = call(app, "/api/meta")
    assert status.startswith("200") and json.loads(body)["artifact_is_available"] is True

    status, _, body = call(app, "/api/studies")
    studies = json.loads(body)["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in studies] == [("fake", ["maximize"])]
    sid = studies[0]["study_id"]

    detail = json.loads(call(app, f"/api/studies/{sid}")[2])
    trials = detail["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
    assert [t["state"] for t in trials] == ["Complete", "Complete", "Complete", "Fail", "Complete"]
    attrs = {t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]} for t in trials}
    for i, (mid, parent, *_rest) in enumerate(MEMBERS):
        assert attrs[i]["member_id"] == mid and attrs[i]["parent_id"] == (parent or "null")
        done = results[i].state == "COMPLETE"   # a failed member's size is unknown: null, not 0
        assert attrs[i]["params"] == (str(results[i].params) if done else "null")
        assert attrs[i]["flops"] == (str(results[i].flops) if done else "null")
        assert "actions" not in attrs[i] and "extra" not in attrs[i]   # raw JSON: record_<m>.json
        assert t_note(trials[i]).startswith(f"## {mid} (trial {i})")     # the page opens with the member
    assert attrs[3]["fail_reason"] == "worker raised RuntimeError: loss is NaN"
    assert [p["name"] for p in trials[4]["params"]] == ["first_op", "lineage_depth", "num_morphs", "op", "position",
                                                        "stage"]
    # params every trial has, so importance and the default slice plot compare all trials
    assert [p["name"] for p in detail["intersection_search_space"]] == ["first_op", "lineage_depth", "num_morphs"]
    assert trials[4]["intermediate_values"] == [{"step": 1, "value": 0.70}, {"step": 2, "value": 0.75}]
    assert detail["best_trials"][0]["number"] == 4
    assert sorted(a["filename"] for a in detail["artifacts"]) == ["lineage.png", "pareto.png"]

    # each finished trial shows its architecture drawing, and the dashboard serves the bytes
    for t in trials:
        names = sorted(a["filename"] for a in t["artifacts"])
        mid = MEMBERS[t['number']][0]
        assert names == ([] if t["state"] == "Fail" else [f"arch_{mid}.png"]) + [f"record_{mid}.json"]
    art = next(a for a in trials[1]["artifacts"] if a["filename"] == "arch_m1.png")
    status, headers, png = call(app, f"/artifacts/{sid}/{trials[1]['trial_id']}/{art['artifact_id']}")
    assert status.startswith("200") and headers["Content-Type"] == "image/png"
    assert png == (run.plots / "arch_m1.png").read_bytes()
    lineage = next(a for a in detail["artifacts"] if a["filename"] == "lineage.png")
    assert call(app, f"/artifacts/{sid}/{lineage['artifact_id']}")[2] == (run.plots / "lineage.png").read_bytes()

    status, _, page = call(app, "/dashboard")
    assert status.startswith("200") and b"<html" in page.lower()


def test_served_over_http_on_loopback(fake):
    run, _, _ = fake
    server = dashboard_server(run, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.server_address[0] == "127.0.0.1"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        with opener.open(f"http://127.0.0.1:{server.server_port}/api/studies", timeout=30) as r:
            assert [s["study_name"] for s in json.loads(r.read())["study_summaries"]] == ["fake"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("what,msg", [
    ("missing", "does not exist"),
    ("empty", "is not a morphnas run directory"),
    ("nostudy", "the run has no study yet"),
])
def test_dashboard_cli_errors(tmp_path, capsys, what, msg):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nostudy").mkdir()
    (tmp_path / "nostudy" / "config.yaml").write_text("name: x\n")
    assert main(["dashboard", str(tmp_path / what), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err


def test_dashboard_cli_port_in_use(fake, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["dashboard", str(fake[0].root), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "pick another --port" in err


def test_the_dashboard_is_read_only_unless_notes_are_allowed(tmp_path):
    """optuna-dashboard's API can delete a study; the run's dashboard refuses every write (issue 23)."""
    run, lb, _ = make_fake_run(tmp_path)
    app = dashboard_app(run)
    sid = json.loads(call(app, "/api/studies")[2])["study_summaries"][0]["study_id"]
    tid = lb.trial_id("m1")
    writes = [("DELETE", f"/api/studies/{sid}"), ("POST", f"/api/studies/{sid}/rename"), ("POST", "/api/studies"),
              ("POST", f"/api/trials/{tid}/tell"), ("POST", f"/api/trials/{tid}/user-attrs"),
              ("PUT", f"/api/studies/{sid}/note"), ("PUT", f"/api/studies/{sid}/{tid}/note")]
    for method, path in writes:
        status, _, body = call(app, path, method, b'{"name": "x", "body": "x", "version": 1}')
        assert status.startswith("403"), (method, path, status)
        assert "read-only" in json.loads(body)["reason"]
    studies = json.loads(call(app, "/api/studies")[2])["study_summaries"]
    assert [s["study_name"] for s in studies] == ["fake"], "nothing was deleted or added"
    assert call(app, f"/api/studies/{sid}")[0].startswith("200")

    notes = dashboard_app(run, allow_notes=True)
    old = json.loads(call(notes, f"/api/studies/{sid}")[2])["note"]
    status, _, _ = call(notes, f"/api/studies/{sid}/note", "PUT",
                        json.dumps({"version": old["version"] + 1, "body": "my note"}).encode())
    assert status.startswith("204") or status.startswith("200"), status
    assert json.loads(call(notes, f"/api/studies/{sid}")[2])["note"]["body"] == "my note"
    assert call(notes, f"/api/studies/{sid}", "DELETE")[0].startswith("403"), "only notes become writable"
