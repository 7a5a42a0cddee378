"""The studio's only door into the pipelines: the backend (a composition root over the services), their specs,
typed results and queries, and the few names the UI shows (prompt choices, job states, library statuses).

    backend = Backend.open("workspace")
    job = backend.generation.submit(GenerationSpec(model="demo", period=..., composer=..., instrumentation=...))
    backend.jobs.wait(job.id, 60); backend.generation.result(backend.jobs.get(job.id)).pieces
"""
from pipelines.abc.prompts import Prompt, composers, instrumentations, periods
from pipelines.service.backend import Backend
from pipelines.service.datasets import (
    CORPUS,
    SCORE_UPLOADS,
    BuiltFile,
    DatasetBuildResult,
    DatasetService,
    DatasetSpec,
    DatasetSummary,
    PieceLabels,
)
from pipelines.service.dpo import DPOPairs, DPOResult, DPOService, DPOSpec
from pipelines.service.generation import (
    CONTINUE_UPLOADS,
    Estimate,
    GenerationResult,
    GenerationService,
    GenerationSpec,
    PieceFiles,
    PieceResult,
    Sketch,
)
from pipelines.service.jobs import FINISHED, STATES, Job, JobQueue
from pipelines.service.library import STATUSES, Generation, Library
from pipelines.service.models import DEMO, NOTAGENX, PRESET_NAMES, ModelChoice, ModelService, SystemStatus
from pipelines.service.settings import Settings
from pipelines.service.training import (
    CPU_BUDGET_S,
    ENDINGS,
    RunState,
    TrainingPlan,
    TrainingResult,
    TrainingService,
    TrainingSpec,
)
from pipelines.service.workspace import Workspace

__all__ = [
    "Backend", "BuiltFile", "CONTINUE_UPLOADS", "CORPUS", "CPU_BUDGET_S", "DEMO", "DPOPairs", "DPOResult",
    "DPOService", "DPOSpec", "DatasetBuildResult", "DatasetService", "DatasetSpec", "DatasetSummary", "ENDINGS", "Estimate",
    "FINISHED", "Generation", "GenerationResult", "GenerationService", "GenerationSpec", "Job", "JobQueue", "Library",
    "ModelChoice", "ModelService", "NOTAGENX", "PRESET_NAMES", "PieceFiles", "PieceLabels", "PieceResult", "Prompt",
    "RunState", "SCORE_UPLOADS", "STATES", "STATUSES", "Settings", "Sketch", "SystemStatus", "TrainingPlan", "TrainingResult",
    "TrainingService", "TrainingSpec", "Workspace", "composers", "instrumentations", "periods",
]
