"""The models service: which models the studio lists, their files, cards and prompts, the one loaded engine,
and the system status the studio's strip shows.

Every model the UI names goes through `model_path`: the demo, NotaGen-X, or a .pth
inside the workspace's models/ or runs/ folders, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.abc.prompts import Prompt, parse_prompt, read_prompts
from pipelines.errors import NotaGenError, TrainingError, WorkspaceError
from pipelines.generation.header import HeaderChoices, offered_choices
from pipelines.generation.loading import ModelSlot
from pipelines.model.checkpoint import ModelCard, read_card
from pipelines.model.config import PRESETS, NotaGenConfig, preset
from pipelines.model.notagenx import NOTAGENX_FILE, find_notagenx, is_notagenx_name
from pipelines.model.registry import DEMO_MODEL, NOTAGENX_PROMPTS, default_model_path, prompt_vocabulary
from pipelines.model.runtime import pick_runtime
from pipelines.service.jobs import JobQueue
from pipelines.service.settings import Settings
from pipelines.service.workspace import Workspace, inside

DEMO = "demo"
NOTAGENX = "notagen-x"
MODEL_SUFFIXES = (".pth",)
PRESET_NAMES = tuple(PRESETS)


@dataclass(frozen=True)
class ModelChoice:
    ref: str  # what the UI sends back: "demo", "notagen-x" or a workspace-relative .pth path
    label: str
    path: Path


@dataclass(frozen=True)
class SystemStatus:
    device: str
    gpu: str
    vram_used_gib: float | None
    vram_free_gib: float | None
    vram_total_gib: float | None
    dtype: str
    loaded_model: str
    running: str  # the job running on the GPU lane, "" when idle
    waiting: int


class ModelService:
    def __init__(self, workspace: Workspace, settings: Settings, jobs: JobQueue):
        self.workspace = workspace
        self.settings = settings
        self.jobs = jobs
        self.slot = ModelSlot()
        self._cards: dict[tuple, ModelCard] = {}  # keyed by (path, size, mtime)

    def close(self) -> None:
        self.slot.unload()

    def list(self) -> list[ModelChoice]:
        """Every model the studio can load: the demo, NotaGen-X when present, checkpoints in models/ and runs/."""
        ws = self.workspace
        found = []
        if DEMO_MODEL.is_file():
            found.append(ModelChoice(DEMO, "Demo model (built in)", DEMO_MODEL))
        notagenx = ws.area("models") / NOTAGENX_FILE
        if notagenx.is_file():
            found.append(ModelChoice(NOTAGENX, "NotaGen-X", notagenx))
        for rel in ws.files("models", MODEL_SUFFIXES):
            if Path(rel).name != NOTAGENX_FILE:
                found.append(ModelChoice(rel, rel, ws.root / rel))
        for run in ws.folders("runs"):
            for name, what in (("best.pth", "best"), ("merged.pth", "merged")):
                path = ws.area("runs") / run / name
                if path.is_file():
                    found.append(ModelChoice(f"runs/{run}/{name}", f"run {run} ({what})", path))
            for path in sorted((ws.area("runs") / run).glob("iter_*/model.pth")):
                found.append(ModelChoice(ws.relative(path), f"DPO {run} {path.parent.name}", path))
        return found

    def path(self, ref: str) -> Path:
        """The file of a model the UI names; only models the studio lists, inside the workspace or built in."""
        ref = (ref or "").strip()
        if not ref:
            raise NotaGenError("no model chosen; pick one in the model list (none installed yet? train one "
                               "in the Train tab or copy a .pth checkpoint into the workspace's models folder)")
        if ref == DEMO:
            return default_model_path()
        if ref == NOTAGENX:
            path = find_notagenx([self.workspace.area("models")])
            if path is None:
                raise NotaGenError("NotaGen-X is not in the workspace's models folder; download it first")
            return path
        path = inside(self.workspace.root, ref, must_exist=True)
        if path.suffix.lower() not in MODEL_SUFFIXES or not path.is_file():
            raise WorkspaceError(f"{ref!r}: not a model file (.pth)")
        if self.workspace.relative(path).split("/")[0] not in ("models", "runs"):
            raise WorkspaceError(f"{ref!r}: models live in the workspace's models/ or runs/ folders")
        return path

    def card(self, ref: str) -> tuple[Path, ModelCard]:
        """A listed model's file and its card (inferred from the tensor shapes for an upstream file).

        Cached until the file changes: the tabs ask on every change of a model, batch size or rank.
        """
        path = self.path(ref)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._cards:
            self._cards[key] = read_card(path)
        return path, self._cards[key]

    def config(self, ref: str = "", preset_name: str = "") -> NotaGenConfig:
        """The network shape of a listed model, or of a preset (training from scratch)."""
        if ref:
            return self.card(ref)[1].config
        try:
            return preset(preset_name or DEMO)
        except ValueError as e:
            raise TrainingError(str(e)) from None

    def prompts(self, ref: str) -> tuple[list[Prompt], str]:
        """The prompts a model knows, for the cascading dropdowns, and a note when they are borrowed."""
        path, card = self.card(ref)
        lines = prompt_vocabulary(path, card)
        note = ""
        if not lines:
            lines = [p.line for p in read_prompts(NOTAGENX_PROMPTS)]
            note = ("this model records no prompt vocabulary; NotaGen-X's prompts are listed, and any "
                    "prompt is accepted")
        return [parse_prompt(line) for line in lines], note

    def header_choices(self, ref: str, prompt: Prompt | str) -> HeaderChoices:
        """The meters and keys to offer for a model's prompt: those its pieces used in training first
        (most used first), then the common ones; a model that records none (NotaGen-X, the demo model)
        offers the common ones, with a note saying so. Any value stays allowed; `HeaderChoices.unseen`
        words the note for one the model never saw."""
        line = prompt.line if isinstance(prompt, Prompt) else str(prompt)
        return offered_choices(self.card(ref)[1].header_choices, line)

    def ref_of(self, base: str) -> str:
        """The model ref of a run's recorded base (NotaGen-X's name or the file's absolute path)."""
        if is_notagenx_name(base):
            return NOTAGENX
        path = Path(base)
        if path.is_absolute() and path.resolve().is_relative_to(self.workspace.root):
            return self.workspace.relative(path)
        for model in self.list():
            if model.path.resolve() == path.resolve():
                return model.ref
        raise TrainingError(f"the run's base model {path.name} is no longer in the workspace")

    def unload(self) -> None:
        self.slot.unload()

    def system(self) -> SystemStatus:
        runtime = pick_runtime(self.settings.device, self.settings.dtype)
        gpu, used, free, total = "none (CPU)", None, None, None
        if runtime.device.type == "cuda":
            gpu = torch.cuda.get_device_name(runtime.device)
            free_b, total_b = torch.cuda.mem_get_info(runtime.device)
            free, total, used = free_b / 2**30, total_b / 2**30, (total_b - free_b) / 2**30
        elif runtime.device.type == "mps":
            gpu = "Apple GPU (MPS)"
        engine = self.slot.loaded()
        gpu_jobs = [j for j in self.jobs.list(200) if j.lane == "gpu"]
        running = [j for j in gpu_jobs if j.state == "running"]
        waiting = sum(1 for j in gpu_jobs if j.state == "queued")
        return SystemStatus(
            device=str(runtime.device), gpu=gpu, vram_used_gib=used, vram_free_gib=free, vram_total_gib=total,
            dtype=engine.runtime.dtype_name if engine else runtime.dtype_name,
            loaded_model=(engine.name if engine else ""), running=running[0].title if running else "",
            waiting=waiting)
