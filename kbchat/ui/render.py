"""Text the chat shows, made without Chainlit: answers with Source pills, inert passage and model text,
safe upload names (a follow-up's search query is kbchat.search.retrieve.search_query)."""

from __future__ import annotations

import re

from kbchat.messages import place_ref, t

_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_NAME_SAFE = str.maketrans({"[": "(", "]": ")", "<": "‹", ">": "›", "`": "'"})


def safe_name(raw) -> str:
    """Display/catalog name of an upload: its last path component, no control or link characters,
    at most 120 characters. Never used as a path (the file lives at Chainlit's el.path)."""
    name = _CTRL.sub("", re.split(r"[\\/]", raw or "")[-1]).strip() or "file"
    if len(name) > 120:
        name = name[:100] + "…" + name[-15:]
    return name.translate(_NAME_SAFE)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def md_escape(text: str) -> str:
    """Render passage text inert: no links, HTML or formatting from the PDF."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?[^)\n]*\)")


def inert(text: str) -> str:
    """Model output may echo passage text: no live links/images (exfiltration) and no raw HTML."""
    text = _MD_LINK.sub(lambda m: f"{m.group(1)} (`{m.group(2)}`)" if m.group(2) else m.group(1), text)
    return text.replace("<", "\\<")


def render(answer_text: str, hits: list, citations: list, lang: str = "en",
           closest: bool = False) -> tuple[str, list[int]]:
    """Answer with [n] turned into 'Source n' pills (in the UI language), then the sources: cited first.
    ``closest``: the documents do not cover the question; the passages are headed as the closest ones."""
    answer_text = inert(answer_text)
    order = [ci.n for ci in citations] + [i for i in range(1, len(hits) + 1)
                                         if i not in {ci.n for ci in citations}]
    renumber = {old: new for new, old in enumerate(order, 1)}

    def sub(m: re.Match) -> str:
        nums = [int(x) for x in re.findall(r"\d+", m.group(0))]
        names = [t(lang, "source", n=renumber[x]) for x in nums if x in renumber]
        return " (" + ", ".join(names) + ")" if names else m.group(0)

    body = re.sub(r"\s*[\[【]\s*\d+(?:\s*[,，、]\s*\d+)*\s*[\]】]", sub, answer_text)
    lines = []
    cited = {ci.n for ci in citations}
    for old in order:
        h = hits[old - 1]
        excerpt = md_escape(h.text)
        excerpt = excerpt[:220] + ("…" if len(excerpt) > 220 else "")
        head = t(lang, "ret_closest") if closest else t(lang, "cited") if cited else t(lang, "found")
        if old == order[0]:
            lines.append(f"\n\n**{head}**")
        elif old not in cited and order.index(old) == len(cited) and cited:
            lines.append(f"\n**{t(lang, 'others')}**")
        where = place_ref(lang, h.page, h.page_label, scanned=getattr(h.passage, "ocr", False))
        lines.append(f"- {t(lang, 'source', n=renumber[old])} — {md_escape(h.source)}, {where}: “{excerpt}”")
    return body + "\n".join(lines), order
