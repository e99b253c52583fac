"""Personas: the YAML files in ``personas/`` validated into :class:`Persona`, and their languages.

A persona is product content (prompt, few-shot turns, starters, names in several languages);
this module owns its schema, the system prompt built from it and the UI-language fallback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from kbchat.errors import ConfigError

DEFAULT_LANGUAGE = "en"
ANSWER_LANGUAGE_RULE = "Answer in the language of the user's question."

_LANG_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_SLUG = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# Browser locales that mean Traditional / Simplified Chinese, by script or by region.
_HANT_REGIONS = {"tw", "hk", "mo"}
_HANS_REGIONS = {"cn", "sg", "my"}


def resolve_language(language: str | None, available: Iterable[str]) -> str:
    """The best key of ``available`` for a browser/UI ``language``; ``"en"`` when nothing fits.

    Order: exact tag ("zh-TW") -> the same language by script or region (zh-Hant*, zh-HK, zh-MO
    -> zh-TW; zh-Hans*, zh-SG, zh -> zh-CN) -> base language ("ja-JP" -> "ja") -> "en".
    Matching ignores case and accepts "_" for "-".
    """
    keys = {k.lower(): k for k in available}
    tag = (language or "").strip().replace("_", "-").lower()
    if tag in keys:
        return keys[tag]
    parts = tag.split("-")
    base, subtags = parts[0], set(parts[1:])
    if base == "zh":
        if "hant" in subtags or subtags & _HANT_REGIONS:
            candidate = "zh-tw"
        elif "hans" in subtags or subtags & _HANS_REGIONS or not subtags:
            candidate = "zh-cn"
        else:
            candidate = ""
        if candidate in keys:
            return keys[candidate]
    if base in keys:
        return keys[base]
    return keys.get(DEFAULT_LANGUAGE, DEFAULT_LANGUAGE)


def _check_languages(value: dict[str, Any]) -> dict[str, Any]:
    bad = [k for k in value if not _LANG_TAG.match(k)]
    if bad:
        raise ValueError(f"not a language tag: {', '.join(map(repr, bad))} (use e.g. 'en', 'zh-TW', 'ja')")
    if DEFAULT_LANGUAGE not in value:
        raise ValueError(f"the '{DEFAULT_LANGUAGE}' entry is required")
    return value


NonEmpty = Annotated[str, Field(min_length=1)]
Localized = Annotated[dict[str, NonEmpty], AfterValidator(_check_languages)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Prompt(_Strict):
    """The persona's instructions: who it is, what it does, the rules it keeps."""

    situation: NonEmpty
    task: NonEmpty
    constraints: list[NonEmpty] = Field(default_factory=list)


class Example(_Strict):
    """One few-shot exchange showing the persona's character."""

    user: NonEmpty
    assistant: NonEmpty


class Starter(_Strict):
    """A conversation starter: ``label`` on the button, ``message`` sent when clicked."""

    label: NonEmpty
    message: NonEmpty


class Retrieval(_Strict):
    """How many passages to retrieve and whether the persona's knowledge bases are searched."""

    k: int = Field(6, ge=1, le=20)
    use_shared_knowledge: bool = True  # False: only the chat's own uploads


class PersonaLLM(_Strict):
    """The persona's own model (e.g. a fine-tuned adapter served by vLLM or Ollama), used instead of the
    global LLM for its chats: the model name, and optionally the server and the variable holding its key."""

    model: NonEmpty
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None


BaseName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]


def _unique(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("name at least one knowledge base (e.g. [default])")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise ValueError(f"knowledge base named twice: {', '.join(dup)}")
    return value


class Persona(_Strict):
    """One chat persona (a Chainlit chat profile in the app), loaded from ``personas/<id>.yaml``."""

    id: Annotated[str, Field(pattern=_SLUG, max_length=64)]
    default: bool = False
    icon: Annotated[str, Field(pattern=r"^/public/[^\s]+$")]
    name: Localized
    description: Localized
    prompt: Prompt
    examples: list[Example] = Field(default_factory=list)
    starters: Annotated[dict[str, list[Starter]], AfterValidator(_check_languages)]
    retrieval: Retrieval = Field(default_factory=Retrieval)
    # The knowledge bases the persona's chats search (with the chat's own uploads); see kbchat.knowledge.
    knowledge: Annotated[list[BaseName], AfterValidator(_unique)] = Field(default_factory=lambda: ["default"])
    temperature: float = Field(0.2, ge=0, le=2)
    reasoning_default: bool = False
    # Groups that see and may select this persona (empty: everybody); admins see every persona.
    llm: PersonaLLM | None = None  # None: the global LLM (KBCHAT_LLM_*)
    visible_to: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]] = Field(default_factory=list)

    def visible(self, groups: set[str], is_admin: bool = False) -> bool:
        """Whether a user in ``groups`` sees this persona in the menu and may select it."""
        return is_admin or not self.visible_to or bool(groups & set(self.visible_to))

    def system_prompt(self) -> str:
        """The system message: situation, task and the constraints as a bulleted list."""
        rules = [*self.prompt.constraints, ANSWER_LANGUAGE_RULE]
        return "\n\n".join(
            [
                self.prompt.situation,
                f"Your task: {self.prompt.task}",
                "Rules:\n" + "\n".join(f"- {rule}" for rule in rules),
            ]
        )

    def few_shot(self) -> list[tuple[str, str]]:
        """The example turns as ``(role, text)`` pairs, role being ``"user"`` or ``"assistant"``."""
        turns: list[tuple[str, str]] = []
        for ex in self.examples:
            turns += [("user", ex.user), ("assistant", ex.assistant)]
        return turns

    def display_name(self, lang: str | None = None) -> str:
        """The name in ``lang``, falling back as :func:`resolve_language` does."""
        return self.name[resolve_language(lang, self.name)]

    def describe(self, lang: str | None = None) -> str:
        """The description in ``lang`` (Markdown), with language fallback."""
        return self.description[resolve_language(lang, self.description)]

    def starters_for(self, lang: str | None = None) -> list[Starter]:
        """The starters in ``lang``, with language fallback."""
        return list(self.starters[resolve_language(lang, self.starters)])


class PersonaInvalid(ConfigError):
    """A persona that fails validation (a YAML file, an import, the console's editor): ``problems`` lists
    ``(field, message)`` pairs, ``str(err)`` is ``"<where>: field 'f': message; ..."``, one line."""

    def __init__(self, where: str, problems: list[tuple[str, str]]):
        self.where = where
        self.problems = list(problems)
        super().__init__(f"{where}: " + "; ".join(
            msg if field == "" else f"field '{field}': {msg}" for field, msg in self.problems))

    def by_field(self) -> dict[str, str]:
        """The message of each field (the top-level field name, e.g. 'retrieval' for 'retrieval.k')."""
        out: dict[str, str] = {}
        for field, msg in self.problems:
            top = re.split(r"[.\[]", field, maxsplit=1)[0] if field else ""
            line = msg if field == "" else f"field '{field}': {msg}"
            out[top] = f"{out[top]}; {line}" if top in out else line
        return out


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    return [(_field(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in err.errors(include_url=False)]


def validate_persona(data: Any, where: str, *, bases: Iterable[str] | None = None) -> Persona:
    """The one validator of a persona's fields, for files, imports and the console alike.

    ``where`` starts every message (a file path, or "persona 'x'"); with ``bases`` (the known
    knowledge-base names) a base the persona names must be one of them. Raises :class:`PersonaInvalid`.
    """
    if not isinstance(data, dict):
        raise PersonaInvalid(where, [("", f"expected a mapping of persona fields, got {type(data).__name__}")])
    try:
        persona = Persona.model_validate(data)
    except ValidationError as e:
        raise PersonaInvalid(where, _problems(e)) from None
    if bases is not None:
        problem = base_problem(persona, bases)
        if problem:
            raise PersonaInvalid(where, [problem])
    return persona


def base_problem(persona: Persona, bases: Iterable[str]) -> tuple[str, str] | None:
    """``("knowledge", message)`` when ``persona`` names a knowledge base not in ``bases``, else None."""
    known = list(bases)
    for name in persona.knowledge:
        if name not in known:
            return ("knowledge", f"unknown knowledge base '{name}' (known: {', '.join(known)}); "
                                 f"create it with `kbchat kb create {name}`")
    return None


def split_broken(personas: dict[str, Persona], bases: Iterable[str]) -> tuple[dict[str, Persona], dict[str, str]]:
    """(the personas whose knowledge bases all exist, {id: why} for the others): a persona naming a
    missing base is left out of the chat while the others keep working."""
    known = list(bases)
    ok: dict[str, Persona] = {}
    broken: dict[str, str] = {}
    for pid, persona in personas.items():
        problem = base_problem(persona, known)
        if problem:
            broken[pid] = f"field '{problem[0]}': {problem[1]}"
        else:
            ok[pid] = persona
    return ok, broken


def load_persona(path: Path) -> Persona:
    """Parse and validate one persona file; :class:`ConfigError` names the file and the field."""
    persona = validate_persona(read_yaml(path), str(path))
    if persona.id != path.stem:
        raise PersonaInvalid(str(path), [("id", f"'{persona.id}' must match the file name '{path.stem}'")])
    return persona


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``; :class:`ConfigError` with the line and column of a syntax error."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None


def parse_persona_yaml(text: str, where: str) -> Persona:
    """A persona from the text of a YAML file (an upload), validated as a file is."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: invalid YAML{at}: {getattr(e, 'problem', None) or type(e).__name__}") from None
    return validate_persona(data, where)


def persona_data(persona: Persona) -> dict[str, Any]:
    """The persona as the plain mapping its YAML file holds (fields left unset stay out)."""
    return persona.model_dump(mode="json", exclude_unset=True)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_persona(persona: Persona) -> str:
    """The persona as a YAML file (block style, multi-line text as literal blocks, UTF-8 as is)."""
    return yaml.dump(persona_data(persona), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


def check_default(personas: dict[str, Persona], where: str, source: dict[str, str] | None = None) -> None:
    """Exactly one of ``personas`` has ``default: true`` (the loader's rule for a folder)."""
    defaults = [pid for pid, p in personas.items() if p.default]
    if len(defaults) != 1:
        named = ", ".join((source or {}).get(pid, pid) for pid in defaults) or "none"
        raise ConfigError(f"{where}: field 'default': exactly one persona must have 'default: true' (found: {named})")


def default_first(personas: dict[str, Persona]) -> dict[str, Persona]:
    """The same personas, the default one (if any) first."""
    first = next((pid for pid, p in personas.items() if p.default), None)
    if first is None:
        return dict(personas)
    return {first: personas[first], **{pid: p for pid, p in personas.items() if pid != first}}


def load_personas(folder: str | Path, *, bases: Iterable[str] | None = None) -> dict[str, Persona]:
    """All ``*.yaml`` personas of ``folder`` by id, in file-name order with the default first.

    Raises :class:`ConfigError` for an invalid file, duplicate ids, or not exactly one default; with
    ``bases`` (the known knowledge-base names, kbchat.knowledge.base_names), also for a persona naming
    a base that is not one of them (the error names the file, the field and the base).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: persona folder not found")
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{folder}: no persona files (*.yaml)")
    personas: dict[str, Persona] = {}
    source: dict[str, str] = {}
    for path in files:
        persona = load_persona(path)
        if bases is not None:
            problem = base_problem(persona, bases)
            if problem:
                raise PersonaInvalid(str(path), [problem])
        if persona.id in personas:
            raise PersonaInvalid(str(path), [("id", f"'{persona.id}' is already used by {source[persona.id]}")])
        personas[persona.id] = persona
        source[persona.id] = str(path)
    check_default(personas, str(folder), source)
    return default_first(personas)


# ---------------------------------------------------------------- prompt libraries (act, prompt CSV)

PROMPT_CSV_MAX_BYTES = 20 * 1024 * 1024
DRAFT_ICON = "/public/personas/general.svg"
DRAFT_TASK = "Stay in the role described above for the whole conversation and answer the user's messages in it."


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))[:48].strip("-")


def _summary(text: str, limit: int = 200) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def personas_from_prompt_csv(data: bytes, name: str, taken: Iterable[str] = ()) -> tuple[list[Persona], list[str]]:
    """Draft personas from a prompt library in the common two-column CSV form (``act``, ``prompt``, as
    awesome-chatgpt-prompts; other columns are ignored): (the personas, one line per rejected row).

    Each row becomes a persona whose id is made from ``act`` (unique among ``taken`` and the file), named
    ``act`` in English, with the prompt as its situation. Raises :class:`ConfigError` for a file that is
    not such a CSV at all.
    """
    import csv
    import io

    if len(data) > PROMPT_CSV_MAX_BYTES:
        raise ConfigError(f"{name}: larger than {PROMPT_CSV_MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not a UTF-8 CSV file") from None
    if "\x00" in text:
        raise ConfigError(f"{name}: not a CSV file (binary content)")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise ConfigError(f"{name}: not a CSV file ({e})") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "act" not in header or "prompt" not in header:
        raise ConfigError(f"{name}: expected the columns 'act' and 'prompt' in the first row "
                          f"(found: {', '.join(h for h in header if h) or 'none'})")
    a, p = header.index("act"), header.index("prompt")
    used = set(taken)
    personas: list[Persona] = []
    problems: list[str] = []
    for n, row in enumerate(rows[1:], start=2):
        act = row[a].strip() if len(row) > a else ""
        prompt = row[p].strip() if len(row) > p else ""
        if not act and not prompt:
            continue
        if not act or not prompt:
            problems.append(f"{name}, row {n}: empty '{'act' if not act else 'prompt'}'")
            continue
        base = _slug(act) or f"prompt-{n}"
        pid, i = base, 2
        while pid in used:
            pid, i = f"{base}-{i}", i + 1
        fields = {"id": pid, "icon": DRAFT_ICON, "name": {"en": act[:200]}, "description": {"en": _summary(prompt)},
                  "prompt": {"situation": prompt, "task": DRAFT_TASK}, "starters": {"en": []}}
        try:
            persona = validate_persona(fields, f"{name}, row {n}")
        except PersonaInvalid as e:
            problems.append(str(e))
            continue
        used.add(pid)
        personas.append(persona)
    return personas, problems
