"""adaptive.clevr.benchmark at a tiny shape: the tables it promises, with real early exit."""
import pytest

from adaptive.clevr import benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def result():
    return benchmark.measure(width=16, batch=24, max_steps=4, feature_shape=(8, 4, 4), embed_dim=8, vocab_size=20,
                             num_answers=5, question_length=6, repeats=1)


def test_training_table_compares_act_and_dact_with_the_plain_mac(result):
    rows = {row["method"]: row for row in result["training"]}
    assert set(rows) == {"fixed", "act", "dact"}
    assert rows["fixed"]["ratio_to_plain"] == 1.0
    for row in rows.values():
        assert row["questions_per_s"] > 0 and row["ms_per_batch"] > 0
        assert row["epoch_hours"] == pytest.approx(benchmark.CLEVR_TRAIN_QUESTIONS / row["questions_per_s"] / 3600)


def test_early_exit_takes_the_assigned_depths_and_the_fixed_mac_all_steps(result):
    rows = {row["method"]: row for row in result["evaluation"]}
    assert rows["fixed"]["mean_steps"] == 4 and rows["fixed"]["realised_speedup"] == 1.0
    # depths uniform on 1..4: DACT stops at or after each question's depth, never before
    assert 1.0 <= rows["dact"]["mean_steps"] < 4
    assert rows["dact"]["ideal_speedup"] == pytest.approx(4 / rows["dact"]["mean_steps"])


def test_dact_halts_exactly_at_the_depth_once_its_answer_is_settled():
    import torch

    from adaptive import loop
    from adaptive.clevr.mac import MAC
    torch.manual_seed(0)
    mac = MAC(20, 5, 8, width=16, max_steps=4, embed_dim=8).eval()
    tokens, lengths, features, _ = benchmark.synthetic_batch(6, (8, 4, 4), 20, 5, 6, torch.Generator().manual_seed(1),
                                                             torch.device("cpu"))
    depth = torch.tensor([1, 2, 3, 4, 2, 1])
    with torch.no_grad():
        state = {**mac.initial_state(tokens, lengths, features), "depth": depth}
        fixed = loop.run(benchmark.halting_at_depth(mac), state, loop.Halting("fixed", 4), training=False)
        dact = loop.run(benchmark.halting_at_depth(mac), state, loop.Halting("dact", 4), training=False)
    assert fixed.steps.tolist() == [4] * 6
    assert (dact.steps >= depth).all()


def test_markdown_has_both_tables(result):
    text = benchmark.markdown(result)
    assert "MAC+DACT" in text and "early exit" in text and "one CLEVR epoch" in text


def test_bad_sizes_name_the_parameter():
    with pytest.raises(ValueError, match="width"):
        benchmark.measure(width=0)
    with pytest.raises(ValueError, match="feature_shape"):
        benchmark.measure(feature_shape=(8, 4))


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    benchmark.main(["--quick", "--max-steps", "2", "--repeats", "1", "--json", str(out)])
    assert out.is_file() and "questions/s" in capsys.readouterr().out


def test_ideal_with_the_input_unit_lies_between_one_and_the_plain_ideal(result):
    dact = next(row for row in result["evaluation"] if row["method"] == "dact")
    assert 0 <= dact["input_unit_share"] <= 1
    assert 1.0 <= dact["ideal_with_input_unit"] <= dact["ideal_speedup"] + 1e-9
    assert dact["fraction_of_ideal_with_input_unit"] == pytest.approx(
        dact["realised_speedup"] / dact["ideal_with_input_unit"])
