"""The studio's composition root: one workspace's settings, library, job queue and services, built and closed together.

Each service is the door for one concern (`models`, `generation`, `datasets`, `training`,
`dpo`); the job queue (`jobs`) runs their long work and the library (`library`) keeps every
generation. Every name or path that comes from the UI (or over HTTP) goes through the
workspace's path check inside the services, so each handler is re-checked on the server
whatever the browser sent.
"""
from __future__ import annotations

from pipelines.service.datasets import DatasetService
from pipelines.service.dpo import DPOService
from pipelines.service.generation import GenerationService
from pipelines.service.jobs import JobQueue
from pipelines.service.library import Library
from pipelines.service.models import ModelService
from pipelines.service.settings import Settings, read_settings
from pipelines.service.training import TrainingService
from pipelines.service.workspace import Workspace


class Backend:
    def __init__(self, workspace: Workspace, settings: Settings | None = None):
        self.workspace = workspace
        self.settings = settings or read_settings(workspace.settings_path)
        self.library = Library(workspace.library_path)
        self.jobs = JobQueue(workspace.area("jobs"))
        self.models = ModelService(workspace, self.settings, self.jobs)
        self.datasets = DatasetService(workspace, self.jobs)
        self.generation = GenerationService(workspace, self.settings, self.jobs, self.models, self.library)
        self.training = TrainingService(workspace, self.settings, self.jobs, self.models, self.datasets)
        self.dpo = DPOService(workspace, self.settings, self.jobs, self.models, self.datasets, self.library)

    @classmethod
    def open(cls, root) -> "Backend":
        """The backend of the workspace at `root` (created when missing)."""
        return cls(Workspace.open(root))

    def close(self) -> None:
        self.jobs.close()
        self.models.close()
