"""Fine-tuning from reviewed Q&A: a dataset snapshot of the approved records with its card and the files
other trainers read (dataset.py, recipes.py), LoRA training with TRL and PEFT (train.py), base vs adapter
evaluation with chrF (evaluation.py) and what serves the adapter (serve.py). trl, peft, datasets and
transformers are optional (`pip install 'kbchat[finetune]'`) and imported only when training or evaluating.
"""

from __future__ import annotations

from kbchat import lazy_face

# name -> the module that owns it
_PUBLIC = {
    "prepare_dataset": "kbchat.finetune.dataset",
    "Snapshot": "kbchat.finetune.dataset",
    "MIN_PAIRS": "kbchat.finetune.dataset",
    "train": "kbchat.finetune.train",
    "TrainOptions": "kbchat.finetune.train",
    "evaluate_adapter": "kbchat.finetune.evaluation",
    "chrf": "kbchat.finetune.evaluation",
    "serve_files": "kbchat.finetune.serve",
}

__getattr__ = lazy_face(__name__, _PUBLIC)


__all__ = sorted(_PUBLIC)
