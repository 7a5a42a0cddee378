"""Task functions for tests/test_dataset_build.py's worker-pool test; spawned workers import this light module."""
import multiprocessing
import os
import time

MARK = "module default"  # the parent changes it; a spawned worker imports the module afresh and sees this


def where(task):
    if task == "sleep":
        time.sleep(30)
    if task == "raise":
        raise ValueError("bad task")
    return os.getpid(), MARK, multiprocessing.parent_process() is not None
