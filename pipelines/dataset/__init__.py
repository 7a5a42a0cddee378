"""The dataset pipeline: score files to annotated, key-augmented NotaGen training data.

Public entry points (the studio's Dataset and Annotate tabs and the trainer use these):
- `build_dataset(sources, out_dir, config, on_progress, should_stop) -> BuildReport`
- `build_corpus_dataset(out_dir, limit, ...)`: the labelled dataset from music21's bundled corpus
- `reannotate(out_dir, labels)`: change period / composer / instrumentation without converting again
- `load_manifest(out_dir)`, `load_report(out_dir)`, `load_header_choices(out_dir)`, `read_labels_csv(path)`
"""
from pipelines.dataset.annotate import Labels, notagenx_vocabulary, read_labels_csv, suggest_instrumentation
from pipelines.dataset.build import (
                    BuildReport,
                    FileResult,
                    augmented_path,
                    build_dataset,
                    interleaved_path,
                    load_header_choices,
                    load_manifest,
                    load_report,
                    reannotate,
)
from pipelines.dataset.config import DatasetConfig
from pipelines.dataset.corpus import build_corpus_dataset, corpus_sources
from pipelines.dataset.preprocess import KEYS

__all__ = [
    "BuildReport", "DatasetConfig", "FileResult", "KEYS", "Labels", "augmented_path", "build_corpus_dataset",
    "build_dataset", "corpus_sources", "interleaved_path", "load_header_choices", "load_manifest", "load_report",
    "notagenx_vocabulary", "read_labels_csv", "reannotate", "suggest_instrumentation",
]
