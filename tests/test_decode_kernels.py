"""The Triton decode kernels, run by Triton's interpreter on the CPU (see decode_kernel_checks)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
CHECKS = Path(__file__).with_name("decode_kernel_checks.py")
REPO = Path(__file__).resolve().parents[1]


def run_check(name: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(CHECKS), name], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_fused_stacks_equal_the_modules():
    assert "stacks equal the modules" in run_check("stacks_equal_the_modules")


def test_engine_with_fused_kernels_writes_the_same_pieces():
    assert "engine pieces equal" in run_check("engine_pieces_equal")


def test_fused_char_stack_skips_the_rest_of_an_ended_patch():
    assert "ended patch skipped" in run_check("ended_patch_is_skipped")


def test_pair_stack_equals_the_modules():
    assert "pair stack equals the modules" in run_check("pair_stack_equals_the_modules")


def test_engine_drawing_two_chars_a_pass_writes_the_same_piece():
    assert "engine pair pieces equal" in run_check("engine_pair_pieces_equal")


def test_pair_passes_skip_the_rest_of_an_ended_patch():
    assert "ended pair patch skipped" in run_check("ended_pair_patch_is_skipped")


def test_head_sizes_the_kernels_cannot_tile_run_the_modules():
    assert "other head sizes run the modules" in run_check("other_head_sizes_run_the_modules")
