"""The pretrained models' manifest (adaptive.infra.pretrained) and the claims tables (adaptive.infra.claims)."""
import json
import math
from pathlib import Path

import pytest
import torch

from adaptive.infra import claims, pretrained

REPOSITORY = Path(__file__).resolve().parents[1]


def test_every_pretrained_file_matches_its_manifest_entry():
    """The repository's own pretrained/: every hash, no unlisted file, every field, under the size limit."""
    assert pretrained.verify(REPOSITORY / "pretrained") == []


def payload(seed=0):
    torch.manual_seed(seed)
    return {"config": {"method": "act", "seed": seed}, "state": {"weight": torch.randn(3, 4)}}


def test_record_then_load_round_trip(tmp_path):
    entry = pretrained.record("parity/act-seed0", payload(), command="python -m x --seed 0", seed=0,
                              curve=[{"update": 10, "accuracy": 0.5}], directory=tmp_path)
    assert (tmp_path / "parity/act-seed0.pt").is_file()
    assert entry["sha256"] == pretrained.sha256(tmp_path / "parity/act-seed0.pt")
    assert set(pretrained.FIELDS) <= set(entry)
    assert entry["machine"] == pretrained.machine() and pretrained.same_machine(entry)
    loaded, read_entry = pretrained.load("parity/act-seed0", tmp_path)
    assert torch.equal(loaded["state"]["weight"], payload()["state"]["weight"])
    assert read_entry == json.loads((tmp_path / "manifest.json").read_text())["entries"]["parity/act-seed0"]
    assert pretrained.verify(tmp_path) == []


def test_an_entry_records_the_kernel_variables_it_was_trained_under(tmp_path, monkeypatch):
    for name in pretrained.KERNEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "kernel_variables" not in pretrained.record("a", payload(), command="c", seed=0, curve=[],
                                                       directory=tmp_path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    entry = pretrained.record("b", payload(), command="c", seed=0, curve=[], directory=tmp_path)
    assert entry["kernel_variables"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert pretrained.manifest(tmp_path)["b"]["kernel_variables"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_an_avx512_cpu_repeats_an_avx2_recording_with_its_kernels_held_back(monkeypatch):
    avx2 = {"torch": "2.13.0+cpu", "cpu_capability": "AVX2", "processor": "x86_64", "cpu": "AMD EPYC"}
    for name in pretrained.KERNEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pretrained, "machine", lambda: {**avx2, "cpu_capability": "AVX512"})
    assert pretrained.kernels_to_repeat({"machine": avx2}) == pretrained.HELD_BACK["AVX2"]
    assert pretrained.kernels_to_repeat({"machine": {**avx2, "cpu_capability": "AVX512"}}) == {}
    assert pretrained.kernels_to_repeat({"machine": {**avx2, "cpu": "Intel Xeon"}}) is None     # another model
    assert pretrained.kernels_to_repeat({"machine": {**avx2, "torch": "2.12.0+cpu"}}) is None
    assert pretrained.kernels_to_repeat({"machine": {k: v for k, v in avx2.items() if k != "cpu"}}) is None
    assert pretrained.kernels_to_repeat({}) is None
    monkeypatch.setattr(pretrained, "machine", lambda: {**avx2, "cpu_capability": "DEFAULT"})
    assert pretrained.kernels_to_repeat({"machine": avx2}) is None                  # fewer instructions here
    monkeypatch.setattr(pretrained, "machine", lambda: {**avx2, "cpu_capability": "AVX512"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")                          # held back otherwise already
    assert pretrained.kernels_to_repeat({"machine": avx2}) is None


def test_a_changed_file_is_refused_with_the_command_that_remakes_it(tmp_path):
    pretrained.record("m", payload(), command="python -m remake", seed=0, curve=[], directory=tmp_path)
    torch.save(payload(seed=1), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="(?s)has changed since it was recorded.*python -m remake"):
        pretrained.load("m", tmp_path)
    assert any("does not match its SHA-256" in problem for problem in pretrained.verify(tmp_path))


def test_missing_unknown_and_unlisted_files_are_named(tmp_path):
    pretrained.record("m", payload(), command="python -m remake", seed=0, curve=[], directory=tmp_path)
    with pytest.raises(ValueError, match="no pretrained model named 'other'.*it holds: m"):
        pretrained.load("other", tmp_path)
    torch.save(payload(), tmp_path / "stray.pt")
    assert pretrained.verify(tmp_path) == [f"{tmp_path / 'stray.pt'}: no manifest entry names this file"]
    (tmp_path / "stray.pt").unlink()
    (tmp_path / "m.pt").unlink()
    with pytest.raises(ValueError, match="(?s)lacks its file.*python -m remake"):
        pretrained.load("m", tmp_path)
    assert pretrained.verify(tmp_path) == [f"m: its file {tmp_path / 'm.pt'} is missing"]


def test_verify_reports_fields_size_and_broken_manifests(tmp_path, monkeypatch):
    pretrained.record("m", payload(), command="c", seed=0, curve=[], directory=tmp_path)
    monkeypatch.setattr(pretrained, "SIZE_LIMIT", 10)
    assert any("over the" in problem for problem in pretrained.verify(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["entries"]["m"]["commit"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert "m: the entry lacks commit" in pretrained.verify(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    assert "is not valid JSON" in pretrained.verify(tmp_path)[0]


@pytest.mark.parametrize("bad, match", [({"name": "../up"}, "name must be"), ({"command": " "}, "command must be"),
                                        ({"payload": {"state": {}}}, "payload must be")])
def test_record_refuses_bad_input_before_writing(tmp_path, bad, match):
    arguments = {"name": "m", "payload": payload(), "command": "c", "seed": 0, "curve": [], "directory": tmp_path}
    with pytest.raises(ValueError, match=match):
        pretrained.record(**{**arguments, **bad})
    assert not any(tmp_path.iterdir())


def test_the_command_line_verifies(tmp_path, capsys):
    pretrained.record("m", payload(), command="c", seed=0, curve=[], directory=tmp_path)
    assert pretrained.main(["verify", "--directory", str(tmp_path)]) == 0
    (tmp_path / "m.pt").write_bytes(b"changed")
    assert pretrained.main(["verify", "--directory", str(tmp_path)]) == 1
    assert "does not match" in capsys.readouterr().out


def test_claim_verdicts_count_the_seeds():
    rising = claims.measured("steps rise", "Graves 2016", "rising", "ρ ≥ 0.9", [0.95, 0.92, 0.85],
                             lambda rho: rho >= 0.9)
    assert rising.holds == [True, True, False] and rising.verdict() == "partly"
    assert claims.measured("c", "s", "p", "k", [1, 1, 1], lambda v: v > 0).verdict() == "reproduced"
    assert claims.measured("c", "s", "p", "k", [1, 1, 1], lambda v: v > 5).verdict() == "not reproduced"
    assert claims.measured("c", "s", "p", "k", [1.0], lambda v: v > 0).verdict().startswith("1 seed: too few")
    assert claims.measured("c", "s", "p", "k", [math.nan] * 3, lambda v: True).verdict() == "not reproduced"
    with pytest.raises(ValueError, match="one entry per seed"):
        claims.Claim("c", "s", "p", "k", [1.0, 2.0], [True])


def test_spread_and_the_markdown_table():
    s = claims.spread([1.0, 2.0, 3.0, math.nan])
    assert (s["mean"], s["sd"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 1.0, 3.0, 3)
    assert claims.spread_text([0.5]) == "0.500"
    assert claims.spread_text([1.0, 2.0, 3.0], 1) == "2.0 ± 1.0 (1.0–3.0)"
    table = claims.markdown([claims.measured("a | b", "src", "0.9", "≥ 0.9", [0.91, 0.95, 0.93],
                                             lambda v: v >= 0.9)])
    header, rule, row = table.splitlines()
    assert header.count("|") == len(claims.COLUMNS) + 1 and rule.count("---") == len(claims.COLUMNS)
    assert "a \\| b" in row and "3 of 3" in row and "reproduced" in row
    assert claims.rows([claims.measured("c", "s", "p", "k", [1.0], lambda v: True)])[0]["holds_per_seed"] == [True]


def test_spearman_with_ties():
    xs, ys = [1, 2, 3, 4, 5, 6], [1.0, 1.5, 1.5, 3.0, 2.0, 6.0]     # ranks of ys: 0, 1.5, 1.5, 4, 3, 5
    assert claims.spearman(xs, ys) == pytest.approx(16 / math.sqrt(17.5 * 17))
    assert claims.spearman(xs, list(reversed(xs))) == pytest.approx(-1.0)
    assert math.isnan(claims.spearman(xs, [2.0] * 6))
    with pytest.raises(ValueError, match="equally long"):
        claims.spearman([1, 2], [1])
