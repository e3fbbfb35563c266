"""IMP / LIP: exact densities per round, exact rewinding, multi-image sharing, stopping rule, resume."""
import json

import pytest
import torch

import operators as O
from operators.stacked import Stacked
from mri_oes import core, imp, methods
from mri_oes.generators import GeneratorConfig
from mri_oes.masks import Mask

TINY = GeneratorConfig.oes(levels=3, width=0.25)
HW = (32, 32)


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 3, *HW, generator=g)
    A = O.Denoise((3, *HW), noise=O.GaussianNoise(0.1, clip=(0, 1)))
    return img, A, A.measure(img, seed=seed + 10)


def test_should_stop_rule():
    assert imp.should_stop([1.0, 0.9, 1.0, 1.1, 1.2], 3)
    assert not imp.should_stop([1.0, 0.9, 0.8, 0.7, 0.6], 3)
    assert not imp.should_stop([1.0, 1.1, 1.05, 1.2, 1.3], 3)
    assert imp.should_stop([1.0, 1.1], 1) and not imp.should_stop([1.0, 1.1], 2)
    assert not imp.should_stop([1, 2, 3, 4], None)


def test_keep_counts_follow_exact_schedule():
    d = 3_003_184
    for i in range(15):
        assert imp.imp_keep_count(d, i) == round(0.8 ** i * d)
    assert imp.imp_rounds_for(0.044) == 14
    assert imp.imp_rounds_for(0.8 ** 3) == 3


def test_imp_densities_nested_and_saved(tmp_path):
    img, A, y = _problem()
    kw = dict(steps_per_round=6, rounds=3, log_every=3, evaluate=methods.natural_evaluator(img), verbose=False)
    full = imp.run_imp(TINY, HW, 0, [(A, y)], out_dir=tmp_path / "full", **kw)
    masks = full["masks"]
    d = masks[0].n_total
    assert len(masks) == 4
    for i, m in enumerate(masks):
        assert abs(m.n_kept - round(0.8 ** i * d)) <= 1
        if i:
            # nested: IMP only removes weights
            assert all(not (m.keep[k] & ~masks[i - 1].keep[k]).any() for k in m.keep)
    saved = Mask.load(tmp_path / "full" / "round_02.safetensors")
    assert saved.meta["round"] == 2 and "final_loss" in saved.meta and "psnr" in saved.meta["final"]
    assert all(torch.equal(saved.keep[k], masks[2].keep[k]) for k in saved.keep)
    net, z = saved.build(HW)   # rebuilds the exact theta_0 the masks belong to
    ref, _, _ = methods.setup_generator(TINY, HW, 0)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), ref.parameters()))



def test_killed_imp_resumes_to_identical_masks(tmp_path, monkeypatch):
    img, A, y = _problem(1)
    kw = dict(steps_per_round=5, rounds=3, log_every=5, verbose=False)
    full = imp.run_imp(TINY, HW, 7, [(A, y)], out_dir=tmp_path / "a", **kw)

    calls = {"n": 0}
    real = methods.train_generator

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:            # killed during round 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(methods, "train_generator", dying)
    with pytest.raises(KeyboardInterrupt):
        imp.run_imp(TINY, HW, 7, [(A, y)], out_dir=tmp_path / "b", **kw)
    monkeypatch.setattr(methods, "train_generator", real)
    st = json.loads((tmp_path / "b" / "imp_state.json").read_text())
    assert len(st["rounds"]) == 2 and not st["finished"]
    resumed = imp.run_imp(TINY, HW, 7, [(A, y)], out_dir=tmp_path / "b", **kw)
    assert len(resumed["masks"]) == len(full["masks"]) == 4
    for ma, mb in zip(full["masks"], resumed["masks"]):
        assert all(torch.equal(ma.keep[k], mb.keep[k]) for k in ma.keep)
    assert [r["final_loss"] for r in full["rounds"]] == [r["final_loss"] for r in resumed["rounds"]]


def _record_round_starts(monkeypatch):
    """Spy on methods.train_generator: the list gets the weights each IMP round starts from."""
    seen = []
    real = methods.train_generator

    def spy(net, z, *a, **k):
        seen.append({n: p.detach().clone() for n, p in net.named_parameters()})
        return real(net, z, *a, **k)

    monkeypatch.setattr(methods, "train_generator", spy)
    return seen


def test_rewinding_restores_theta0_of_survivors(monkeypatch):
    img, A, y = _problem(2)
    seen = _record_round_starts(monkeypatch)
    imp.run_imp(TINY, HW, 0, [(A, y)], steps_per_round=5, rounds=2, log_every=5, verbose=False)
    theta0, _, _ = methods.setup_generator(TINY, HW, 0)
    for start in seen:   # every round starts from exactly theta_0
        assert all(torch.equal(start[n], p) for n, p in theta0.named_parameters())


def test_rewind_to_step_j(monkeypatch):
    img, A, y = _problem(3)
    real = methods.train_generator
    seen = _record_round_starts(monkeypatch)
    imp.run_imp(TINY, HW, 0, [(A, y)], steps_per_round=6, rounds=2, rewind=2, log_every=6, verbose=False)
    # the weights at step 2 of a dense run from theta_0
    net, z, _ = methods.setup_generator(TINY, HW, 0)
    real(net, z, A, y, steps=2, log_every=1, seed=core.derive_seed(0, "imp-train"))
    for start in seen[1:]:
        assert all(torch.equal(start[n], p) for n, p in net.named_parameters())
    theta0, _, _ = methods.setup_generator(TINY, HW, 0)
    assert not torch.equal(seen[1]["head.weight"], theta0.head.weight)


def test_multi_image_shares_one_network():
    (i1, A1, y1), (i2, A2, y2) = _problem(4), _problem(5)
    net, z, op, y, ev, seeds = imp.build_imp_problem([(A1, y1), (A2, y2)], TINY, HW, 0,
                                                         evaluate=[methods.natural_evaluator(i1),
                                                                   methods.natural_evaluator(i2)])
    assert z.shape[0] == 2 and not torch.equal(z[0], z[1])
    assert isinstance(op, Stacked) and y.numel() == y1.numel() + y2.numel()
    x = op.from_network(net(z))
    assert x.shape == (1, 2, 3, *HW)
    # both images' losses reach the same parameters
    loss = core.data_loss(op(x), y)
    g1 = torch.autograd.grad(core.data_loss(A1(x[:, 0]), y1), [net.head.weight], retain_graph=True)[0]
    g = torch.autograd.grad(loss, [net.head.weight])[0]
    assert g.abs().sum() > 0 and not torch.allclose(g, g1 / 2)
    m = ev(x.detach())
    assert {"psnr", "psnr_0", "psnr_1"} <= set(m)
    res = imp.run_imp(TINY, HW, 0, [(A1, y1), (A2, y2)], steps_per_round=4, rounds=1, log_every=4,
                          verbose=False)
    assert len(res["masks"]) == 2 and res["masks"][1].meta["n_images"] == 2
    shared = imp.run_imp(TINY, HW, 0, [(A1, y1), (A2, y2)], steps_per_round=4, rounds=1, log_every=4,
                             shared_z=True, verbose=False)
    assert shared["masks"][1].meta["shared_z"] is True


def test_multi_image_bn_semantics():
    (i1, A1, y1), (i2, A2, y2) = _problem(4), _problem(5)
    net, z, op, y, _, _ = imp.build_imp_problem([(A1, y1), (A2, y2)], TINY, HW, 0)   # per-image
    ref, _, _ = methods.setup_generator(TINY, HW, 0)
    ref.train()
    out = net(z)
    assert torch.allclose(out[0:1], ref(z[0:1]), atol=1e-6) and torch.allclose(out[1:2], ref(z[1:2]), atol=1e-6)
    # the per-image forward still goes through functional_call masking
    w = {"head.weight": torch.zeros_like(net.head.weight)}
    assert torch.allclose(core.generate(net, z, w), torch.sigmoid(net.head.bias).view(1, -1, 1, 1).expand(2, -1, *HW))
    netb, zb, _, _, _, _ = imp.build_imp_problem([(A1, y1), (A2, y2)], TINY, HW, 0, bn="batch")
    assert not torch.allclose(netb(zb)[0:1], ref(z[0:1]), atol=1e-4)   # pooled statistics


def test_stop_rising_stops_early(monkeypatch):
    img, A, y = _problem(6)
    losses = iter([0.5, 0.4, 0.45, 0.5, 0.6, 0.7])
    real = methods.train_generator

    def fake(*a, **k):
        res = real(*a, **{**k, "steps": 1})
        v = next(losses)
        res.history[-1]["data_loss"] = v
        res.final_metrics["data_loss"] = v
        return res

    monkeypatch.setattr(methods, "train_generator", fake)
    out = imp.run_imp(TINY, HW, 0, [(A, y)], steps_per_round=1, rounds=5, stop_rising=2, verbose=False)
    assert out["stopped_early"] and len(out["rounds"]) == 4 and out["recommended_round"] == 1


def test_oracle_clean_target_is_labelled():
    img, A, y = _problem(7)
    with pytest.warns(UserWarning, match="CLEAN"):
        out = imp.run_imp(TINY, HW, 0, [(A, y)], steps_per_round=2, rounds=1, log_every=2,
                              oracle_clean_target=[img], verbose=False)
    assert out["masks"][1].meta["imp_target"] == "oracle-clean"
