"""The mini-Pythia lab: a tiny GPT-NeoX trained on real English text with a recorded data order.

The embedded default data of causalmem: corpus (:mod:`~causalmem.lab.corpus`, VADER snippets
from PyPI or any text file), byte-level BPE (:mod:`~causalmem.lab.tokenizer`), packing,
Pythia-style instance sampling and token indexes (:mod:`~causalmem.instances`), and
training with AdamW, warm-up + cosine LR and a Pythia-like checkpoint schedule
(:mod:`~causalmem.lab.train`). torch is imported only by the training functions.
"""

from __future__ import annotations

# Eager: these functions shadow their module names (importing the submodule would otherwise
# leave ``causalmem.lab.ground_truth`` / ``causalmem.lab.finetune`` bound to the module, so
# ``from causalmem.lab import finetune`` would return the module). They import no torch at load
# time.
from causalmem.lab.finetune import FinetuneConfig, FinetunedRun, finetune
from causalmem.lab.ground_truth import (
    GroundTruth,
    ReexposureTruth,
    ground_truth,
    reexposure_ground_truth,
)
from lmecon.lazy import lazy_exports

__all__ = [
    "ReexposureTruth",
    "exposures",
    "finetune",
    "reexposure_ground_truth",
    "Corpus",
    "FinetuneConfig",
    "FinetunedRun",
    "GroundTruth",
    "Instances",
    "LabConfig",
    "LabData",
    "MMapIndexedDataset",
    "NumpyTokenIndex",
    "TrainConfig",
    "TrainedRun",
    "ground_truth",
    "lab_checkpoint_steps",
    "load_corpus",
    "load_text_file",
    "load_vader",
    "lr_schedule",
    "macro_batches",
    "pack_documents",
    "prepare_data",
    "sample_macro_batches",
    "train",
    "train_bpe",
    "training_instances",
    "validation_instances",
    "write_indexed_dataset",
]

_WHERE = {
    "exposures": "train",
    "FinetuneConfig": "finetune",
    "FinetunedRun": "finetune",
    "finetune": "finetune",
    "Corpus": "corpus",
    "load_corpus": "corpus",
    "load_text_file": "corpus",
    "load_vader": "corpus",
    "train_bpe": "tokenizer",
    "Instances": "causalmem.instances",
    "MMapIndexedDataset": "causalmem.instances",
    "NumpyTokenIndex": "causalmem.instances",
    "macro_batches": "causalmem.instances",
    "pack_documents": "causalmem.instances",
    "sample_macro_batches": "causalmem.instances",
    "training_instances": "causalmem.instances",
    "validation_instances": "causalmem.instances",
    "write_indexed_dataset": "causalmem.instances",
    "LabConfig": "config",
    "LabData": "train",
    "TrainConfig": "train",
    "TrainedRun": "train",
    "lab_checkpoint_steps": "train",
    "lr_schedule": "train",
    "prepare_data": "train",
    "train": "train",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
