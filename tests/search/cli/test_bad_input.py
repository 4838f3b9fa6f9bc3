"""Bad input never leaves a trace: exit code 2, one line on stderr, no traceback, files unchanged.

Two corpora. ``search`` configs are checked before a run directory exists (search/run/preflight.py),
so the whole working folder, ``runs/`` included, must be byte-for-byte what it was. The other
commands (describe, new, morph, verify, export, leaderboard, resume) must refuse impossible paths,
huge or non-finite values, corrupt files and writes into a run in one line, changing nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from morphnas.search.cli import main

BASE = """\
name: t
seed: {network: tiny_resnet, epochs: 1}
data: {dataset: digits, train_limit: 64}
actions: {ops: {deepen: {}, widen: {}}}
budget: {trials: 1}
"""


from _checks import assert_one_line, snapshot  # noqa: E402,F401


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder with ``runs/README.md``, an existing run, a symlink out, and a fake Driver
    that fails the test if preflight ever lets a bad config through to Ray."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "README.md").write_text("runs live here\n")
    old = tmp_path / "runs" / "old"
    old.mkdir()
    (old / "run_state.json").write_text("{}")
    (tmp_path / "outside").mkdir()
    (tmp_path / "runs" / "escape").symlink_to(tmp_path / "outside")
    (tmp_path / "runs" / "other").mkdir()
    (tmp_path / "runs" / "other" / "notes.txt").write_text("mine\n")
    (tmp_path / "afile").write_text("not a directory\n")
    for split in ("train", "test"):          # an image folder with a text file named .png in it
        for cls in ("a", "b"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
    (tmp_path / "imgs" / "train" / "a" / "x.png").write_text("not a picture\n")
    from morphnas.search.run import driver as loop

    def no_driver(self, *a, **k):
        raise AssertionError("a bad config reached the driver")
    monkeypatch.setattr(loop.Driver, "run", no_driver)
    return tmp_path


# (config text or bytes, --set overrides, fragment of the one-line error)
CONFIGS = [
    (BASE, ["name=.."], "'name'"),
    (BASE, ["name=."], "'name'"),
    (BASE, ["name=a/b"], "'name'"),
    (BASE, ["name=escape"], "inside runs_dir"),
    (BASE, ["name=README.md"], "is a file, not a run"),
    (BASE, ["name=old"], "already exists"),
    (BASE, ["name=other"], "not a morphnas run"),
    ("", [], "is empty; a minimal config"),
    ("# only a comment\n", [], "is empty"),
    (b"\x00\xff\xfe\x01binary", [], "not valid YAML"),
    ("- 1\n- 2\n", [], "top level must be a mapping"),
    (BASE, ["seed.lr=.nan"], "'seed.lr' must be a finite number"),
    (BASE, ["ray.asha=true", "ray.reduction_factor=0"], "'ray.reduction_factor' must be >= 2"),
    (BASE, ["random_seed=-1"], "'random_seed' must be >= 0"),
    (BASE, ["random_seed=99999999999999999999"], "'random_seed'"),
    (BASE, ["data.image_size=-5"], "'data.image_size' must be >= 1"),
    (BASE, ["ray.num_cpus=-1"], "'ray.num_cpus' must be >= 1"),
    (BASE, ["verify.tolerance=.nan"], "'verify.tolerance' must be a finite number"),
    (BASE, ["data.train_limit=0"], "'data.train_limit' must be >= 1"),
    (BASE, ["resources.gpus_per_trial=-1"], "'resources.gpus_per_trial' must be >= 0"),
    (BASE, ["actions.ops={deepn: {}}"], "unknown morph op 'deepn'"),
    (BASE, ["actions.ops={widen: {factor: [.inf]}}"], "finite"),
    (BASE, ["actions.ops={deepen: {k1: [99999]}}"], "k1"),
    (BASE, ["storage=postgresql://u@127.0.0.1:1/x"], "config 'storage': cannot open"),
    (BASE, ["storage=sqlite:///{w}/afile"], "is not a SQLite database"),
    (BASE, ["storage=sqlite:///{w}/afile/sub/study.db"], "config 'storage'"),
    (BASE, ["storage=sqlite:///{w}/missing/study.db"], "does not exist"),
    (BASE, ["storage='sqlite:///:memory:'"], "config 'storage'"),
    (BASE, ["storage=journal:///proc/morphnas/x.log"], "config 'storage'"),
    (BASE, ["seed.network=resnt20"], "did you mean 'resnet20'"),
    (BASE, ["seed.network=resnet20"], "takes input (3, 8, 8)"),
    (BASE, ["seed.checkpoint=/nonexistent/net"], "config 'seed'"),
    (BASE, ["runs_dir=/proc/morphnas_runs"], "config 'runs_dir'"),
    (BASE, ["runs_dir=afile"], "is a file"),
    (BASE, ["runs_dir=afile/runs"], "config 'runs_dir'"),
    (BASE, ["budget.trials=null", "budget.wall_time=null"], "budget.trials, budget.flops and/or budget.wall_time"),
    (BASE, ["budjet.trials=3"], "did you mean 'budget'"),
    # issue 23: accepted before, meaning nothing (or the wrong thing)
    (BASE + "name: t2\n", [], "line 6: key 'name' appears twice in the same mapping (first on line 1)"),
    (BASE + "budget: {trials: 99999}\n", [], "key 'budget' appears twice"),
    (BASE.replace("deepen: {}", "deepen: {}, deepen: {}"), [], "key 'deepen' appears twice"),
    ("name: t\nseed: " + "[" * 20000 + "]" * 20000 + "\n", [], "nested more than 64 levels deep"),
    (BASE, ["name=" + "n" * 300], "is 300 characters; a run name has at most 100"),
    (BASE, ["strategy={name: evolution, population_size: 2, sample_size: 50}"],
     "'strategy.sample_size': 50 is more than population_size 2"),
    (BASE, ["strategy={name: lemonade, candidates: 2, accept: 10}"], "'strategy.accept': 10 is more than candidates 2"),
    (BASE, ["finetune.epochs=0"], "config 'finetune.epochs': 0 would record every child untrained"),
    (BASE, ["actions.ops={widen: {where: {stages: [99]}}}"], "config 'actions': no child can be made from the seed"),
    (BASE, ["storage=sqlite://"], "is an in-memory SQLite database"),
    (BASE, ["storage=sqlite:///"], "config 'storage'"),
    (BASE, ["data={dataset: image_folder, root: {w}/imgs}"], "x.png' cannot be read as an image"),
]


def test_corpus_is_large_enough():
    assert len(CONFIGS) >= 25


@pytest.mark.parametrize("text, overrides, fragment", CONFIGS, ids=[f"{i}" for i in range(len(CONFIGS))])
def test_bad_search_config_leaves_no_trace(workdir, capsys, text, overrides, fragment):
    cfg = workdir / "c.yaml"
    (cfg.write_bytes if isinstance(text, bytes) else cfg.write_text)(text)
    before = snapshot(workdir)
    rc = main(["search", str(cfg), *sum((["--set", o.replace("{w}", str(workdir))] for o in overrides), [])])
    err = capsys.readouterr().err
    assert_one_line(rc, err, fragment)
    assert snapshot(workdir) == before


# ----------------------------------------------------------------------------- other commands
@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A saved network, one with a cycle in its graph, a binary module file, a fake run (shared:
    every test asserts that it changed nothing)."""
    tmp_path = tmp_path_factory.mktemp("nets")
    net = tmp_path / "net"
    assert main(["new", "tiny_resnet", "-o", str(net)]) == 0
    cyc = tmp_path / "cyc"
    assert main(["new", "tiny_resnet", "-o", str(cyc)]) == 0
    spec = json.loads((cyc / "network.json").read_text())
    spec["edges"][0]["src"] = spec["edges"][1]["dst"]          # input of the first edge <- its own output
    (cyc / "network.json").write_text(json.dumps(spec))
    (tmp_path / "bin.yaml").write_bytes(b"\x00\xff\xfe\x01")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "pic.png").write_bytes(b"not really a picture")
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from _fake_run import make_fake_run
    make_fake_run(tmp_path, "fake")
    import os
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "network.json").symlink_to("/dev/zero")
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "network.json")
    os.mkfifo(tmp_path / "fifo.yaml")
    zw = tmp_path / "zeroweights"
    assert main(["new", "tiny_resnet", "-o", str(zw)]) == 0
    (zw / "weights.pt").unlink()
    (zw / "weights.pt").symlink_to("/dev/zero")
    (tmp_path / "k2001.yaml").write_text("edges: [{from: s, to: t, kernel: 2001}]\n")
    (tmp_path / "wide.yaml").write_text("blobs: {a: {width: 100000000}}\n"
                                        "edges: [{from: s, to: a, kernel: 3}, {from: a, to: t, kernel: 1}]\n")
    chain = [{"from": "s" if i == 0 else f"b{i}", "to": "t" if i == 399 else f"b{i + 1}", "kernel": 1}
             for i in range(400)]
    (tmp_path / "chain.yaml").write_text(json.dumps({"edges": chain}))
    (tmp_path / "dup.yaml").write_text("edges:\n  - {from: s, to: t, kernel: 3, kernel: 5}\n")
    return tmp_path


CLI = [
    (["describe", "{t}/cyc"], "cycle"),
    (["morph", "{t}/cyc", "--op", "widen", "-o", "{t}/out"], "cycle"),
    (["verify", "{t}/net", "{t}/cyc"], "cycle"),
    (["new", "tiny_resnet", "-o", "/proc/morphnas/x"], "-o"),
    (["new", "tiny_resnet", "-o", "{t}/afile/x"], "is a file"),
    (["new", "tiny_resnet", "-o", "{t}/net"], "already exists; pass --force"),
    (["morph", "{t}/net", "--op", "widen", "-o", "{t}/net"], "already exists; pass --force"),
    (["morph", "{t}/net", "--op", "widen", "-o", "/proc/morphnas/x"], "-o"),
    (["morph", "{t}/net", "--op", "widen", "--param", "factor=inf", "-o", "{t}/o"], "finite"),
    (["morph", "{t}/net", "--op", "widen", "--param", "factor=1e9", "-o", "{t}/o"], "factor"),
    (["morph", "{t}/net", "--op", "deepen", "--param", "k1=99999", "-o", "{t}/o"], "k1"),
    (["morph", "{t}/net", "--op", "module", "--module", "{t}/bin.yaml", "-o", "{t}/o"], "module"),
    (["describe", "tiny_resnet", "--draw", "/nonexistent/dir/x.png"], "does not exist"),
    (["describe", "tiny_resnet", "--draw", "/proc/morphnas/x.png"], "--draw"),
    (["describe", "tiny_resnet", "--draw", "{t}/afile/x.png"], "is a file"),
    (["describe", "tiny_resnet", "--draw", "{t}/pic.png"], "already exists; pass --force"),
    (["describe", "tiny_resnet", "--draw", "{t}/fake/plots/x.png"], "inside the run"),
    (["describe", "resnet20", "--classes", "99999999999"], "--classes must be at most"),
    (["new", "tiny_resnet", "-o", "{t}/o", "--seed", str(2**64)], "--seed must fit in 64 bits"),
    (["verify", "{t}/net", "{t}/net", "--batch", "100000000"], "--batch must be at most"),
    (["verify", "{t}/net", "{t}/net", "--seed", str(-2**70)], "--seed must fit in 64 bits"),
    (["verify", "{t}/net", "{t}/net", "--tol", "-1"], "--tol must be positive"),
    (["verify", "{t}/net", "{t}/net", "--tol", "nan"], "--tol must be positive"),
    (["export", "{t}/fake", "-o", "{t}/fake/members/m1"], "inside the run"),
    (["export", "{t}/fake", "-o", "{t}/fake/new"], "inside the run"),
    (["export", "{t}/fake", "--member", "m9", "-o", "{t}/e"], "--member 'm9': no such member"),
    (["export", "{t}/fake", "-o", "{t}/net"], "already exists; pass --force"),
    (["leaderboard", "{t}/fake", "--member", "m9"], "no such member"),
    # issue 23: files that hang or exhaust memory, refused before reading
    (["describe", "{t}/zero"], "is a device; only regular files are read"),
    (["describe", "{t}/fifo"], "is a FIFO; only regular files are read"),
    (["describe", "{t}/zeroweights"], "is a device; only regular files are read"),
    (["morph", "{t}/net", "--op", "module", "--module", "{t}/fifo.yaml", "-o", "{t}/o"], "is a FIFO"),
    (["morph", "{t}/net", "--op", "module", "--module", "{t}/k2001.yaml", "-o", "{t}/o"], "kernel 2001 is larger than 31"),
    (["morph", "{t}/net", "--op", "module", "--module", "{t}/wide.yaml", "-o", "{t}/o"], "more than 16,384 channels"),
    (["morph", "{t}/net", "--op", "module", "--module", "{t}/chain.yaml", "-o", "{t}/o"], "400 edges, more than 64"),
    (["morph", "{t}/net", "--op", "module", "--module", "{t}/dup.yaml", "-o", "{t}/o"], "key 'kernel' appears twice"),
    (["search", "{t}/fifo.yaml"], "is a FIFO"),
]


@pytest.mark.parametrize("argv, fragment", CLI, ids=[a[0] + str(i) for i, (a, _) in enumerate(CLI)])
def test_bad_cli_input_leaves_no_trace(nets, capsys, argv, fragment):
    before = snapshot(nets)
    rc = main([a.format(t=nets) for a in argv])
    assert_one_line(rc, capsys.readouterr().err, fragment)
    assert snapshot(nets) == before


@pytest.mark.parametrize("damage, fragment", [
    (lambda run: (run / "study.db").write_bytes(b"garbage, not a database" * 10), "not a SQLite database"),
    (lambda run: _foreign_db(run / "study.db"), "not an Optuna study"),
    (lambda run: (run / "config.yaml").write_bytes(b"\x00\xff\xfe\x01"), "config.yaml"),
])
@pytest.mark.parametrize("command", [["leaderboard"], ["export", "-o", "{t}/e"], ["dashboard", "--port", "0"]])
def test_corrupt_run_files_are_one_line(nets, tmp_path, capsys, damage, fragment, command):
    import shutil
    shutil.copytree(nets / "fake", tmp_path / "fake")
    run = tmp_path / "fake"
    (run / "study.db").unlink()
    damage(run)
    before = snapshot(tmp_path)
    argv = [command[0], str(run), *[a.format(t=tmp_path) for a in command[1:]]]
    assert_one_line(main(argv), capsys.readouterr().err, fragment)
    assert snapshot(tmp_path) == before


def _foreign_db(path: Path) -> None:
    import sqlite3
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.commit()
    con.close()


def test_verify_json_is_strict_even_for_nan(nets, capsys, monkeypatch):
    """A NaN error is ``null`` plus ``"nan": true``: valid JSON that strict parsers accept."""
    from morphnas.morphism import verify
    from morphnas.search.cli import verify_cmd

    real = verify.output_diff

    def nan_diff(*a, **k):
        d = real(*a, **k)
        return type(d)(**{**d.__dict__, "max_abs_err": float("nan"), "rel_err": float("nan")})
    monkeypatch.setattr(verify_cmd, "output_diff", nan_diff)
    rc = main(["verify", str(nets / "net"), str(nets / "net"), "--json", "--tol", "1e-6"])
    out = capsys.readouterr().out

    def strict(token):
        raise ValueError(f"bare {token} in JSON")
    d = json.loads(out, parse_constant=strict)
    assert rc == 1 and d["rel_err"] is None and d["max_abs_err"] is None and d["nan"] is True
    assert d["ok"] is False and set(d["non_finite"]) == {"max_abs_err", "rel_err"}
