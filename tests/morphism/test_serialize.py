"""save_network / load_network: exact round trips and a clear LoadError for every broken file."""
import json
import os
import pickle

import pytest
import torch

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import LoadError, MorphnasError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Identity, PAct
from morphnas.morphism.perturb import perturb
from morphnas.morphism.serialize import SPEC_FILE, VERSION, WEIGHTS_FILE, load_network, save_network
from morphnas.morphism.verify import output_diff


@pytest.fixture
def saved(tmp_path, tiny_resnet):
    net = perturb(tiny_resnet, seed=1)
    return net, save_network(net, tmp_path / "net")


def _same(a: Network, b: Network) -> None:
    assert a.input_shape == b.input_shape
    assert [(e.name, e.src, e.dst, e.layer) for e in a.edges()] == [(e.name, e.src, e.dst, e.layer) for e in b.edges()]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k
    assert a.meta == b.meta


def test_round_trip_is_exact(saved):
    net, path = saved
    assert sorted(os.listdir(path)) == [SPEC_FILE, WEIGHTS_FILE]
    back = load_network(path)
    _same(net, back)
    # Same function bit for bit, in float32 as stored.
    d = output_diff(net, back, dtype=torch.float32, batch=3)
    assert d.max_abs_err == 0.0
    # The spec file path works as well as the directory.
    _same(net, load_network(path / SPEC_FILE))


def test_round_trip_keeps_float64_parallel_edges_and_scaled_identities(tmp_path, tiny_resnet):
    net = perturb(tiny_resnet, 5).to(torch.float64)
    blk = next(b for b in net.meta["blocks"] if b["shortcut"])
    # A TYPE-II shape: the shortcut split into two parallel 0.5 identities, plus a scalar PAct.
    net.remove_edge(blk["shortcut"])
    net.add_edge(blk["in"], blk["sum"], Identity(0.5), blk["shortcut"] + "_a")
    net.add_edge(blk["in"], blk["sum"], Identity(0.5), blk["shortcut"] + "_b")
    net.add_edge("head.flat", "head.act", PAct(32, "tanh", per_channel=False), "act", params={"a": torch.tensor([0.3], dtype=torch.float64)})
    fc = net.edge("fc")
    net.remove_edge("fc")
    net.add_edge("head.act", "output", fc.layer, "fc", params=tiny_resnet.params["fc"])
    net.params["fc"] = {k: v.double() for k, v in net.params["fc"].items()}
    net.meta["note"] = {"nested": [1, 2.5, "x"]}
    back = load_network(save_network(net, tmp_path / "n64"))
    _same(net, back)
    assert back.dtype == torch.float64
    assert len(back.edges_between(blk["in"], blk["sum"])) == 2
    assert output_diff(net, back, dtype=torch.float64).max_abs_err == 0.0


def test_state_dict_reloads_into_a_fresh_compile(saved):
    net, path = saved
    gm = compile_network(load_network(path))
    gm2 = compile_network(net)
    assert gm.state_dict().keys() == gm2.state_dict().keys()
    gm2.load_state_dict(gm.state_dict())  # strict


def test_save_refuses_unrelated_nonempty_dir_and_files(tmp_path, tiny_resnet):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(MorphnasError, match="not empty"):
        save_network(tiny_resnet, tmp_path / "other")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MorphnasError, match="is a file"):
        save_network(tiny_resnet, tmp_path / "afile")
    # Overwriting an existing saved network is fine (and leaves no temporaries).
    p = save_network(tiny_resnet, tmp_path / "n")
    save_network(perturb(tiny_resnet, 2), p)
    assert sorted(os.listdir(p)) == [SPEC_FILE, WEIGHTS_FILE]
    with pytest.raises(MorphnasError, match="JSON-serialisable"):
        bad = tiny_resnet.copy()
        bad.meta["obj"] = object()
        save_network(bad, tmp_path / "m")


def _edit_spec(path, fn):
    spec = json.loads((path / SPEC_FILE).read_text())
    fn(spec)
    (path / SPEC_FILE).write_text(json.dumps(spec))


def test_missing_files(tmp_path, saved):
    _, path = saved
    with pytest.raises(LoadError, match="does not exist"):
        load_network(tmp_path / "nope" / SPEC_FILE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="has no network.json"):
        load_network(tmp_path / "empty")
    os.remove(path / WEIGHTS_FILE)
    with pytest.raises(LoadError, match="weights.pt.*missing"):
        load_network(path)


@pytest.mark.parametrize("text, match", [
    ("{\"format\": \"morphnas-network\", \"vers", r"not valid JSON \(line 1"),
    ("[1, 2]", "not a morphnas network spec"),
    ("{\"format\": \"keras\"}", "not a morphnas network spec"),
    ("\xff\xfe", "not valid JSON|not UTF-8"),
])
def test_corrupt_spec(saved, text, match):
    _, path = saved
    (path / SPEC_FILE).write_text(text, encoding="latin-1")
    with pytest.raises(LoadError, match=match):
        load_network(path)


def test_truncated_spec(saved):
    _, path = saved
    raw = (path / SPEC_FILE).read_bytes()
    (path / SPEC_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LoadError, match="corrupt or truncated"):
        load_network(path)


def test_wrong_version_and_bad_fields(saved):
    _, path = saved
    _edit_spec(path, lambda s: s.update(version=VERSION + 1))
    with pytest.raises(LoadError, match=f"format version {VERSION + 1}"):
        load_network(path)
    _edit_spec(path, lambda s: s.update(version=VERSION))
    _edit_spec(path, lambda s: s["edges"][0]["layer"].update(kind="conv3d"))
    with pytest.raises(LoadError, match="unknown layer kind 'conv3d'; did you mean 'conv2d'"):
        load_network(path)


def test_truncated_weights_rejected_before_unpickling(saved):
    _, path = saved
    raw = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(raw[: len(raw) - 100])
    with pytest.raises(LoadError, match="truncated, corrupt or from another network"):
        load_network(path)


def _rehash(path):
    from morphnas.morphism.serialize import _sha256
    digest = _sha256(path / WEIGHTS_FILE)
    _edit_spec(path, lambda s: s["weights"].update(sha256=digest))


def test_truncated_weights_with_matching_hash_still_a_load_error(saved):
    _, path = saved
    raw = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(raw[: len(raw) // 2])
    _rehash(path)
    with pytest.raises(LoadError, match="cannot read weights file"):
        load_network(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_executed(saved, tmp_path, monkeypatch):
    _, path = saved
    monkeypatch.chdir(tmp_path)
    state = dict(torch.load(path / WEIGHTS_FILE, weights_only=True))
    state["fc.weight"] = _Evil()
    torch.save(state, path / WEIGHTS_FILE)      # a tampered file whose hash the spec now vouches for
    _rehash(path)
    with pytest.raises(LoadError, match="holds objects other than tensors"):
        load_network(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    # A raw (non-zip) pickle is refused too.
    with open(path / WEIGHTS_FILE, "wb") as f:
        pickle.dump(_Evil(), f)
    _rehash(path)
    with pytest.raises(LoadError):
        load_network(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_weights_not_matching_the_spec(saved):
    net, path = saved
    state = dict(torch.load(path / WEIGHTS_FILE, weights_only=True))
    state["fc.weight"] = torch.zeros(3, 3)
    torch.save(state, path / WEIGHTS_FILE)
    _rehash(path)
    with pytest.raises(LoadError, match=r"'fc.weight' has shape \(3, 3\) but the layer of edge 'fc' needs \(10, 32\)"):
        load_network(path)
    del state["fc.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path / WEIGHTS_FILE)
    _rehash(path)
    with pytest.raises(LoadError, match=r"missing tensors \['fc.weight'\], unexpected \['extra.weight'\]"):
        load_network(path)
    torch.save([1, 2], path / WEIGHTS_FILE)
    _rehash(path)
    with pytest.raises(LoadError, match="dict of name -> tensor"):
        load_network(path)


def test_weights_of_the_wrong_dtype(saved):
    _, path = saved
    state = {k: (v.double() if v.is_floating_point() else v)
             for k, v in torch.load(path / WEIGHTS_FILE, weights_only=True).items()}
    torch.save(state, path / WEIGHTS_FILE)
    _rehash(path)
    with pytest.raises(LoadError, match="is torch.float64, the spec says float32"):
        load_network(path)
