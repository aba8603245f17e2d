"""Spatially adaptive residual networks: ACT per block, SACT and PSACT, through one block loop.

A residual block is a sequence of L units ``u^l = u^{l-1} + f^l(u^{l-1})`` (``adaptive.spatial.resnet``).
Adaptive computation lets every spatial position of the block stop after its own number of
units. The methods differ only in how a position decides, and each decision rule is the one
of ``adaptive.act`` or ``adaptive.pact``, applied to one position (or patch) per row:

* ACT per block (SACT slides, "ACT going deeper", Algorithm 1): one halting score per image
  and unit, ``h^l = sigmoid(W pool(u^l) + b)``; ``act.halting_distribution`` gives the
  weights ``p^l``, the output ``sum_l p^l u^l`` and the ponder cost ``rho = N + R``.
* SACT (slides, "We can ACT better: SACT"): the same rule at every position, with
  ``h^l = sigmoid(W~ * u^l + W pool(u^l) + b)``, ``*`` a 3x3 convolution. A position is
  *active* while its cumulative halting score is below ``1 - eps``.
* PSACT (Figurnov, Sobolev & Vetrov 2018, sec. 4.1): the number of units of each position is
  a latent variable with PACT's halting probabilities. Relaxed training samples
  ``xi^l ~ RelaxedBernoulli(h^l; lambda)`` (``pact.sample_halt``, eqs. 7, 16), mixes the unit
  outputs with the stick-breaking weights (``pact.stick_breaking``, eqs. 17-18) and runs unit
  l at the mask ``a = r [r > delta]``, ``r = prod_{t<l} (1 - xi^t)`` (eq. 27); evaluation
  halts a position at the first ``xi^l = 1``, sampled (discrete, eq. 12) or ``[h^l > 0.5]``
  (thresholded, eq. 15), and then the block's output is simply the last unit computed there.
  The penalty is ``tau / (H W)`` times the expected units ``N`` (``pact.expected_steps``,
  eq. 23) summed over the positions of each block. With ``estimator="reinforce"`` the
  discrete model is trained with the score-function estimator of eq. 25.

Halting units exist after units 1..L-1 of every block (``h^L = 1``); unit 1 of a block is
always computed everywhere. ``patch = n`` groups the positions into n x n patches sharing
one latent variable (PSACT sec. 6: "we average the logits of the halting probabilities and
sample a single latent variable per patch").

Why a loop of its own. ``adaptive.loop.run`` halts *samples*: a halted row leaves the batch.
Positions cannot leave a feature map, because a 3x3 convolution at an active position reads
its halted neighbours, whose features stay as they were (eq. 27). So this loop keeps the map
and passes the active mask into each unit; the halting rules themselves are not restated here,
they are calls to ``adaptive.act`` and ``adaptive.pact``.

Training runs every unit densely and multiplies the residual by the mask. Evaluation with
``sparse=True`` really skips: a unit is computed only at its active positions
(``adaptive.spatial.sparse``), and ACT's per-image rule runs the remaining images only. FLOPs are
counted in the SACT convention by ``adaptive.spatial.flops`` in both cases.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks, act, pact
from . import flops
from .resnet import PreActResNet
from .sparse import apply_unit

METHODS = ("fixed", "act", "sact", "psact")
ESTIMATORS = ("relaxed", "reinforce")
EVAL_MODES = ("act",) + pact.MODES      # "act": the cumulative rule of ACT / SACT
HALTING_BIAS = -3.0                      # SACT code: halting logits start at sigmoid(-3) = 0.047


@dataclass(frozen=True)
class SpatialHalting:
    """Which spatial mechanism a network runs, and its hyper-parameters.

    Attributes:
        method: ``"fixed"`` (the plain network: every unit everywhere), ``"act"`` (ACT per
            block and image), ``"sact"`` or ``"psact"``.
        tau: penalty weight >= 0 on the ponder cost summed over blocks (each block's
            cost averaged over its positions: PSACT's ``tau / (H W)``).
        eps: ACT / SACT threshold slack, in (0, 1).
        temperature: PSACT's Concrete temperature lambda > 0 (relaxed training).
        delta: PSACT relaxed mask cut-off: a position stops computing once ``r <= delta``.
        patch: n, positions grouped into n x n patches with one latent variable each.
        estimator: how PSACT is trained: ``"relaxed"`` (Concrete) or ``"reinforce"``
            (discrete samples, eq. 25).
        eval_mode: how to halt at evaluation: ``"act"`` (ACT / SACT's rule, their default),
            ``"thresholded"`` (eq. 15, PSACT's default), ``"discrete"`` (eq. 12) or
            ``"relaxed"``. ``None`` picks the method's default.
    """

    method: str
    tau: float = 0.0
    eps: float = 0.01
    temperature: float = 1.0
    delta: float = 0.01
    patch: int = 1
    estimator: str = "relaxed"
    eval_mode: str | None = None

    def __post_init__(self):
        _checks.choice("method", self.method, METHODS)
        _checks.non_negative("tau", self.tau)
        _checks.open_unit("eps", self.eps)
        _checks.positive("temperature", self.temperature)
        _checks.open_unit("delta", self.delta)
        _checks.positive_int("patch", self.patch)
        _checks.choice("estimator", self.estimator, ESTIMATORS)
        if self.estimator == "reinforce" and self.method != "psact":
            raise ValueError(f"estimator='reinforce' trains PSACT's discrete model; method is {self.method!r}")
        if self.eval_mode is not None:
            _checks.choice("eval_mode", self.eval_mode, EVAL_MODES)
            if self.method == "psact" and self.eval_mode == "act":
                raise ValueError("eval_mode='act' is ACT's cumulative rule; PSACT evaluates in "
                                 f"{', '.join(map(repr, pact.MODES))}")

    @property
    def default_eval_mode(self) -> str:
        if self.eval_mode is not None:
            return self.eval_mode
        return "thresholded" if self.method == "psact" else "act"

    @property
    def penalty_name(self) -> str | None:
        """What ``tau`` weighs is called in the papers (None: the fixed network has no penalty)."""
        return None if self.method == "fixed" else "tau"

    def as_dict(self) -> dict:
        return asdict(self)


class HaltingUnit(nn.Module):
    """``H(u) = sigmoid(W~ * u + W pool(u) + b)`` as a logit map (SACT slides; PSACT sec. 4.1).

    ``spatial=False`` drops the convolution: ACT's ``sigmoid(W pool(u) + b)``, the same at
    every position. The weights start at zero and ``b`` at -3 (the SACT code's bias), so
    every position starts with ``h = 0.047`` and computes all units.
    """

    def __init__(self, channels: int, spatial: bool = True):
        super().__init__()
        _checks.positive_int("channels", channels)
        self.conv = nn.Conv2d(channels, 1, 3, padding=1, bias=False) if spatial else None
        self.linear = nn.Linear(channels, 1)
        for weight in (self.linear.weight,) + ((self.conv.weight,) if spatial else ()):
            nn.init.zeros_(weight)
        nn.init.constant_(self.linear.bias, HALTING_BIAS)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H, W) halting logits."""
        pooled = self.linear(u.mean(dim=(2, 3)))                           # (B, 1)
        logits = pooled[:, :, None].expand(-1, u.shape[2], u.shape[3])     # (B, H, W)
        if self.conv is not None:
            logits = logits + self.conv(u)[:, 0]
        return logits

    def flops(self, active: torch.Tensor) -> torch.Tensor:
        """(B,) FLOPs at the active positions (B, H, W), as ``flops.spatial_halting_flops``.

        An image with no active position left runs no halting unit: it costs 0.
        """
        running = active.flatten(1).any(dim=1).long()                     # (B,)
        cost = flops.pooled_halting_flops(self.linear.in_features) * running
        if self.conv is not None:
            cost = cost + flops.conv_flops(self.conv, active.sum(dim=(1, 2)))
        return cost


@dataclass
class BlockResult:
    """What the loop returns for one block (positions at the block's resolution H x W)."""

    output: torch.Tensor          # (B, C, H, W) the block's output
    ponder: torch.Tensor          # (B, H, W) ACT / SACT: rho = N + R; PSACT: expected units (eq. 23)
    units: torch.Tensor           # (B, H, W) int64, units computed at each position
    flops: torch.Tensor           # (B,) int64, units and halting branches in the SACT convention
    log_q: torch.Tensor | None    # (B,) log q(z | x) of the sampled halting (REINFORCE training)
    halt: torch.Tensor | None     # (B, L', h, w) the halting probabilities computed (patch grid)


@dataclass
class SpatialOutput:
    """What the network returns; ``loss`` and its terms need a target."""

    logits: torch.Tensor                       # (B, classes)
    flops: torch.Tensor                        # (B,) float64 FLOPs per image, everything included
    blocks: list[BlockResult] = field(default_factory=list)
    penalty_per_image: torch.Tensor | None = None   # (B,) tau * sum_k mean ponder_k
    loss: torch.Tensor | None = None
    task_loss: torch.Tensor | None = None
    penalty: torch.Tensor | None = None

    @property
    def ponder_maps(self) -> list[torch.Tensor]:
        return [block.ponder for block in self.blocks]

    @property
    def units(self) -> torch.Tensor:
        """(B,) float: units per position, averaged over positions and summed over blocks."""
        if not self.blocks:
            raise ValueError("a fixed network (the plain ResNet, method 'fixed') has no per-position units")
        return sum(block.units.float().mean(dim=(1, 2)) for block in self.blocks)


# ----------------------------------------------------------------------------- grouping

def _group(halt_logits: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, H, W) logits -> (B, H/n, W/n) halting probabilities of the n x n patches."""
    if patch == 1:
        return torch.sigmoid(halt_logits)
    height, width = halt_logits.shape[1:]
    if height % patch or width % patch:
        raise ValueError(f"patch = {patch} must divide every block's size; a block is "
                         f"{height}x{width}")
    return torch.sigmoid(F.avg_pool2d(halt_logits[:, None], patch)[:, 0])


def _expand(grid: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, H/n, W/n) -> (B, H, W): each patch's value at all its positions."""
    if patch == 1:
        return grid
    return grid.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)


def _rows(grid_steps: list[torch.Tensor]) -> torch.Tensor:
    """L' maps (B, h, w) -> (B h w, L'): one row per latent variable, as act/pact expect."""
    return torch.stack(grid_steps, dim=-1).flatten(0, 2)


# ----------------------------------------------------------------------------- the block loop

def run_block(units, halting_units, u: torch.Tensor, halting: SpatialHalting, *, mode: str,
              sparse: bool = False, generator: torch.Generator | None = None) -> BlockResult:
    """Run one residual block with per-position (or per-image) halting.

    Args:
        units: the block's L residual units.
        halting_units: L - 1 ``HaltingUnit``s, after units 1..L-1.
        u: (B, C_in, H_in, W_in) the block's input.
        halting: the mechanism.
        mode: ``"act"`` (cumulative rule, training or evaluation of ACT / SACT),
            ``"relaxed"``, ``"discrete"`` or ``"thresholded"`` (PACT's rules). The discrete
            mode also returns ``log q(z | x)`` for REINFORCE.
        sparse: compute units only at active positions (evaluation, no gradients).
        generator: for the relaxed and discrete samples.
    Returns:
        ``BlockResult``; its FLOPs leave out unit 1, which every position computes.
    """
    L, patch = len(units), halting.patch
    u = units[0](u)                                                    # unit 1 runs everywhere
    batch, channels, height, width = u.shape
    cost = torch.zeros(batch, dtype=torch.int64, device=u.device)
    grid_shape = (batch, height // patch, width // patch)
    h_steps: list[torch.Tensor] = []          # (B, h, w) per computed halting unit
    xi_steps: list[torch.Tensor] = []         # PACT's sampled xi^l, (B, h, w)
    outputs = [u]                             # u^1, u^2, ... (ACT's mixture, relaxed mixture)
    active_grid = torch.ones(grid_shape, dtype=torch.bool, device=u.device)
    survive = torch.ones(grid_shape, dtype=u.dtype, device=u.device)  # r = prod (1 - xi)
    units_done = torch.ones(grid_shape, dtype=torch.int64, device=u.device)
    log_q = torch.zeros(grid_shape, dtype=u.dtype, device=u.device)
    # ACT's running sum of h, in float64 as the CPU's cumsum accumulates, so that adding one unit's
    # scores at a time decides exactly as act.reached_threshold on the whole prefix would
    score_sum = torch.zeros(grid_shape, dtype=torch.float64, device=u.device)
    for l in range(1, L):                     # halting after unit l, then unit l + 1
        active = _expand(active_grid, patch)
        cost += halting_units[l - 1].flops(active)
        h = _group(halting_units[l - 1](u), patch)                     # (B, h, w)
        h_steps.append(h)
        if mode == "act":
            score_sum = score_sum + h.detach().double()
            active_grid = ~act.sum_reached(score_sum.to(h.dtype), halting.eps)
            mask_grid = active_grid.to(u.dtype)
        else:
            xi = pact.sample_halt(h, mode, halting.temperature, generator)     # (B, h, w)
            xi_steps.append(xi)
            if mode == "discrete":
                log_q = log_q + active_grid * torch.where(
                    xi > 0, torch.log(h.clamp_min(1e-12)), torch.log1p(-h.clamp(max=1 - 1e-7)))
            survive = survive * (1 - xi)
            if mode == "relaxed":
                active_grid = survive > halting.delta
                mask_grid = survive * active_grid                      # a = r [r > delta]
            else:
                active_grid = active_grid & (xi == 0)
                mask_grid = active_grid.to(u.dtype)
        if not torch.is_grad_enabled() and not bool(active_grid.any()):
            break                              # evaluation: nothing left to compute in this block
        units_done = units_done + active_grid
        active = _expand(active_grid, patch)
        cost += flops.unit_flops(units[l], active)
        u = apply_unit(units[l], u, _expand(mask_grid, patch), sparse)
        outputs.append(u)

    computed = len(outputs)
    if mode == "act":
        last = [] if len(h_steps) == computed else [torch.ones_like(u[:, 0])[:, ::patch, ::patch]]
        weights, rho, _ = act.halting_distribution(_rows(h_steps + last), halting.eps)  # (B h w, L')
        ponder_grid = rho.view(grid_shape)
        output = _mix(outputs, weights, grid_shape, patch)
    else:
        ponder_grid = pact.expected_steps(_rows(h_steps + [torch.ones_like(h_steps[0])])).view(grid_shape) \
            if h_steps else torch.ones(grid_shape, dtype=u.dtype, device=u.device)
        if mode == "relaxed":
            xi_rows = _rows(xi_steps[:computed - 1] + [torch.ones(grid_shape, dtype=u.dtype, device=u.device)])
            output = _mix(outputs, pact.stick_breaking(xi_rows), grid_shape, patch)   # eq. 18
        else:
            output = u                        # one-hot z: halted positions kept u^z (eq. 27)
    return BlockResult(output=output, ponder=_expand(ponder_grid, patch),
                       units=_expand(units_done, patch), flops=cost,
                       log_q=log_q.flatten(1).sum(dim=1) if mode == "discrete" else None,
                       halt=torch.stack(h_steps, dim=1) if h_steps else None)


def _mix(outputs: list[torch.Tensor], weights: torch.Tensor, grid_shape, patch: int) -> torch.Tensor:
    """``sum_l w^l u^l`` per position: L' maps (B, C, H, W), weights (B h w, L') -> (B, C, H, W)."""
    weights = weights.view(*grid_shape, -1)                             # (B, h, w, L')
    total = 0
    for l, u_l in enumerate(outputs):
        total = total + u_l * _expand(weights[..., l], patch)[:, None]
    return total


# ----------------------------------------------------------------------------- the network

class AdaptiveResNet(nn.Module):
    """A ``PreActResNet`` whose blocks halt per image (ACT) or per position (SACT, PSACT).

    Args:
        resnet: the base network (``adaptive.spatial.resnet.cifar_resnet`` / ``imagenet_resnet``).
        halting: the mechanism; ``"fixed"`` adds nothing.
        input_size: (channels, height, width) of the images, for the FLOP counts.
    """

    def __init__(self, resnet: PreActResNet, halting: SpatialHalting, input_size=(3, 32, 32)):
        super().__init__()
        if not isinstance(resnet, PreActResNet):
            raise ValueError(f"resnet must be an adaptive.spatial.resnet.PreActResNet, got {type(resnet).__name__}")
        if not isinstance(halting, SpatialHalting):
            raise ValueError(f"halting must be an adaptive.spatial.SpatialHalting, got {type(halting).__name__}")
        self.resnet, self.halting = resnet, halting
        parts = flops.flops_by_part(resnet, input_size)
        self.fixed_flops = parts["stem"] + parts["head"] + sum(block[0] for block in parts["units"])
        self.plain_flops = self.fixed_flops + sum(sum(block[1:]) for block in parts["units"])
        if halting.method != "fixed":
            spatial = halting.method != "act"
            self.halting_units = nn.ModuleList(
                nn.ModuleList(HaltingUnit(block[-1].residual_convs()[-1].out_channels, spatial)
                              for _ in range(len(block) - 1))
                for block in resnet.blocks)

    def forward(self, images: torch.Tensor, target: torch.Tensor | None = None, *,
                mode: str | None = None, sparse: bool = False,
                generator: torch.Generator | None = None) -> SpatialOutput:
        """Logits, FLOPs per image and, with a target, the loss.

        Args:
            images: (B, C, H, W).
            target: (B,) class indices.
            mode: halting rule; ``None`` trains with the method's rule (``"act"``, or PSACT's
                ``estimator``) in training mode and evaluates with ``halting.default_eval_mode``.
            sparse: compute units only at active positions (needs ``torch.no_grad()``).
            generator: ``torch.Generator`` for PSACT's samples.
        """
        halting = self.halting
        channels = self.resnet.in_channels
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != channels:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a tensor of shape (B, {channels}, H, W), got {shape}")
        if mode is not None:
            _checks.choice("mode", mode, EVAL_MODES)
        _checks.generator(generator, images.device)
        if sparse and (torch.is_grad_enabled() or self.training):
            raise ValueError("sparse=True computes only active positions, with the batch norms' "
                             "running statistics and no gradient; call model.eval() and run it "
                             "under torch.no_grad()")
        if halting.method == "fixed":
            logits = self.resnet(images)
            out = SpatialOutput(logits=logits, flops=torch.full(
                (images.shape[0],), float(self.plain_flops), dtype=torch.float64, device=images.device))
            out.penalty_per_image = logits.new_zeros(images.shape[0])
        else:
            if mode is None:
                if self.training:
                    mode = ("act" if halting.method in ("act", "sact")
                            else "discrete" if halting.estimator == "reinforce" else "relaxed")
                else:
                    mode = halting.default_eval_mode
            if halting.method == "psact" and mode == "act":
                raise ValueError("mode='act' is the cumulative rule of ACT and SACT; PSACT "
                                 f"halts in {', '.join(map(repr, pact.MODES))}")
            u = self.resnet.stem(images)
            blocks = []
            for units, halting_units in zip(self.resnet.blocks, self.halting_units):
                result = run_block(units, halting_units, u, halting, mode=mode, sparse=sparse,
                                   generator=generator)
                blocks.append(result)
                u = result.output
            logits = self.resnet.head(u)
            total = self.fixed_flops + sum(block.flops for block in blocks).double()   # (B,)
            out = SpatialOutput(logits=logits, flops=total, blocks=blocks)
            out.penalty_per_image = halting.tau * sum(block.ponder.mean(dim=(1, 2)) for block in blocks)
        if target is not None:
            out.task_loss = F.cross_entropy(out.logits, target)
            out.penalty = out.penalty_per_image.mean()
            out.loss = out.task_loss + out.penalty
        return out
