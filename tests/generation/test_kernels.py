"""The Triton decode kernels, run by Triton's interpreter on the CPU (see kernel_checks.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interpreter
pytest.importorskip("triton")
CHECKS = Path(__file__).with_name("kernel_checks.py")
REPO = Path(__file__).resolve().parents[2]


def run_check(name: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(CHECKS), name], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# Each check (a function in kernel_checks.py) and the line it prints when it passes.
CHECK_LINES = {
    "stacks_equal_the_modules": "stacks equal the modules",
    "engine_pieces_equal": "engine pieces equal",
    "ended_patch_is_skipped": "ended patch skipped",
    "pair_stack_equals_the_modules": "pair stack equals the modules",
    "engine_pair_pieces_equal": "engine pair pieces equal",
    "ended_pair_patch_is_skipped": "ended pair patch skipped",
    "other_head_sizes_run_the_modules": "other head sizes run the modules",
}


SLOW_CHECKS = {"engine_pair_pieces_equal"}  # over ~10 s on two cores


@pytest.mark.parametrize("check", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CHECKS else c
                                   for c in CHECK_LINES])
def test_decode_kernel_check(check):
    assert CHECK_LINES[check] in run_check(check)
