"""Exceptions the pipelines raise; each message names the file or value and the problem."""


class NotaGenError(Exception):
    """Base class: something a musician can act on."""


class SettingError(NotaGenError, ValueError):
    """A setting outside its range or choices (the CLI and the studio refuse the same values)."""


class CheckpointError(NotaGenError):
    """A model file is missing, unreadable or not a NotaGen checkpoint."""


class AbcError(NotaGenError):
    """ABC text that cannot be tokenised, converted or post-processed."""


class PromptError(NotaGenError):
    """A period / composer / instrumentation outside what a model knows, or malformed."""


class DatasetError(NotaGenError):
    """Scores that cannot become training data, or a folder that is not a built dataset."""


class TrainingError(NotaGenError):
    """A training run that cannot start, resume or finish (bad settings, data or run folder)."""


class RenderError(NotaGenError):
    """A score, MIDI or PDF that cannot be made from a piece (converter failure, time limit)."""


class AudioError(NotaGenError):
    """A SoundFont that cannot be loaded, or MIDI the synthesizer cannot play."""


class WorkspaceError(NotaGenError):
    """A path outside the workspace, a reserved or malformed name, or a workspace that cannot be used."""


class JobError(NotaGenError):
    """A job that cannot be queued, found or cancelled."""


class DPOError(NotaGenError):
    """A preference-optimisation run that cannot start or go on (settings, scorer weights, too few usable pieces)."""


class FileInUseError(NotaGenError, PermissionError):
    """A file another program holds open (antivirus, OneDrive, an editor), so it cannot be replaced now."""
