"""The run's study file as a killed driver leaves it: a hot SQLite journal must not stop a resume."""
from __future__ import annotations

import subprocess
import sys

import optuna

from morphnas.search.state.rundir import check_study_file

WRITE_AND_DIE = r"""
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA cache_size=5")    # spill dirty pages into the file: the journal is then hot
con.execute("BEGIN IMMEDIATE")
for i in range(2000):          # dirty enough pages that SQLite writes the rollback journal
    con.execute("INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, ?, ?)",
                (f"k{i}", "x" * 200))
os.kill(os.getpid(), signal.SIGKILL)   # like kill -9 of a driver in the middle of a study write
"""


def test_a_study_a_killed_driver_left_mid_write_can_be_checked_and_opened(tmp_path):
    db = tmp_path / "study.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    proc = subprocess.run([sys.executable, "-c", WRITE_AND_DIE, str(db)])
    assert proc.returncode == -9
    journal = tmp_path / "study.db-journal"
    assert journal.is_file() and journal.stat().st_size > 0, "the killed writer leaves a hot journal"
    check_study_file(db)          # rolls the journal back instead of failing read-only
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert study.user_attrs == {}, "the killed transaction is rolled back, nothing half-written"
