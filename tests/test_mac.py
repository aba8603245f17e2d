"""MAC as a step function: attention, memory, dropout, and adaptive runs through adaptive.loop."""
import pytest
import torch

from adaptive import loop
from adaptive.clevr import mac


def tiny(gate=False, **kwargs):
    torch.manual_seed(0)
    model = mac.MAC(30, 7, 3, width=16, max_steps=5, embed_dim=8, gate=gate, stem_stride=2, **kwargs)
    tokens = torch.randint(1, 30, (6, 9))
    tokens[:3, 6:] = 0                                        # three questions of 6 words
    lengths = (tokens != 0).sum(1)
    return model, tokens, lengths, torch.randn(6, 3, 8, 8)


@pytest.mark.parametrize("gate", [False, True])
def test_a_step_has_the_expected_shapes_and_attentions(gate):
    model, tokens, lengths, features = tiny(gate)
    model.eval()
    state = model.initial_state(tokens, lengths, features)
    assert state["knowledge"].shape == (6, 16, 16)            # 4 x 4 cells after the stride-2 stem
    logits, halt_logit, state = model.step(state)
    assert logits.shape == (6, 7) and halt_logit.shape == (6,)
    assert torch.allclose(state["word_attention"].sum(1), torch.ones(6))
    assert (state["word_attention"][:3, 6:] == 0).all()       # padding is never attended
    assert torch.allclose(state["image_attention"].sum(1), torch.ones(6))
    assert state["step"].tolist() == [1] * 6


def test_memory_dropout_mask_is_one_per_question_for_all_steps():
    model, tokens, lengths, features = tiny()
    model.train()
    state = model.initial_state(tokens, lengths, features)
    mask = state["memory_mask"].clone()
    kept = mask[mask != 0]
    assert kept.numel() and torch.allclose(kept, torch.full_like(kept, 1 / (1 - mac.DROPOUT["memory"])))
    for _ in range(3):
        _, _, state = model.step(state)
        assert torch.equal(state["memory_mask"], mask)


def test_evaluation_is_deterministic():
    model, tokens, lengths, features = tiny()
    model.eval()
    runs = [loop.run(model.step, model.initial_state(tokens, lengths, features), loop.Halting("fixed", 5),
                     training=False).probs for _ in range(2)]
    assert torch.equal(*runs)


def test_gate_can_keep_the_memory():
    model, tokens, lengths, features = tiny(gate=True)
    model.eval()
    with torch.no_grad():
        model.write_gate.bias.fill_(50.0)                     # sigmoid = 1: keep the old memory
    state = model.initial_state(tokens, lengths, features)
    _, _, after = model.step(state)
    assert torch.allclose(after["memory"], state["memory"])


@pytest.mark.parametrize("method", ["fixed", "act", "dact"])
def test_trains_through_the_shared_loop(method):
    model, tokens, lengths, features = tiny()
    target = torch.randint(0, 7, (6,))
    out = loop.run(model.step, model.initial_state(tokens, lengths, features),
                   loop.Halting(method, 5, tau=0.01), target=target)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    # the halting unit learns under ACT and DACT; a fixed-depth MAC never reads it
    assert (model.halt.weight.grad is None) == (method == "fixed")


def test_dact_early_exit_gives_the_all_steps_answer():
    model, tokens, lengths, features = tiny()
    model.eval()
    with torch.no_grad():
        model.halt.weight.normal_(0, 3.0)                     # varied halting so that some exit early
        model.halt.bias.fill_(2.0)
        halting = loop.Halting("dact", 5)
        full = loop.run(model.step, model.initial_state(tokens, lengths, features), halting)
    early = loop.run(model.step, model.initial_state(tokens, lengths, features), halting, training=False)
    assert torch.equal(early.probs.argmax(1), full.probs.argmax(1))
    assert early.steps.min() < 5


def test_more_steps_than_the_model_has_are_refused():
    model, tokens, lengths, features = tiny()
    with pytest.raises(ValueError, match="max_steps"):
        loop.run(model.step, model.initial_state(tokens, lengths, features), loop.Halting("fixed", 6),
                 training=False)


def test_coordinates_are_two_more_stem_channels_of_column_and_row():
    maps = mac.coordinate_maps(torch.zeros(2, 3, 4, 5))                  # (B, 2, H, W)
    assert maps.shape == (2, 2, 4, 5)
    assert torch.equal(maps[0, 0, 0], torch.linspace(-1, 1, 5))                 # columns along a row
    assert torch.equal(maps[0, 1, :, 0], torch.linspace(-1, 1, 4))              # rows along a column
    model, tokens, lengths, features = tiny(coordinates=True)
    assert model.stem[0].in_channels == 5
    state = model.initial_state(tokens, lengths, features)
    assert state["knowledge"].shape == (6, 16, 16)                        # 4 x 4 cells after the stride-2 stem


@pytest.mark.parametrize("kwargs, name", [(dict(width=15), "width"), (dict(max_steps=0), "max_steps"),
                                          (dict(dropout={"memroy": 0.1}), "dropout"),
                                          (dict(coordinates=1), "coordinates")])
def test_bad_settings_name_the_parameter(kwargs, name):
    settings = dict(vocab_size=30, num_answers=7, feature_channels=3, width=16) | kwargs
    with pytest.raises(ValueError, match=name):
        mac.MAC(**settings)


def test_mismatched_inputs_are_refused():
    model, tokens, lengths, features = tiny()
    with pytest.raises(ValueError, match="tokens"):
        model.initial_state(tokens, lengths, features[:2])


def test_linear_and_convolution_weights_are_glorot_initialised_with_zero_biases():
    torch.manual_seed(0)
    model = mac.MAC(30, 7, 3, width=128, max_steps=2, embed_dim=8)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) > 10
    for layer in layers:
        receptive = layer.weight[0, 0].numel() if layer.weight.dim() > 2 else 1
        fan_in, fan_out = layer.weight.shape[1] * receptive, layer.weight.shape[0] * receptive
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound
        if layer.weight.numel() >= 4096:                      # uniform(-b, b) has std b / sqrt(3)
            assert layer.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)
        assert layer.bias is None or not layer.bias.any()
    # PyTorch's default for a square 128 x 128 layer would have std 1 / sqrt(3 * 128): sqrt(3) times smaller
    assert model.read_memory.weight.std().item() > 1.5 / (3 * 128) ** 0.5
