"""The MAC network (Hudson & Manning, ICLR 2018) as a step function for ``adaptive.loop``.

MAC answers a question about an image by a sequence of reasoning steps. Each
step has three units that share a control state ``c`` and a memory ``m``:

* control: attends over the question's words, guided by a step-specific
  projection of the question, to choose what this step reasons about;
* read: attends over the image's knowledge base (the stem's feature map),
  guided by the control and by what memory already holds, and reads ``r``;
* write: merges ``r`` into the memory, optionally through a gate
  ``m_i = sigmoid(g) m_{i-1} + (1 - sigmoid(g)) m'_i`` ("gated MAC").

The output unit classifies ``[q, m_i]``. As in the DACT paper (Eyzaguirre &
Soto 2020, sec. 4), every step's memory yields an answer ``y_i`` and a
halting value from one linear layer on the control vector (bias 0), so
``adaptive.loop`` can run MAC with a fixed number of steps, ACT or DACT; the
model itself never decides when to stop.

Initialisation follows the authors' TensorFlow code: the weights of every linear layer and
convolution are drawn with Glorot's variance 2 / (fan_in + fan_out) (uniform here, normal
there), biases zero (``reset_parameters``). PyTorch's own default (uniform within
1/sqrt(fan_in)) has sqrt(3) times smaller weights for a square layer, and MAC's
multiplicative interactions (memory times knowledge, control times knowledge) compound
it: in a pilot on mini-CLEVR (width 64, 80,000 questions an epoch; issue 3's closing note),
a MAC with PyTorch's default initialisation answered "What color is the <object>?"
correctly 24 % of the time after four epochs (chance: 12.5 %), the Glorot-initialised one
99 %.

Dropout follows the authors' recipe (drop probabilities): stem 0.18,
question 0.08, memory 0.15 (one mask per question for all steps: variational
dropout), read 0.15, output 0.15. The read dropout is also one mask per
question, which lets the read unit's projections of the knowledge base be
computed once per question instead of at every step.

Shapes: B questions, T words, d = width, K = H * W knowledge-base cells,
A answers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks

DROPOUT = {"stem": 0.18, "question": 0.08, "memory": 0.15, "read": 0.15, "output": 0.15}


def coordinate_maps(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features -> (B, 2, H, W): each cell's column and row, from -1 to 1.

    The knowledge base of a convolutional stem knows what is in a cell but hardly where the cell
    is (only cells near the border see the padding), so that "left of the cube" cannot be read
    off it. Relation Networks (Santoro et al. 2017) and FiLM (Perez et al. 2018) append these
    two maps to CLEVR's features; CoordConv (Liu et al. 2018) studies why they help.
    """
    batch, _, height, width = features.shape
    rows = torch.linspace(-1, 1, height, device=features.device, dtype=features.dtype)      # (H,)
    columns = torch.linspace(-1, 1, width, device=features.device, dtype=features.dtype)    # (W,)
    grid = torch.stack(torch.meshgrid(columns, rows, indexing="xy"))                         # (2, H, W)
    return grid.expand(batch, -1, -1, -1)


class MAC(nn.Module):
    """MAC with per-step answers and a halting unit on the control.

    Args:
        vocab_size: question vocabulary size (index 0 is padding).
        num_answers: answer classes A.
        feature_channels: channels of the image features (1024 for ResNet-101
            conv4 on CLEVR, 3 for mini-CLEVR's pixel grids).
        width: d, the width of control, memory and knowledge base.
        max_steps: the most reasoning steps (each has its own question projection).
        embed_dim: word embedding size.
        gate: use the memory gate in the write unit.
        stem_stride: stride of the stem's first convolution (2 halves H and W).
        coordinates: give the stem each cell's position as two more channels (``coordinate_maps``).
        dropout: drop probabilities, keys of ``DROPOUT``; missing keys keep the default.
    """

    def __init__(self, vocab_size: int, num_answers: int, feature_channels: int, width: int = 512,
                 max_steps: int = 12, embed_dim: int = 300, gate: bool = False, stem_stride: int = 1,
                 coordinates: bool = False, dropout: dict | None = None):
        super().__init__()
        for name, value in [("vocab_size", vocab_size), ("num_answers", num_answers),
                            ("feature_channels", feature_channels), ("max_steps", max_steps),
                            ("embed_dim", embed_dim), ("stem_stride", stem_stride)]:
            _checks.positive_int(name, value)
        if not isinstance(width, int) or width < 2 or width % 2:
            raise ValueError(f"width must be an even integer >= 2 (the encoder is bidirectional), got {width!r}")
        unknown = set(dropout or {}) - set(DROPOUT)
        if unknown:
            raise ValueError(f"dropout keys must be among {sorted(DROPOUT)}, got {sorted(unknown)}")
        self.drop = {**DROPOUT, **(dropout or {})}
        if not isinstance(coordinates, bool):
            raise ValueError(f"coordinates must be True or False, got {coordinates!r}")
        self.width, self.max_steps, self.gate, self.coordinates = width, max_steps, gate, coordinates
        # input unit
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = nn.LSTM(embed_dim, width // 2, batch_first=True, bidirectional=True)
        self.stem = nn.Sequential(
            nn.Conv2d(feature_channels + 2 * coordinates, width, 3, stride=stem_stride, padding=1), nn.ELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ELU())
        # control unit
        self.question_per_step = nn.ModuleList(nn.Linear(width, width) for _ in range(max_steps))
        self.control_question = nn.Linear(2 * width, width)
        self.control_attention = nn.Linear(width, 1)
        # read unit
        self.read_memory = nn.Linear(width, width)
        self.read_knowledge = nn.Linear(width, width)
        # W [I, k] + b of the read unit, split so the knowledge half is computed once per question
        self.read_combine_interaction = nn.Linear(width, width, bias=False)
        self.read_combine_knowledge = nn.Linear(width, width)
        self.read_attention = nn.Linear(width, 1)
        # write unit
        self.write = nn.Linear(2 * width, width)
        self.write_gate = nn.Linear(width, 1) if gate else None
        # output unit and the halting unit on the control (DACT's: one linear layer, bias 0)
        self.classifier = nn.Sequential(nn.Linear(2 * width, width), nn.ELU(), nn.Linear(width, num_answers))
        self.halt = nn.Linear(width, 1)
        self.initial_control = nn.Parameter(torch.zeros(width))
        self.initial_memory = nn.Parameter(torch.zeros(width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases for every linear layer and convolution (the
        authors' initialisation; the halting unit's bias 0 is DACT's). The LSTM and the word
        embeddings keep PyTorch's initialisation."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _dropout(self, x: torch.Tensor, key: str) -> torch.Tensor:
        return F.dropout(x, self.drop[key], self.training)

    def initial_state(self, tokens: torch.Tensor, lengths: torch.Tensor, features: torch.Tensor) -> dict:
        """Encode the question and the image; the state every step reads and updates.

        Args:
            tokens: (B, T) word indices, 0 = padding; lengths: (B,) words per question.
            features: (B, C, H, W) image features.
        """
        if tokens.dim() != 2 or lengths.shape != tokens.shape[:1] or features.dim() != 4 \
                or features.shape[0] != tokens.shape[0]:
            raise ValueError(f"expected tokens (B, T), lengths (B,), features (B, C, H, W); got "
                             f"{tuple(tokens.shape)}, {tuple(lengths.shape)}, {tuple(features.shape)}")
        batch = tokens.shape[0]
        embedded = self._dropout(self.embed(tokens), "question")                     # (B, T, E)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu().clamp_min(1), batch_first=True,
                                                   enforce_sorted=False)
        output, (final, _) = self.encoder(packed)
        words, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True,
                                                    total_length=tokens.shape[1])    # (B, T, d)
        question = torch.cat([final[0], final[1]], dim=1)                            # (B, d)
        if self.coordinates:
            features = torch.cat([features, coordinate_maps(features)], dim=1)        # (B, C + 2, H, W)
        grid = self.stem(self._dropout(features, "stem"))                            # (B, d, H', W')
        # read dropout: one mask per question; the knowledge-only projections of the read
        # unit do not change from step to step, so they are computed here, once
        knowledge = self._dropout(grid.flatten(2).transpose(1, 2), "read")            # (B, K, d)
        memory_mask = self._dropout(torch.ones(batch, self.width, device=tokens.device), "memory")
        return {
            "words": words, "word_mask": tokens != 0, "question": question,
            "knowledge": knowledge,                                                   # (B, K, d)
            "knowledge_read": self.read_knowledge(knowledge),                         # (B, K, d)
            "knowledge_combine": self.read_combine_knowledge(knowledge),              # (B, K, d)
            "control": self.initial_control.expand(batch, -1),
            "memory": self.initial_memory.expand(batch, -1),
            "memory_mask": memory_mask,                                               # (B, d), all steps
            "step": torch.zeros(batch, dtype=torch.long, device=tokens.device),
            "word_attention": torch.zeros(batch, tokens.shape[1], device=tokens.device),
            "image_attention": torch.zeros(batch, knowledge.shape[1], device=tokens.device),
        }

    def step(self, state: dict):
        """One reasoning step: (answer logits (b, A), halting logit (b,), new state)."""
        index = int(state["step"][0])
        if index >= self.max_steps:
            raise ValueError(f"the model has parameters for max_steps = {self.max_steps} steps; "
                             f"run it with Halting(max_steps <= {self.max_steps})")
        # control: which words matter at this step
        question_i = self.question_per_step[index](state["question"])                # (b, d)
        guide = self.control_question(torch.cat([state["control"], question_i], dim=1))
        word_logits = self.control_attention(guide.unsqueeze(1) * state["words"]).squeeze(2)
        word_logits = word_logits.masked_fill(~state["word_mask"], float("-inf"))    # (b, T)
        word_attention = word_logits.softmax(dim=1)
        control = (word_attention.unsqueeze(2) * state["words"]).sum(dim=1)          # (b, d)
        # read: which knowledge-base cells matter, given the control and the memory
        memory = state["memory"] * state["memory_mask"]
        knowledge = state["knowledge"]                                               # (b, K, d)
        interaction = self.read_memory(memory).unsqueeze(1) * state["knowledge_read"]
        combined = self.read_combine_interaction(interaction) + state["knowledge_combine"]
        cell_logits = self.read_attention(control.unsqueeze(1) * F.elu(combined)).squeeze(2)
        image_attention = cell_logits.softmax(dim=1)                                 # (b, K)
        read = (image_attention.unsqueeze(2) * knowledge).sum(dim=1)                 # (b, d)
        # write: merge what was read into memory
        new_memory = self.write(torch.cat([read, state["memory"]], dim=1))           # (b, d)
        if self.write_gate is not None:
            keep = torch.sigmoid(self.write_gate(control))                           # (b, 1)
            new_memory = keep * state["memory"] + (1 - keep) * new_memory
        # this step's answer, and its halting value (a logit; the mechanism reads it)
        features = self._dropout(torch.cat([state["question"], new_memory], dim=1), "output")
        logits = self.classifier(features)                                           # (b, A)
        halt_logit = self.halt(control).squeeze(1)                                   # (b,)
        new_state = {**state, "control": control, "memory": new_memory, "step": state["step"] + 1,
                     "word_attention": word_attention, "image_attention": image_attention}
        return logits, halt_logit, new_state
