"""The training loop's device settings (search/trial/accel.py) and what they keep on the CPU.

A GPU is not needed: the GPU rules are decided without touching one, and the device code paths
(channels-last, bfloat16 autocast, the deferred divergence check, device-side sums) run on the CPU.
bench/gpu_check.py checks the rest on a GPU.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from _jobs import worker_job

from morphnas.search.config import ConfigError, DataConfig, config_from_dict
from morphnas.search.data.containers import Data, Split, apply_augment, augment_batch, draw_augment
from morphnas.search.data.core import load_data
from morphnas.search.data.task import MetricSums, Task
from morphnas.search.state.records import Job
from morphnas.search.trial import accel as accel_mod
from morphnas.search.trial import train as train_mod
from morphnas.search.trial.accel import COMPILE_MIN_STEPS, Accel, AccelError, resolve_accel
from morphnas.search.trial.train import TrainSpec, make_optimizer, train
from morphnas.search.trial.trainer import BuiltinTrainer, Diverged, EpochContext
from morphnas.search.trial.worker import execute
from morphnas.spaces.registry import create_network


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(dataset="digits", train_limit=400, image_size=16), seed=0)


def _net():
    return create_network("tiny_resnet", num_classes=10, seed=0, width=8, input_size=16, in_channels=1)


def _old_augment(x, kind, gen, pad=4):
    """The augmentation as it was written before the loop moved to the device (the reference)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])
    cols = (dx[:, None] + torch.arange(w)[None, :])
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if kind == "crop_flip":
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


# ------------------------------------------------------------------------------ augmentation
@pytest.mark.parametrize("kind", ["crop", "crop_flip"])
def test_augmentation_equals_the_old_one_for_the_same_draws(kind):
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    new = augment_batch(x, kind, torch.Generator().manual_seed(7))
    old = _old_augment(x, kind, torch.Generator().manual_seed(7))
    assert torch.equal(new, old)
    # and the generator is left where the old code left it (the next batch's draws are the same too)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    augment_batch(x, kind, g1), _old_augment(x, kind, g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_augmentation_draws_cover_every_offset_and_flip_half():
    dx, dy, flip = draw_augment(20_000, "crop_flip", torch.Generator().manual_seed(0))
    assert sorted(dx.unique().tolist()) == list(range(9)) == sorted(dy.unique().tolist())
    assert abs(flip.float().mean().item() - 0.5) < 0.02
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    out = apply_augment(x, torch.tensor([4, 4]), torch.tensor([4, 2]), torch.tensor([0, 1]))
    assert torch.equal(out[0], x[0])                          # offset (4, 4) of pad 4: the image itself
    assert torch.equal(out[1, 0, 2:], x[1, 0, :2].flip(-1))   # shifted down by 2 rows, mirrored
    assert (out[1, 0, :2] == 0).all()                         # the zero padding above


def test_shuffled_batches_are_the_same_for_the_same_seed_and_match_the_old_split():
    g = torch.Generator().manual_seed(3)
    split = Split(torch.randn(100, 3, 8, 8, generator=g), torch.randint(0, 10, (100,), generator=g))
    a = list(split.batches(32, shuffle=True, augment="crop_flip", gen=torch.Generator().manual_seed(5)))
    b = list(split.batches(32, shuffle=True, augment="crop_flip", gen=torch.Generator().manual_seed(5)))
    gen = torch.Generator().manual_seed(5)
    order = torch.randperm(100, generator=gen)
    old = [(_old_augment(split.x[order[i:i + 32]], "crop_flip", gen), split.y[order[i:i + 32]]) for i in range(0, 100, 32)]
    assert len(a) == 4 and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert all(torch.equal(xa, xo) and torch.equal(ya, yo) for (xa, ya), (xo, yo) in zip(a, old))
    plain = list(split.batches(32))
    assert torch.equal(torch.cat([x for x, _ in plain]), split.x) and torch.equal(torch.cat([y for _, y in plain]), split.y)


def test_data_is_copied_to_a_device_once():
    g = torch.Generator().manual_seed(0)
    s = Split(torch.randn(10, 1, 4, 4, generator=g), torch.arange(10))
    data = Data(s, s, s, 10, (1, 4, 4), "none")
    assert data.on("cpu") is data
    moved = data.on("meta")                  # a device without memory: the copy's placement, not its values
    assert moved is data.on("meta"), "the device copy is cached with the data"
    assert moved.train.x.device.type == "meta" and moved.val.y.device.type == "meta"
    assert moved.test is data.test, "the test split stays on the CPU"
    assert data.train.x.device.type == "cpu"


# ------------------------------------------------------------------------------ the rules
def test_auto_keeps_the_cpu_loop_and_picks_the_gpu_settings(monkeypatch):
    assert resolve_accel("cpu", planned_steps=10 ** 9) == Accel()      # fp32, NCHW, eager, checked every step
    assert resolve_accel("cpu", "bf16", True, True).autocast_dtype == torch.bfloat16
    monkeypatch.setattr(accel_mod, "bf16_supported", lambda d: d.type == "cpu" or bf16)
    for bf16, want in ((True, torch.bfloat16), (False, torch.float16)):
        a = resolve_accel("cuda", planned_steps=COMPILE_MIN_STEPS - 1)
        assert (a.autocast_dtype, a.scaler) == (want, want == torch.float16)
        assert a.channels_last and not a.compile and a.sync_every == accel_mod.SYNC_EVERY
    assert resolve_accel("cuda", planned_steps=COMPILE_MIN_STEPS).compile
    assert resolve_accel("cuda", amp=False).autocast_dtype is None
    assert not resolve_accel("cuda", channels_last=True, images=False).channels_last    # tabular data
    assert not resolve_accel("cuda", compile=False, planned_steps=10 ** 9).compile
    assert COMPILE_MIN_STEPS == math.ceil(accel_mod.COMPILE_SECONDS * 1000 / accel_mod.COMPILE_SAVED_MS)


def test_settings_a_device_cannot_honour_are_one_line(monkeypatch):
    with pytest.raises(AccelError, match="fp16 needs a CUDA GPU"):
        resolve_accel("cpu", "fp16")
    monkeypatch.setattr(accel_mod, "bf16_supported", lambda d: False)
    with pytest.raises(AccelError, match="bf16 is not supported"):
        resolve_accel("cuda", "bf16")
    with pytest.raises(AccelError, match="compile must be auto, true or false, got 'yes'"):
        resolve_accel("cpu", compile="yes")


def test_config_settings_are_typed_and_reach_the_job():
    from morphnas.search.trial.jobs import environment
    cfg = config_from_dict({"resources": {"precision": "bf16", "channels_last": True}, "finetune": {"compile": False}})
    env = environment(cfg, cfg.run_dir, 0.0, None)
    assert (env["precision"], env["channels_last"], env["compile"]) == ("bf16", True, False)
    for section, key, bad in (("resources", "precision", "fp8"), ("resources", "channels_last", "maybe"),
                              ("finetune", "compile", "yes")):
        with pytest.raises(ConfigError, match=f"'{section}.{key}': unknown value '{bad}'; choose from"):
            config_from_dict({section: {key: bad}})
    with pytest.raises(ConfigError, match="fp16 needs a GPU, but resources.gpus_per_trial is 0"):
        config_from_dict({"resources": {"precision": "fp16", "gpus_per_trial": 0}})
    old = {k: v for k, v in Job(kind="seed", member_id="m0", member_path="members/m0").to_json().items()
           if k not in ("precision", "channels_last", "compile")}
    assert (Job.from_json(old).precision, Job.from_json(old).compile) == ("auto", "auto")   # jobs saved before


def test_the_cpu_optimizer_is_not_fused():
    opt = make_optimizer(torch.nn.Linear(3, 2), TrainSpec(epochs=1, lr=0.1))
    assert not opt.defaults.get("fused")
    assert not accel_mod.fused_sgd_ok([torch.zeros(2)]) and not accel_mod.fused_sgd_ok([])


# ------------------------------------------------------------------------------ training
def _loss_recorder(monkeypatch):
    seen = []
    real = EpochContext.loss

    def loss(self, out, x, y):
        value = real(self, out, x, y)
        seen.append((value.item(), len(y)))      # what the old loop read every step
        return value
    monkeypatch.setattr(EpochContext, "loss", loss)
    return seen


@pytest.mark.parametrize("sync_every", [1, 4])
def test_the_epoch_loss_read_once_equals_the_per_batch_average(digits, monkeypatch, sync_every):
    seen = _loss_recorder(monkeypatch)
    if sync_every > 1:    # the GPU's deferred check, on the CPU
        monkeypatch.setattr(train_mod, "resolve_accel", lambda *a, **k: Accel(sync_every=sync_every))
    _, reps = train(_net(), digits, TrainSpec(epochs=1, lr=0.05, batch_size=64), seed=1)
    old = sum(v * n for v, n in seen) / sum(n for _, n in seen)
    assert len(seen) == math.ceil(400 / 64)
    assert abs(reps[0].train_loss - old) <= 1e-6 * old


def test_a_nan_loss_still_fails_the_trial_when_checked_every_k_steps(digits, monkeypatch):
    monkeypatch.setattr(train_mod, "resolve_accel", lambda *a, **k: Accel(sync_every=4))
    with pytest.raises(Diverged, match=r"training loss became (nan|infinite) at epoch 1, steps? [\d-]+ "
                                       r"\(checked every 4 steps on cpu; lr .*\); lower the learning rate"):
        train(_net(), digits, TrainSpec(epochs=2, lr=1e6, batch_size=64), seed=0)
    ctx = EpochContext(data=digits, task=Task(), spec=None, device=torch.device("cpu"), generator=torch.Generator(),
                       lr_at=lambda s: 0.1, sync_every=4)
    ctx.watch(torch.tensor(1.0))
    ctx.watch(torch.tensor(float("inf")))       # recorded, not read yet: no wait for the device
    ctx.step = 2
    with pytest.raises(Diverged, match="became infinite at epoch 0, steps 1-2"):
        ctx.flush_checks()
    ctx.flush_checks()                          # read once: nothing left to check


def test_channels_last_and_bf16_on_the_cpu_train_to_the_same_accuracy(digits):
    spec = TrainSpec(epochs=3, lr=0.1, batch_size=32)
    _, base = train(_net(), digits, spec, seed=2)
    fast, reps = train(_net(), digits, spec, seed=2, precision="bf16", channels_last=True)
    again, reps2 = train(_net(), digits, spec, seed=2, precision="bf16", channels_last=True)
    assert [r.val_acc for r in reps] == [r.val_acc for r in reps2], "the same seed gives the same run"
    assert base[-1].val_acc > 0.5 and abs(reps[-1].val_acc - base[-1].val_acc) <= 0.05, (base, reps)
    assert abs(reps[-1].train_loss - base[-1].train_loss) <= 0.05 * base[-1].train_loss
    assert reps[-1].train_loss != base[-1].train_loss, "bf16 autocast must be in effect (fp32 would be identical)"
    w = next(iter(fast.state_dict().values()))
    assert w.dtype == torch.float32 and w.is_contiguous(), "saved weights are float32 in the standard layout"


def test_a_compiled_network_trains_like_the_eager_one(digits, monkeypatch):
    got = []

    class Spy(BuiltinTrainer):
        def train_epoch(self, model, ctx):
            got.append(type(model).__name__)
            return super().train_epoch(model, ctx)
    # the eager backend traces with dynamo like inductor does, without a C++ compile (seconds, not a minute)
    monkeypatch.setattr(train_mod, "_compiled", lambda m: torch.compile(m, backend="eager"))
    spec = TrainSpec(epochs=1, lr=0.05, batch_size=64)
    _, eager = train(_net(), digits, spec, seed=4, compile=False)
    net, comp = train(_net(), digits, spec, seed=4, compile=True, trainer=Spy())
    assert got == ["OptimizedModule"]
    assert comp[0].val_acc == pytest.approx(eager[0].val_acc, abs=0.02)
    assert comp[0].train_loss == pytest.approx(eager[0].train_loss, rel=1e-4)
    assert set(net.state_dict()) == set(_net().state_dict()), "the state keeps the IR's names"


def test_device_sums_give_the_metrics_python_floats_gave():
    out = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(1))
    s = MetricSums(Task())
    s.add(out[:20], y[:20]), s.add(out[20:], y[20:])
    assert s.value() == (out.argmax(1) == y).sum().item() / 50
    reg = MetricSums(Task.of("regression", "mse", "rmse"), (1.0, 2.0))
    reg.add(out[:20, :1], y[:20].float()), reg.add(out[20:, :1], y[20:].float())
    first = float((((out[:20, 0] - y[:20]) * 2) ** 2).sum())
    second = float((((out[20:, 0] - y[20:]) * 2) ** 2).sum())
    assert reg.value() == math.sqrt((first + second) / 50)
    assert MetricSums(Task()).value() == 0.0


def test_the_worker_passes_the_settings_to_the_loop(tmp_path):
    with pytest.raises(AccelError, match="fp16 needs a CUDA GPU"):
        execute(worker_job(tmp_path, "seed", precision="fp16"), lambda m: None)
    res = execute(worker_job(tmp_path, "seed", precision="bf16", channels_last=True), lambda m: None)
    assert res.state == "COMPLETE" and res.values[0] > 0


def test_dataclass_fields_of_the_context_keep_their_protocol():
    names = {f.name for f in dataclasses.fields(EpochContext)}
    assert {"data", "task", "spec", "device", "generator", "lr_at", "teacher", "amp", "optimizer", "scaler",
            "epoch", "step", "batches_seen", "examples_seen", "max_steps", "extra"} <= names
