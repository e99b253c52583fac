"""The console's templates and charts without a server: every line a template asks for exists in every
language (keys built in templates too), and chart labels from the database are escaped."""

from __future__ import annotations

import re
from pathlib import Path

from kbchat.messages import MESSAGES

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "kbchat" / "ui" / "admin" / "templates"


def test_every_key_a_template_uses_exists():
    used = {k for p in TEMPLATES.glob("*.html")
            for k in re.findall(r"""\bt\(\s*["']([a-z_][a-z0-9_]*)["']""", p.read_text(encoding="utf-8"))}
    assert len(used) > 100
    missing = sorted(k for k in used if k not in MESSAGES["en"] and not k.endswith("_"))  # "x_" ~ var: below
    assert not missing, missing


def test_keys_built_in_templates_exist():
    from kbchat.sharing.export import EXPORT_STATUSES
    from kbchat.ui.admin.shell import SECTIONS
    from kbchat.ui.admin.system import CHECK_KEYS

    keys = [f"adm_about_{slug}" for slug, _ in SECTIONS] + [key for _, key in SECTIONS]
    keys += [f"adm_export_{s}" for s in EXPORT_STATUSES] + [f"adm_status_{s}" for s in ("ok", "warn", "fail")]
    keys += ["review_approved", "review_rejected", *CHECK_KEYS.values()]
    for lang in MESSAGES:
        assert not [k for k in keys if k not in MESSAGES[lang]], lang


def test_chart_labels_are_escaped():
    from kbchat.ui.admin.charts import bars, columns

    hostile = '<script>alert("x")</script>'
    for svg in (bars([(hostile, 3)]), columns([(hostile, 2), ("b", 0)])):
        assert "<script>" not in str(svg) and "&lt;script&gt;" in str(svg)
    assert "<rect" in str(bars([("a", 1), ("b", 2)])) and str(bars([])).count("<rect") == 0
