"""make gpu-check: refuses at once without a GPU; its plan covers every chapter, benchmark and trainer."""
import subprocess
import sys

import pytest
import torch

from adaptive.infra import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_stops_at_once_with_a_clear_message(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, "-m", "adaptive.infra.gpu_check", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "torch.cuda.is_available() is False" in done.stderr
    assert not out.exists(), "nothing may run, or be written, without a GPU"


def test_the_plan_runs_every_chapter_every_benchmark_in_bf16_and_both_trainers_under_torchrun(tmp_path):
    plan = gpu_check.steps(tmp_path)
    commands = [" ".join(step["command"]) for step in plan]
    for chapter in gpu_check.CHAPTERS:
        [command] = [c for c in commands if f"notebooks/{chapter}.ipynb" in c]
        assert "-p quick True" in command and "-p device cuda" in command
        assert (f"-p checkpoint_dir {tmp_path}" in command) == (chapter in gpu_check.WITH_CHECKPOINTS)
    for module in ("adaptive.benchmark", "adaptive.clevr.benchmark", "adaptive.spatial.benchmark"):
        [command] = [c for c in commands if f"-m {module} " in c]
        assert "--device cuda" in command and "--bf16" in command and "--quick" not in command
    for trainer in ("adaptive.clevr.train", "adaptive.spatial.train"):
        [command] = [c for c in commands if f"-m {trainer} " in c]
        assert "torch.distributed.run" in command and "--nproc_per_node=1" in command and "--device cuda" in command
    assert all(str(tmp_path) in c for c in commands if "--json" in c or "checkpoint" in c)


def test_the_check_knows_every_chapter_and_which_ones_checkpoint(repo_root):
    import papermill
    from conftest import toc_notebooks

    assert gpu_check.CHAPTERS == tuple(toc_notebooks())
    def parameters(name):
        return papermill.inspect_notebook(str(repo_root / "notebooks" / f"{name}.ipynb"))

    with_checkpoints = {name for name in gpu_check.CHAPTERS if "checkpoint_dir" in parameters(name)}
    assert set(gpu_check.WITH_CHECKPOINTS) == with_checkpoints
