"""How long a DPO run may take, said before it starts: from the device's generation speed and step time.

A run writes `samples` pieces per iteration (and as many more to measure its last model), each
up to `max_patches` patches (none without a scorer), then takes up to `steps` optimiser steps. The estimate is an upper
bound: it counts every piece at its patch limit (most end earlier) and every step (a run with
fewer pairs takes fewer, `DPOConfig.optimiser_steps`).

The speeds (`Rates`) are those a finished run on this kind of device recorded in its
summary.json (`rates`), else the recorded figures below:

- GPU: the engine's chars/s for NotaGen-X's shape on an H100 by batch (benchmarks/README.md,
  "Generation"), which small models match or beat (they are bound by the launch overhead); a
  DPOP step of one pair of 1024-patch pieces 0.14 s for NotaGen-X (README, "DPO memory"), at
  least 0.03 s.
- CPU: the demo model (7.9 M parameters) on a 2-core box with one thread, eight pieces at a
  time: 300 chars/s, and a step of one pair of 128-patch pieces 3.7 s (docs/dpo.md). Other models
  scale with their parameter count.
Torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CHARS_PER_PATCH = 12.3  # real bars make patches of 12.3 chars on average (benchmarks/README.md)
DEMO_PARAMETERS = 7_932_928
NOTAGEN_X_PARAMETERS = 515_738_880
# chars/s of the engine on an H100 by batch, NotaGen-X's shape (benchmarks/README.md)
GPU_CHARS_PER_SECOND = ((1, 5_106.0), (2, 8_919.0), (8, 17_063.0), (32, 48_165.0))


@dataclass(frozen=True)
class Rates:
    """Speeds of one device for a model of `parameters` parameters."""

    chars_per_second: float  # generation, all pieces of a batch together
    seconds_per_step_patch: float  # one DPOP step of one pair, per patch of its pieces
    parameters: int
    source: str  # where the figures come from, in words
    min_seconds_per_step: float = 0.0

    def generation_speed(self, parameters: int) -> float:
        """chars/s for a model of `parameters`: slower in proportion where it is larger (never faster)."""
        return self.chars_per_second * min(1.0, self.parameters / max(parameters, 1))

    def step_seconds(self, parameters: int, patches: int, pairs_per_step: int) -> float:
        scaled = self.seconds_per_step_patch * patches * pairs_per_step * parameters / self.parameters
        return max(scaled, self.min_seconds_per_step)


def recorded_rates(device_type: str, batch: int) -> Rates:
    """The recorded figures of the module's docstring for `device_type` ("cuda", "cpu", "mps")."""
    if device_type == "cuda":
        return Rates(gpu_chars_per_second(batch), 0.14 / 1024, NOTAGEN_X_PARAMETERS,
                     "recorded on an H100", min_seconds_per_step=0.03)
    # MPS has no recorded figures: the CPU's are the cautious guess
    return Rates(300.0, 3.7 / 128, DEMO_PARAMETERS, "recorded on a 2-core CPU")


def gpu_chars_per_second(batch: int) -> float:
    """The H100 table, interpolated on log(batch); flat past batch 32."""
    points = GPU_CHARS_PER_SECOND
    if batch <= points[0][0]:
        return points[0][1]
    for (b0, r0), (b1, r1) in zip(points, points[1:]):
        if batch <= b1:
            t = (math.log(batch) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return r0 + t * (r1 - r0)
    return points[-1][1]


def measured_rates(summary: dict) -> Rates | None:
    """The speeds a run recorded in its summary.json (`rates`), or None where it measured none."""
    rates = summary.get("rates") or {}
    chars, seconds = rates.get("chars") or 0, rates.get("generation_seconds") or 0.0
    step, parameters, patches = rates.get("seconds_per_step"), rates.get("parameters"), rates.get("step_patches")
    if not (chars and seconds and step and parameters and patches):
        return None
    per_pair = max(1, (summary.get("config") or {}).get("pairs_per_step") or 1)
    return Rates(chars / seconds, step / patches / per_pair, int(parameters), "measured by the last run here")


@dataclass(frozen=True)
class DPOEstimate:
    seconds: float  # at most
    generation_seconds: float
    optimise_seconds: float
    text: str


def describe_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(10, round(seconds / 10) * 10):.0f} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60):.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_dpo_time(settings: dict, parameters: int, patch_length: int, device_type: str,
                      rates: Rates | None = None) -> DPOEstimate:
    """The longest a run of `settings` (DPOConfig's fields by name) may take for a model of `parameters`
    parameters and a context of `patch_length` patches on `device_type`."""
    # without a scorer no piece is written: the user's judgements are the pairs
    samples = settings["samples"] if settings["scorer"] != "none" else 0
    batch = max(1, min(settings["generation_batch"], samples or 1))
    rates = rates or recorded_rates(device_type, batch)
    limit = settings["max_patches"]
    measured = settings["scorer"] != "none" and (settings["score_final"] or settings["keep_best"])
    stages = settings["iterations"] + (1 if measured else 0)
    batches = math.ceil(samples / batch) if samples else 0
    speed = rates.generation_speed(parameters)
    if limit:
        per_batch = min(batch * limit * CHARS_PER_PATCH / speed, settings["max_seconds"])
    else:  # no patch limit: a piece that never ends holds its batch to the time limit
        per_batch = settings["max_seconds"]
    generation = stages * batches * per_batch
    patches = min(limit or patch_length, patch_length)
    step = rates.step_seconds(parameters, patches, settings["pairs_per_step"])
    optimise = settings["iterations"] * settings["steps"] * step
    total = generation + optimise
    where = {"cuda": "this GPU", "cpu": "this CPU", "mps": "this Mac's GPU"}.get(device_type, device_type)
    pieces = f"{samples} pieces" + (f" of up to {limit} patches" if limit else " with no patch limit")
    written = f"{stages} x {pieces}, then " if samples else "no pieces written, "
    text = (f"at most about {describe_seconds(total)} on {where}: {written}up to {settings['steps']} steps per "
            f"iteration ({rates.source})")
    return DPOEstimate(total, generation, optimise, text)
