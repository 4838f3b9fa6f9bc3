"""The same small search with its study in a PostgreSQL server and in Optuna's journal file.

PostgreSQL: the test makes a throw-away cluster (``initdb`` in a temp dir, ``postgres`` on
127.0.0.1 on a free port, as the ``postgres`` user when run as root, since the server refuses
root), creates a database, and runs ``morphnas search ... --set storage=postgresql://...``. It
skips (saying why) only where the server binaries or psycopg2 are not installed.

Journal: ``storage: journal://study.log`` (relative to the run directory) or ``journal:///abs.log``.

Each run is then read back three ways: Optuna directly, ``morphnas leaderboard`` and the
dashboard's WSGI app.
"""
from __future__ import annotations

import glob
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
import yaml

from morphnas.search.cli import main
from morphnas.search.state.rundir import RunDir, RunDirError, resolve_storage_url, storage_url
from morphnas.search.study.dashboard import dashboard_app
from morphnas.search.study.leaderboard import open_storage

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = {
    "name": "st", "random_seed": 0,
    "seed": {"network": "tiny_resnet", "epochs": 1, "lr": 0.1},
    "data": {"dataset": "digits", "train_limit": 300},
    "actions": {"ops": {"widen": {"factor": [2.0]}, "deepen": {}}, "actions_per_child": 1},
    "strategy": {"name": "hill_climb", "children": 2},
    "budget": {"trials": 2}, "finetune": {"epochs": 1},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
    "final": {"epochs": 0},
}


# ----------------------------------------------------------------------------- PostgreSQL server
def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """``postgresql://postgres@127.0.0.1:<port>/morphnas`` on a fresh server, stopped at the end."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install -e '.[postgres]')")
    initdb, server = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not server:
        pytest.skip("the PostgreSQL server is not installed (Debian: apt-get install postgresql); "
                    "initdb/postgres not found on PATH or in /usr/lib/postgresql/*/bin")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="mnpg", dir="/tmp"))
    if os.geteuid() == 0:   # postgres will not run as root: hand the directory to the postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser (util-linux) to start postgres as the postgres user")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    subprocess.run(as_user + [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
                              "--no-sync"], check=True, capture_output=True, timeout=120)
    port = _free_port()
    # TCP on 127.0.0.1 only; the unix socket goes into the private data dir, not /var/run.
    proc = subprocess.Popen(as_user + [server, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                                       "-c", f"unix_socket_directories={data}", "-c", "fsync=off"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import psycopg2
        deadline = time.time() + 60
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE morphnas")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/morphnas"
    finally:
        os.killpg(proc.pid, 15)          # SIGTERM = "smart" shutdown; then make sure
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- the run and its readers
def call(app, path: str) -> tuple[str, bytes]:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"], _, environ["QUERY_STRING"] = path.partition("?")
    environ["wsgi.input"] = io.BytesIO(b"")
    got: dict = {}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: got.update(status=status)))
    return got["status"], body


def run_and_check(tmp_path: Path, storage: str, capsys) -> RunDir:
    import optuna
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({**CONFIG, "runs_dir": str(tmp_path / "runs")}))
    assert main(["search", str(cfg_path), "--set", f"storage={storage}"]) == 0
    run = RunDir.at(tmp_path / "runs" / "st")
    url = storage_url(run)
    assert not url.startswith("sqlite") and not run.study_db.exists(), "the study must not fall back to SQLite"

    # 1. The study itself: one trial per member, the driver's values and attributes.
    state = json.loads((run.root / "run_state.json").read_text())
    assert state["status"] == "finished"
    study = optuna.load_study(study_name="st", storage=open_storage(url, create=False))
    trials = study.get_trials()
    by_member = {t.user_attrs["member_id"]: t for t in trials}
    assert sorted(by_member) == ["m0", "m1", "m2"]
    for r in state["results"]:
        t = by_member[r["member_id"]]
        assert t.state.name == r["state"] == "COMPLETE"
        assert t.values[0] == pytest.approx(r["values"][0], abs=1e-12)
        assert t.user_attrs["params"] == r["params"] and t.user_attrs["parent_id"] == r["parent_id"]
        assert 0 < t.values[0] <= 1
    assert by_member["m1"].user_attrs["parent_id"] == "m0" and by_member["m2"].user_attrs["parent_id"] == "m0"

    # 2. `morphnas leaderboard` reads the same storage (through the run's config.yaml).
    capsys.readouterr()
    assert main(["leaderboard", str(run.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["member"] for r in rows) == ["m0", "m1", "m2"]
    best = max(state["results"], key=lambda r: r["values"][0])
    assert rows[0]["member"] == best["member_id"] and rows[0]["rank"] == 1

    # 3. The dashboard's app lists the study and its trials.
    app = dashboard_app(run)
    status, body = call(app, "/api/studies")
    assert status.startswith("200")
    studies = json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["st"]
    status, body = call(app, f"/api/studies/{studies[0]['study_id']}")
    detail = json.loads(body)
    assert status.startswith("200") and len(detail["trials"]) == 3
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    return run


def test_search_with_the_study_in_postgresql(postgres_url, tmp_path, capsys):
    run = run_and_check(tmp_path, postgres_url, capsys)
    assert storage_url(run) == postgres_url
    import psycopg2
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="morphnas")
    try:   # really in the server: Optuna's tables hold the 3 trials
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                        "WHERE s.study_name = 'st'")
            n = cur.fetchone()[0]
    finally:
        conn.close()
    assert n == 3


def test_search_with_the_study_in_a_journal_file(tmp_path, capsys):
    run = run_and_check(tmp_path, "journal://study.log", capsys)   # relative: inside the run directory
    log = run.root / "study.log"
    assert storage_url(run) == f"journal://{log}"
    ops = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    # An Optuna journal: one JSON operation per line; the study created once, each member's trial
    # created whole in one operation (op codes: optuna.storages.journal._storage.JournalOperation).
    codes = [o["op_code"] for o in ops]
    assert codes[0] == 0 and codes.count(0) == 1 and codes.count(4) == 3


def test_journal_urls(tmp_path):
    run = RunDir.at(tmp_path / "r")
    assert resolve_storage_url("journal://j/s.log", run) == f"journal://{run.root}/j/s.log"
    assert resolve_storage_url(f"journal://{tmp_path}/abs.log", run) == f"journal://{tmp_path}/abs.log"
    with pytest.raises(RunDirError, match="name the journal file"):
        resolve_storage_url("journal://", run)
    with pytest.raises(RunDirError, match="no study yet"):
        open_storage(f"journal://{tmp_path}/missing.log", create=False)
    assert not (tmp_path / "missing.log").exists(), "a read-only open must not create the journal"
