"""`kbchat doctor`: what kbchat runs on and whether its parts answer: the CPU and the embedder variant
chosen for it (with its measured speed and fidelity), the LLM endpoint, the reranker, the data dir and the
versions. The command a user runs when something is slow or broken; the CLI only prints run()'s report.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from kbchat.search.precision import cpu_info

PACKAGES = ("kbchat", "torch", "sentence-transformers", "transformers", "onnxruntime", "chromadb", "tantivy",
            "pymupdf", "langchain-openai", "chainlit")


@dataclass
class Check:
    """One line of the report: ``status`` is "ok", "warn" or "fail"."""

    name: str
    status: str
    detail: str


def versions() -> dict[str, str]:
    """Installed versions of Python and kbchat's main packages (read from metadata: nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def check_cpu() -> tuple[Check, dict]:
    cpu = cpu_info()
    flags = " ".join(cpu.notable) or "none of the AVX-512/AMX flags"
    if cpu.has_amx:
        note = "AMX: bf16 runs natively, fast"
    elif cpu.has_bf16:
        note = "AVX-512 BF16 without AMX: bf16 is native but measured slower than fp32 on such CPUs"
    else:
        note = "no AMX, no AVX-512 BF16: bf16 is emulated, fp32 is the fast path"
    info = {"model": cpu.model, "count": cpu.count, "flags": cpu.notable, "amx": cpu.has_amx,
            "native_bf16": cpu.has_bf16}
    return Check("CPU", "ok", f"{cpu.model}, {cpu.count} logical CPUs; flags: {flags}; {note}"), info


def check_embedder(settings, *, remeasure: bool = False, embedder=None) -> tuple[Check, dict]:
    """Load the embedder as the app does (resolving "auto" from the per-CPU cache or by measuring), or
    describe ``embedder``, one already loaded (the running app's: the admin console's System page)."""
    from kbchat.errors import KbchatError
    from kbchat.search.embedder import choose_variant
    from kbchat.search.loaders import load_embedder

    try:
        emb = embedder if embedder is not None else load_embedder(settings)
        if remeasure:
            choose_variant(emb, settings.model_cache_path(), remeasure=True)
    except KbchatError as err:
        return Check("embedder", "fail", str(err)), {}
    d = emb.describe()
    if d.get("remote"):  # a model server (kbchat.search.remote): load_embedder asked it for the dimension
        return Check("embedder", "ok", emb.summary().removeprefix("embedder: ")), d
    v = d.get("variants", {}).get(d["variant"])
    speed = (f", {v['passages_per_s']} probe passages/s ({d.get('speedup_vs_fp32') or 1.0:.2f}x fp32)"
             if v else "")
    runs = "ONNX Runtime fp32" if d["variant"] == "onnx" else f"torch {d['variant']}"
    detail = f"{d['model']}: {runs} ({d['requested_precision']}, {d['source']}){speed}"
    others = [f"{n}: {r['verdict']}" for n, r in d.get("variants", {}).items() if n != d["variant"]]
    if others:
        detail += "; " + "; ".join(others)
    q = d.get("query_ms", {}).get(d["query_backend"])
    detail += f"; questions via {d['query_backend']}"
    if q and "p50" in q:
        detail += f" (p50 {q['p50']:.1f} ms, p95 {q['p95']:.1f} ms)"
    return Check("embedder", "ok", detail), d


def check_llm(settings, *, timeout: float = 5.0) -> Check:
    """GET <base_url>/models: reachable, key accepted, and whether the configured model is listed."""
    import httpx

    url = settings.llm_base_url.rstrip("/") + "/models"
    headers = {}
    if settings.llm_api_key:
        headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
    try:
        r = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return Check("LLM endpoint", "fail", f"{settings.llm_base_url}: no answer in {timeout:.0f} s")
    except httpx.HTTPError as exc:
        return Check("LLM endpoint", "fail", f"{settings.llm_base_url} unreachable ({type(exc).__name__}): "
                     "start the model server or set KBCHAT_LLM_BASE_URL")
    if r.status_code in (401, 403):
        return Check("LLM endpoint", "fail", f"{settings.llm_base_url} refused the API key (HTTP "
                     f"{r.status_code}): set KBCHAT_LLM_API_KEY")
    if r.status_code != 200:
        return Check("LLM endpoint", "warn", f"{settings.llm_base_url} reachable, but GET /models answered "
                     f"HTTP {r.status_code}; model {settings.llm_model!r} not confirmed")
    try:
        ids = [m.get("id") for m in r.json().get("data", [])]
    except Exception:
        ids = []
    if settings.llm_model in ids:
        return Check("LLM endpoint", "ok",
                     f"{settings.llm_base_url} reachable, serves {settings.llm_model!r}")
    listed = ", ".join(map(str, ids[:5])) + ("…" if len(ids) > 5 else "")
    return Check("LLM endpoint", "warn", f"{settings.llm_base_url} reachable, but {settings.llm_model!r} is "
                 f"not among its models ({listed or 'none listed'}): check KBCHAT_LLM_MODEL")


def check_reranker(settings) -> Check | None:
    """None when no reranker is set; else whether its model loads (or its server reranks two texts)."""
    from kbchat.errors import KbchatError

    if settings.reranker_base_url:
        from kbchat.search.loaders import load_reranker

        rr = load_reranker(settings)
        try:
            rr.scores("doctor probe", ["a first passage", "a second passage"])
        except KbchatError as err:
            return Check("reranker", "fail", str(err))
        return Check("reranker", "ok", rr.describe())
    if not settings.reranker_model:
        return None
    from kbchat.search.embedder import CrossEncoderReranker

    try:
        CrossEncoderReranker(settings.reranker_model)._load()
    except KbchatError as err:
        return Check("reranker", "fail", str(err))
    return Check("reranker", "ok", f"{settings.reranker_model} loads")


def check_data_dir(settings) -> tuple[Check, dict]:
    """Where indexes live: writable, free disk, collections and passages in the catalog."""
    path = Path(settings.data_dir).resolve()
    info: dict = {"path": str(path), "exists": path.is_dir(), "model_cache": str(settings.model_cache_path())}
    probe = path if path.is_dir() else next((p for p in path.parents if p.is_dir()), path)
    info["writable"] = os.access(probe, os.W_OK)
    try:
        info["free_gb"] = round(shutil.disk_usage(probe).free / 1e9, 1)
    except OSError:
        info["free_gb"] = None
    catalog = path / "catalog.sqlite"
    info["collections"] = {}
    if catalog.is_file():
        try:
            con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5)
            try:
                for name, n in con.execute(
                        "SELECT c.name, (SELECT COALESCE(SUM(passages), 0) FROM documents d "
                        "WHERE d.collection = c.name AND d.active = 1) FROM collections c ORDER BY c.name"):
                    info["collections"][name] = int(n)
            finally:
                con.close()
        except sqlite3.Error as exc:
            return Check("data dir", "fail", f"{path}: catalog unreadable ({exc})"), info
    if not info["writable"]:
        return Check("data dir", "fail", f"{path} is not writable: set KBCHAT_DATA_DIR"), info
    colls = ", ".join(f"{k} ({v} passages)" for k, v in info["collections"].items()) or "no collections yet"
    state = "" if info["exists"] else " (created on first ingest)"
    free = f"; {info['free_gb']} GB free" if info["free_gb"] is not None else ""
    return Check("data dir", "ok", f"{path}{state}: {colls}{free}"), info


def run(settings, *, remeasure: bool = False, embedder=None) -> dict:
    """Every check, as a dict: ``checks`` (name, status, detail), ``cpu``, ``embedder`` (describe()),
    ``data_dir``, ``versions``, and ``ok`` (no check failed). ``embedder``: one already loaded, described
    instead of loading another."""
    checks: list[Check] = []
    cpu_check, cpu = check_cpu()
    checks.append(cpu_check)
    emb_check, emb = check_embedder(settings, remeasure=remeasure, embedder=embedder)
    checks.append(emb_check)
    checks.append(check_llm(settings))
    rr = check_reranker(settings)
    if rr is not None:
        checks.append(rr)
    data_check, data = check_data_dir(settings)
    checks.append(data_check)
    vers = versions()
    checks.append(Check("versions", "ok", ", ".join(f"{k} {v}" for k, v in vers.items())))
    return {"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks],
            "cpu": cpu, "embedder": emb, "data_dir": data, "versions": vers,
            "executable": sys.executable}


def format_report(report: dict) -> str:
    """The report as aligned lines: status, check, detail."""
    width = max(len(c["name"]) for c in report["checks"])
    lines = [f"{c['status'].upper():4s}  {c['name']:{width}s}  {c['detail']}" for c in report["checks"]]
    lines.append("all checks passed" if report["ok"] else "some checks FAILED (see above)")
    return "\n".join(lines)
