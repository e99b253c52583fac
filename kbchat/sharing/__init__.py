"""Shared Q&A, the consented path to a fine-tuning dataset: the share store and its review decisions
(store.py), QA-sheet import (sheets.py), export formats with redaction (export.py) and dataset statistics
(stats.py).
"""

from __future__ import annotations

from kbchat import lazy_face

# name -> the module that owns it
_PUBLIC = {
    "SharedQA": "kbchat.sharing.store",
    "ShareStore": "kbchat.sharing.store",
    "import_sheet": "kbchat.sharing.sheets",
    "SheetError": "kbchat.sharing.sheets",
    "export_records": "kbchat.sharing.export",
    "FORMATS": "kbchat.sharing.export",
    "redact": "kbchat.sharing.export",
    "dataset_stats": "kbchat.sharing.stats",
    "format_stats": "kbchat.sharing.stats",
}

__getattr__ = lazy_face(__name__, _PUBLIC)


__all__ = sorted(_PUBLIC)
