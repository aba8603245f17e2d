"""Tests for adaptive.spatial.halting and .sparse: ACT per block, SACT and PSACT on pre-activation ResNets.

References, all written out by hand here: eq. 27 of PSACT (a unit updates only its active
positions, halted ones keep their features), ACT's halting distribution and ponder cost
(``act.halting_distribution`` on one row per position), PACT's thresholded, discrete and
relaxed halting (eqs. 12, 15, 16, 7), stick breaking (eqs. 13, 17, 18), q(z) (eq. 14), the
expected number of units (eq. 23), REINFORCE's log q(z | x) (eq. 25) and the SACT FLOP
convention (targets.md: ResNet-20 = 8.11e7).

The networks are CIFAR ResNets on 16x16 inputs (blocks of 16x16, 8x8 and 4x4 positions)
to stay fast; the FLOP targets use 32x32. Halting units start with zero weights and bias -3
(nothing halts), so most tests give them random weights first.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from adaptive import act, pact
from adaptive.spatial import flops, sparse
from adaptive.spatial import halting as spatial
from adaptive.spatial.halting import AdaptiveResNet, SpatialHalting
from adaptive.spatial.resnet import cifar_resnet

SIZE = 16                                        # image side of the fast tests
TINY = torch.finfo(torch.float32).tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- helpers

def network(method: str, depth: int = 20, size: int = SIZE, seed: int = 0, **halting) -> AdaptiveResNet:
    torch.manual_seed(seed)
    return AdaptiveResNet(cifar_resnet(depth, 10), SpatialHalting(method, **halting), input_size=(3, size, size))


def randomize_batch_norms(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, so evaluation mode means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                module.weight.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.copy_(torch.randn(n, generator=g) * 0.2)


def randomize_halting(model: AdaptiveResNet, seed: int, scale: float = 0.05, bias: float = 0.0) -> None:
    """Random halting weights: h around sigmoid(bias), varying over images and positions."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.halting_units:
            for unit in block:
                if unit.conv is not None:
                    unit.conv.weight.copy_(torch.randn(unit.conv.weight.shape, generator=g) * scale)
                unit.linear.weight.copy_(torch.randn(unit.linear.weight.shape, generator=g) * scale)
                unit.linear.bias.fill_(bias)


def randomized(method: str, seed: int = 0, **halting) -> AdaptiveResNet:
    model = network(method, **halting)
    randomize_batch_norms(model, seed + 1)
    randomize_halting(model, seed + 2)
    return model.eval()


def images(batch: int = 2, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def expand(grid: torch.Tensor, patch: int) -> torch.Tensor:
    return grid.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)


def halting_logits(unit: spatial.HaltingUnit, u: torch.Tensor) -> torch.Tensor:
    """By hand: ``W~ * u + W pool(u) + b`` (SACT) or ``W pool(u) + b`` (ACT), shape (B, H, W)."""
    pooled = u.mean(dim=(2, 3)) @ unit.linear.weight.t() + unit.linear.bias          # (B, 1)
    logits = pooled[:, :, None].expand(-1, u.shape[2], u.shape[3])
    if unit.conv is not None:
        logits = logits + F.conv2d(u, unit.conv.weight, padding=1)[:, 0]
    return logits


def reference_block(units, halting_units, u, decide, patch: int = 1):
    """Eq. 27 by hand: ``u^{l+1} = u^l + f(u^l) * mask^l``; ``decide(h)`` gives mask^l per patch.

    Returns the unit outputs u^1..u^L (halted positions keep their features) and the
    halting probabilities h^1..h^{L-1} of the patches, (B, H/patch, W/patch) each.
    """
    u = units[0](u)
    outputs, hs = [u], []
    for l in range(1, len(units)):
        logits = halting_logits(halting_units[l - 1], u)
        h = torch.sigmoid(F.avg_pool2d(logits[:, None], patch)[:, 0] if patch > 1 else logits)
        hs.append(h)
        mask = expand(decide(h), patch)
        u = u + units[l].residual(u) * mask[:, None]
        outputs.append(u)
    return outputs, hs


def rows(maps: list[torch.Tensor]) -> torch.Tensor:
    """L maps (B, h, w) -> (B h w, L): one row per position."""
    return torch.stack(maps, dim=-1).reshape(-1, len(maps))


def q_by_hand(hs: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 14 on maps: q(z = l) = h^l prod_{i<l} (1 - h^i), h^L = 1; (B, h, w, L)."""
    qs, survive = [], torch.ones_like(hs[0])
    for h in hs + [torch.ones_like(hs[0])]:
        qs.append(h * survive)
        survive = survive * (1 - h)
    return torch.stack(qs, dim=-1)


def constant_on_patches(grid: torch.Tensor, patch: int) -> bool:
    return torch.equal(grid, expand(grid[:, ::patch, ::patch], patch))


# ----------------------------------------------------------------------------- sparse = dense

COMBINATIONS = ([("act", mode, 1) for mode in spatial.EVAL_MODES]
                + [("sact", mode, patch) for mode in spatial.EVAL_MODES for patch in (1, 2)]
                + [("psact", mode, patch) for mode in pact.MODES for patch in (1, 2)])


@pytest.mark.parametrize("method, mode, patch", COMBINATIONS)
def test_sparse_evaluation_equals_dense_logits_flops_and_maps(method, mode, patch, monkeypatch):
    model = randomized(method, patch=patch)
    x = images(batch=3)
    blocks, calls = sparse.block_residual, []

    def counted(*args):
        calls.append(1)
        return blocks(*args)
    monkeypatch.setattr(sparse, "block_residual", counted)
    # maps this small run dense by default (sparse.MIN_SIDE); a break-even of 1 takes the block path wherever it can
    monkeypatch.setattr(spatial, "apply_unit", functools.partial(sparse.apply_unit, break_even=1.0))
    with torch.no_grad():
        dense = model(x, mode=mode, generator=gen(5))
        assert not calls
        skipped = model(x, mode=mode, sparse=True, generator=gen(5))
    units_per_block = [len(block) for block in model.resnet.blocks]
    # halting really happened, or the comparison would show nothing
    assert any(bool((block.units < L).any()) for block, L in zip(dense.blocks, units_per_block))
    # per-position halting leaves maps partly active: those units ran on blocks
    assert bool(calls) == (method != "act" or mode in ("relaxed", "discrete"))
    assert torch.allclose(skipped.logits, dense.logits, atol=1e-5, rtol=0)
    assert torch.equal(skipped.flops, dense.flops)
    for a, b in zip(skipped.blocks, dense.blocks):
        assert torch.equal(a.units, b.units)
        assert torch.allclose(a.ponder, b.ponder, atol=1e-5)


def test_sparse_evaluation_needs_no_grad():
    model = randomized("sact")
    with pytest.raises(ValueError, match="sparse"):
        model(images(), sparse=True)


def test_sparse_evaluation_in_training_mode_is_refused():
    """Batch norms in training mode use batch statistics; the block path folds running ones."""
    model = randomized("sact").train()
    with torch.no_grad(), pytest.raises(ValueError, match="sparse=True.*model.eval"):
        model(images(batch=3), mode="act", sparse=True)


# ----------------------------------------------------------------------------- block outputs by hand

def _block_input(model: AdaptiveResNet, k: int, x: torch.Tensor) -> torch.Tensor:
    """The input of block k when every earlier block runs all its units (the plain network)."""
    u = model.resnet.stem(x)
    for block in model.resnet.blocks[:k]:
        for unit in block:
            u = unit(u)
    return u


def set_first_halting_logits(model: AdaptiveResNet, k: int, x: torch.Tensor, targets) -> None:
    """ACT's first halting unit of block k: pooled logits ``targets[0]`` for image 0, ``targets[1]`` for image 1."""
    with torch.no_grad():
        pooled = model.resnet.blocks[k][0](_block_input(model, k, x)).mean(dim=(2, 3))    # (B, C)
        direction = pooled[0] - pooled[1]
        scale = (targets[0] - targets[1]) / direction.dot(direction)
        linear = model.halting_units[k][0].linear
        linear.weight.copy_(scale * direction[None])
        linear.bias.fill_(targets[1] - float(scale * direction.dot(pooled[1])))


@pytest.mark.parametrize("method", ["act", "sact"])
@pytest.mark.parametrize("k", [0, 1])
def test_act_and_sact_block_is_the_act_mixture_per_position(method, k):
    """Output = sum_l p^l u^l with ACT's p per position (per image for ACT), ponder = rho = N + R."""
    model = network(method, eps=0.01)
    randomize_batch_norms(model, 1)
    randomize_halting(model, 2, scale=0.05, bias=0.0)
    model.eval()
    x = images(batch=3)
    if method == "act":                                      # image 0 halts after unit 1, image 1 later
        set_first_halting_logits(model, k, x, (10.0, 1.0))
    else:                                                    # first halting unit: h around 0.88
        with torch.no_grad():
            model.halting_units[k][0].linear.bias.fill_(2.0)
    halting = model.halting
    with torch.no_grad():
        u0 = _block_input(model, k, x)
        units, halting_units = model.resnet.blocks[k], model.halting_units[k]
        result = spatial.run_block(units, halting_units, u0, halting, mode="act")
        seen = []

        def decide(h):                                       # active while sum_{l<=n} h^l < 1 - eps
            seen.append(h)
            return (torch.stack(seen).sum(0) < 1 - halting.eps).float()

        outputs, hs = reference_block(units, halting_units, u0, decide)
        weights, rho, N = act.halting_distribution(rows(hs + [torch.ones_like(hs[0])]), halting.eps)
        B, C, H, W = outputs[0].shape
        weights = weights.view(B, H, W, -1)
        expected = sum(u_l * weights[..., l][:, None] for l, u_l in enumerate(outputs))
    assert len(N.unique()) >= 2                              # positions halt after different units
    remainder = rho - N
    assert bool(((remainder > halting.eps) & (remainder <= 1 + 1e-6)).all()) and bool((remainder < 0.9).any())
    assert torch.allclose(result.output, expected, atol=1e-5, rtol=0)
    assert torch.allclose(result.ponder, rho.view(B, H, W), atol=1e-6)
    assert torch.equal(result.units, N.view(B, H, W))
    assert result.log_q is None
    if method == "act":                                      # one decision per image
        assert torch.equal(result.units, result.units[:, :1, :1].expand_as(result.units))
        assert result.units[:2, 0, 0].tolist() == [1, 2]


@pytest.mark.parametrize("mode", ["thresholded", "discrete"])
@pytest.mark.parametrize("patch", [1, 2])
def test_psact_evaluation_keeps_the_output_of_the_unit_where_each_position_halted(mode, patch):
    model = randomized("psact", seed=3, patch=patch)
    with torch.no_grad():
        u0 = _block_input(model, 0, images(batch=2))
        units, halting_units = model.resnet.blocks[0], model.halting_units[0]
        result = spatial.run_block(units, halting_units, u0, model.halting, mode=mode, generator=gen(7))

        reference_g, state = gen(7), {}

        def decide(h):                                       # eq. 12 / eq. 15, then halted stays halted
            xi = (h > 0.5) if mode == "thresholded" else torch.rand(h.shape, generator=reference_g) < h
            state["active"] = state.get("active", torch.ones_like(h, dtype=torch.bool)) & ~xi
            state["z"] = state.get("z", torch.ones_like(h, dtype=torch.int64)) + state["active"]
            return state["active"].float()

        outputs, hs = reference_block(units, halting_units, u0, decide, patch)
    z = expand(state["z"], patch)                                            # (B, H, W) in 1..L
    stacked = torch.stack(outputs)                                           # (L, B, C, H, W)
    expected = stacked.gather(0, (z - 1)[None, :, None].expand(1, *outputs[0].shape))[0]
    assert len(z.unique()) >= 2
    assert torch.equal(result.units, z)
    assert torch.allclose(result.output, expected, atol=1e-5, rtol=0)
    steps = torch.arange(1, len(units) + 1, dtype=hs[0].dtype)
    assert torch.allclose(result.ponder, expand((q_by_hand(hs) * steps).sum(-1), patch), atol=1e-5)
    assert constant_on_patches(result.units, patch) and constant_on_patches(result.ponder, patch)


def test_psact_relaxed_training_block_is_the_stick_breaking_mixture():
    """Eqs. 16-18 and 27 by hand: xi^l relaxed, a = r [r > delta], output sum_l z^l u^l."""
    temperature, delta = 0.5, 0.2
    model = network("psact", temperature=temperature, delta=delta)
    randomize_batch_norms(model, 1)
    randomize_halting(model, 2)
    model.train()
    u0 = _block_input(model, 0, images(batch=2)).detach()
    units, halting_units = model.resnet.blocks[0], model.halting_units[0]
    result = spatial.run_block(units, halting_units, u0, model.halting, mode="relaxed", generator=gen(3))

    reference_g, xis, masks = gen(3), [], []

    def decide(h):
        uniform = torch.rand(h.shape, generator=reference_g).clamp(TINY, 1 - 1e-7)
        xi = torch.sigmoid((torch.logit(h.clamp(TINY, 1 - 1e-7)) + torch.logit(uniform)) / temperature)
        xis.append(xi)
        survive = torch.stack([1 - x for x in xis]).prod(0)                 # r = prod (1 - xi)
        masks.append(survive * (survive > delta))
        return masks[-1]

    outputs, hs = reference_block(units, halting_units, u0, decide)
    sticks, left = [], torch.ones_like(xis[0])
    for xi in xis + [torch.ones_like(xis[0])]:                             # xi^L = 1
        sticks.append(xi * left)
        left = left * (1 - xi)
    expected = sum(u_l * z[:, None] for u_l, z in zip(outputs, sticks))
    # the cut-off and fractional masks both occur
    assert bool((masks[0] == 0).any()) and bool(((masks[0] > 0) & (masks[0] < 1)).any())
    assert torch.allclose(result.output, expected, atol=1e-5, rtol=0)
    assert torch.equal(result.units, 1 + sum((m > 0).long() for m in masks))
    steps = torch.arange(1, len(units) + 1, dtype=hs[0].dtype)
    assert torch.allclose(result.ponder, (q_by_hand(hs) * steps).sum(-1), atol=1e-5)
    assert result.output.requires_grad


# ----------------------------------------------------------------------------- FLOPs

# ResNet-20 for 10 classes, SACT convention (flops docstring, targets.md: 8.11e7)
RESNET20_FLOPS = 4_718_592 * 17 + 884_736 + 1_280         # 81,102,080
BLOCKS_32 = [(16, 32 * 32), (32, 16 * 16), (64, 8 * 8)]    # (channels, positions) of ResNet-20 at 32x32


def spatial_branch(channels: int, positions: int) -> int:
    return 2 * 9 * channels * positions + 2 * channels


def test_fixed_network_reports_the_plain_flops():
    model = network("fixed", size=32)
    with torch.no_grad():
        out = model(images(batch=2, size=32))
    assert model.plain_flops == RESNET20_FLOPS
    assert float(f"{model.plain_flops:.3g}") == 8.11e7
    assert out.flops.dtype == torch.float64 and out.flops.tolist() == [RESNET20_FLOPS] * 2
    assert torch.equal(out.logits, model.resnet(images(batch=2, size=32)))
    assert out.blocks == [] and out.penalty_per_image.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("method, mode", [("sact", "act"), ("psact", "thresholded"), ("act", "act"),
                                          ("sact", "thresholded")])
def test_flops_with_halting_that_never_fires_add_the_halting_branches(method, mode):
    """Default init: h = sigmoid(-3) everywhere, nobody halts; L - 1 = 2 branches per block."""
    model = network(method, size=32).eval()
    with torch.no_grad():
        out = model(images(batch=2, size=32), mode=mode)
    if method == "act":
        branches = sum(2 * 2 * channels for channels, _ in BLOCKS_32)
    else:
        branches = sum(2 * spatial_branch(channels, positions) for channels, positions in BLOCKS_32)
    assert out.flops.tolist() == [RESNET20_FLOPS + branches] * 2
    assert all(bool((block.units == 3).all()) for block in out.blocks)


@pytest.mark.parametrize("method", ["act", "sact"])
def test_flops_drop_when_a_block_halts_after_its_first_unit(method):
    model = network(method, size=32).eval()
    with torch.no_grad():
        model.halting_units[0][0].linear.bias.fill_(10.0)          # h = 0.99995 >= 1 - eps after unit 1
        out = model(images(batch=2, size=32))
    unit = 2 * 2 * 9 * 32 * 32 * 16 * 16                             # a unit of the first block: two 3x3 convs
    if method == "act":
        branches = 2 * 16 + sum(2 * 2 * channels for channels, _ in BLOCKS_32[1:])
    else:
        branches = spatial_branch(16, 32 * 32) + sum(2 * spatial_branch(c, p) for c, p in BLOCKS_32[1:])
    assert out.flops.tolist() == [RESNET20_FLOPS - 2 * unit + branches] * 2
    assert bool((out.blocks[0].units == 1).all())


@pytest.mark.parametrize("method, mode", [("sact", "act"), ("sact", "thresholded"), ("psact", "discrete")])
def test_flops_count_units_at_active_positions_and_branches_where_computed(method, mode):
    """One image at a time: stem + head + unit 1 of each block, then per l the unit at units >= l."""
    model = randomized(method)
    for i in range(2):
        with torch.no_grad():
            out = model(images(batch=3)[i:i + 1], mode=mode, generator=gen(i))
        expected = model.fixed_flops
        for block, units, result in zip(model.resnet.blocks, model.halting_units, out.blocks):
            channels = units[0].linear.in_features
            for l in range(1, len(block)):
                reached = result.units >= l                                    # computed unit l
                if bool(reached.any()):
                    expected += 2 * 9 * channels * int(reached.sum()) + 2 * channels
                expected += int(flops.unit_flops(block[l], result.units >= l + 1)[0])
        assert out.flops.item() == expected
        assert out.flops.item() < model.plain_flops


def test_an_images_flops_do_not_depend_on_the_rest_of_its_batch():
    model = network("act").eval()
    x = images(batch=2)
    set_first_halting_logits(model, 0, x, (10.0, -10.0))      # image 0 halts after unit 1, image 1 never
    with torch.no_grad():
        both, alone = model(x), model(x[:1])
    assert both.blocks[0].units[:, 0, 0].tolist() == [1, 3]
    assert both.flops[0] == alone.flops[0]


# ----------------------------------------------------------------------------- REINFORCE

@pytest.mark.parametrize("patch", [1, 2])
def test_discrete_log_q_is_the_log_of_q_at_the_sampled_units(patch):
    """log_q = sum over latent variables of log q(z) (eq. 14), q from pact.halting_probabilities."""
    model = randomized("psact", patch=patch, estimator="reinforce")
    logits = {}
    hooks = [unit.register_forward_hook(lambda m, i, o, key=(k, l): logits.__setitem__(key, o.detach()))
             for k, block in enumerate(model.halting_units) for l, unit in enumerate(block)]
    out = model(images(batch=2), mode="discrete", generator=gen(4))          # grad on: every step runs
    for hook in hooks:
        hook.remove()
    for k, result in enumerate(out.blocks):
        L = len(model.resnet.blocks[k])
        hs = [torch.sigmoid(F.avg_pool2d(logits[k, l][:, None], patch)[:, 0]) for l in range(L - 1)]
        z = result.units[:, ::patch, ::patch]                                  # one z per latent variable
        q = pact.halting_probabilities(rows(hs + [torch.ones_like(hs[0])]))   # (B h w, L)
        log_q = q.gather(1, z.reshape(-1, 1) - 1).log().view(z.shape).flatten(1).sum(1)
        assert len(z.unique()) >= 2
        assert result.log_q.shape == (2,)
        assert torch.allclose(result.log_q, log_q, atol=1e-4, rtol=1e-5)


def test_objective_with_a_baseline_adds_the_score_function_term_for_the_halting_units():
    from adaptive.spatial.train import objective

    model = randomized("psact", estimator="reinforce", tau=0.0).train()
    x, y = images(batch=4), torch.tensor([0, 1, 2, 3])
    out = model(x, y, generator=gen(1))                                       # training: discrete samples
    assert all(block.log_q is not None for block in out.blocks)
    assert objective(out, y, None) is out.loss
    halting = list(model.halting_units.parameters())
    # tau = 0 and discrete halting: the loss alone sends nothing to the halting units
    plain_grads = torch.autograd.grad(out.loss, halting, retain_graph=True, allow_unused=True)
    assert all(g is None or not bool(g.any()) for g in plain_grads)
    baseline = -2.0
    loss = objective(out, y, baseline)
    reward = -F.cross_entropy(out.logits, y, reduction="none").detach()
    log_q = sum(block.log_q for block in out.blocks)
    assert torch.allclose(loss, out.loss - ((reward - baseline) * log_q).mean())
    assert not torch.allclose(loss, out.loss)
    grads = torch.autograd.grad(loss, halting)
    assert all(bool(g.any()) and bool(torch.isfinite(g).all()) for g in grads)


def test_reward_baseline_is_an_exponential_moving_average():
    from adaptive.spatial.train import RewardBaseline

    baseline = RewardBaseline(0.9)
    assert baseline.update(1.0) == 1.0                       # the first reward is its own baseline
    assert baseline.update(0.0) == 1.0                       # then the average before this reward
    assert baseline.update(2.0) == pytest.approx(0.9)
    assert baseline.value == pytest.approx(0.9 * 0.9 + 0.1 * 2.0)
    average, rewards = None, [0.5, -1.0, 3.0, 0.25]
    other = RewardBaseline(0.5)
    for reward in rewards:
        used = other.update(reward)
        assert used == pytest.approx(reward if average is None else average)
        average = reward if average is None else 0.5 * average + 0.5 * reward


# ----------------------------------------------------------------------------- training behaviour

@pytest.mark.parametrize("method, estimator", [("act", "relaxed"), ("sact", "relaxed"), ("psact", "relaxed")])
def test_gradients_reach_every_halting_unit_in_training(method, estimator):
    model = network(method, tau=0.01, estimator=estimator)
    randomize_halting(model, 2, scale=0.01, bias=-1.0)
    model.train()
    out = model(images(batch=2), torch.tensor([1, 2]), generator=gen(0))
    assert out.penalty > 0 and torch.allclose(out.loss, out.task_loss + out.penalty)
    grads = torch.autograd.grad(out.loss, list(model.halting_units.parameters()))
    assert all(bool(g.any()) and bool(torch.isfinite(g).all()) for g in grads)
    if method != "act":
        assert any(unit.conv is not None for block in model.halting_units for unit in block)


@pytest.mark.parametrize("method, estimator", [("act", "relaxed"), ("sact", "relaxed"), ("psact", "reinforce")])
def test_training_gives_every_parameter_a_gradient_even_when_everything_halts(method, estimator):
    """Training runs every unit densely (masked), so DistributedDataParallel finds a gradient for
    every parameter at every step even when no position is left after unit 1 of any block."""
    model = network(method, tau=0.01, depth=14, estimator=estimator)
    with torch.no_grad():
        for block in model.halting_units:
            block[0].linear.bias.fill_(10.0)                   # h = 0.99995: everything halts at once
    model.train()
    out = model(images(batch=2), torch.tensor([0, 1]), generator=gen(0))
    assert all(bool((block.units == 1).all()) for block in out.blocks)
    out.loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


def test_penalty_is_tau_times_the_mean_ponder_summed_over_blocks():
    model = randomized("sact", tau=0.05)
    with torch.no_grad():
        out = model(images(batch=2), torch.tensor([0, 1]))
    expected = 0.05 * sum(block.ponder.mean(dim=(1, 2)) for block in out.blocks)
    assert torch.allclose(out.penalty_per_image, expected)
    assert torch.allclose(out.penalty, expected.mean())
    assert torch.allclose(out.task_loss, F.cross_entropy(out.logits, torch.tensor([0, 1])))


def test_default_modes_train_and_evaluate_with_each_methods_rule():
    x = images(batch=2)
    relaxed = randomized("psact")
    reinforce = randomized("psact", estimator="reinforce")
    sact = randomized("sact")
    with torch.no_grad():
        assert torch.equal(relaxed(x).logits, relaxed(x, mode="thresholded").logits)      # eval default
        assert torch.equal(sact(x).logits, sact(x, mode="act").logits)
        relaxed.train(), reinforce.train()
        assert relaxed(x, generator=gen(0)).blocks[0].log_q is None                       # relaxed training
        assert reinforce(x, generator=gen(0)).blocks[0].log_q is not None                 # discrete training
        assert torch.equal(relaxed(x, generator=gen(0)).logits, relaxed(x, mode="relaxed", generator=gen(0)).logits)
    assert SpatialHalting("psact").default_eval_mode == "thresholded"
    assert SpatialHalting("sact").default_eval_mode == "act"
    assert SpatialHalting("psact", eval_mode="discrete").default_eval_mode == "discrete"


def test_patches_share_one_latent_variable():
    model = randomized("psact", patch=2)
    with torch.no_grad():
        out = model(images(batch=2), mode="discrete", generator=gen(2))
    for block in out.blocks:
        assert constant_on_patches(block.units, 2) and constant_on_patches(block.ponder, 2)
    assert any(len(block.units.unique()) >= 2 for block in out.blocks)        # not constant everywhere


@pytest.mark.parametrize("patch, size", [(3, "16x16"), (8, "4x4")])
def test_a_patch_that_does_not_divide_a_block_is_refused(patch, size):
    model = randomized("sact", patch=patch)
    with pytest.raises(ValueError, match=f"patch = {patch} must divide.*{size}"):
        model(images(batch=1))


def test_units_average_over_positions_and_sum_over_blocks():
    model = randomized("sact")
    with torch.no_grad():
        out = model(images(batch=2))
    assert torch.allclose(out.units, sum(b.units.float().mean(dim=(1, 2)) for b in out.blocks))
    assert bool((out.units >= 3).all()) and bool((out.units <= 9).all())
    with pytest.raises(ValueError, match="fixed"):
        network("fixed")(images(batch=1)).units


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("changes, name", [
    (dict(tau=-0.1), "tau"), (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(eps=0.0), "eps"), (dict(eps=1.0), "eps"), (dict(eps=1.5), "eps"), (dict(method="pondernet"), "method"),
    (dict(delta=1.0), "delta"), (dict(patch=0), "patch"), (dict(estimator="gumbel"), "estimator"),
    (dict(method="sact", estimator="reinforce"), "estimator"), (dict(method="act", estimator="reinforce"), "estimator"),
    (dict(method="psact", eval_mode="act"), "eval_mode"), (dict(eval_mode="soft"), "eval_mode")])
def test_bad_halting_settings_name_the_parameter(changes, name):
    with pytest.raises(ValueError, match=name):
        SpatialHalting(**(dict(method="sact") | changes))


@pytest.mark.parametrize("bad", [torch.zeros(2, 1, SIZE, SIZE), torch.zeros(3, SIZE, SIZE),
                                 torch.zeros(1, 4, SIZE, SIZE), [[0.0]]])
def test_wrong_images_are_refused(bad):
    model = randomized("sact")
    with pytest.raises(ValueError, match="images"):
        model(bad)


def test_bad_modes_and_parts_are_refused():
    psact, sact = randomized("psact"), randomized("sact")
    with pytest.raises(ValueError, match="mode"):
        sact(images(), mode="soft")
    with pytest.raises(ValueError, match="mode='act'"):
        psact(images(), mode="act")
    with pytest.raises(ValueError, match="resnet"):
        AdaptiveResNet(torch.nn.Linear(2, 2), SpatialHalting("sact"))
    with pytest.raises(ValueError, match="halting"):
        AdaptiveResNet(cifar_resnet(8), "sact")
    with pytest.raises(ValueError, match="channels"):
        spatial.HaltingUnit(0)


def test_sacts_running_sum_decides_as_the_whole_prefix_would():
    """run_block adds one unit's scores at a time (O(L)). Kept in float64 and cast back, the
    running sum equals the CPU's cumsum of the prefix, so it decides exactly as
    act.reached_threshold would, even where 1 - eps falls between the float32 running sum and
    the cumsum (as the thresholds below are chosen to)."""
    generator = torch.Generator().manual_seed(0)
    h = torch.rand(2000, 12, generator=generator) / 6                  # (B, L): sums cross 0.9-1
    prefix_sums = h.cumsum(dim=1)                                      # (B, L)
    float32_sum, float64_sum, thresholds = torch.zeros(2000), torch.zeros(2000, dtype=torch.float64), []
    for n in range(h.shape[1]):
        float32_sum, float64_sum = float32_sum + h[:, n], float64_sum + h[:, n].double()
        assert torch.equal(float64_sum.to(h.dtype), prefix_sums[:, n])
        between = (float32_sum < prefix_sums[:, n]) & (prefix_sums[:, n] > 0.5)
        thresholds += prefix_sums[between, n].tolist()                 # float32 sum misses, cumsum reaches
    assert len(thresholds) >= 10
    for threshold in thresholds[:10]:
        eps = 1 - threshold
        assert float(torch.tensor(1 - eps, dtype=torch.float32)) == threshold
        running = torch.zeros(2000, dtype=torch.float64)
        for n in range(h.shape[1]):
            running = running + h[:, n].double()
            assert torch.equal(act.sum_reached(running.to(h.dtype), eps), act.reached_threshold(h, eps)[:, n])
