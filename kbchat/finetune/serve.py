"""What makes a trained adapter usable: the vLLM command (LoRA adapters with --enable-lora --lora-modules), an
Ollama Modelfile (FROM + ADAPTER), and the persona `llm:` block that sends a persona's chats to it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from kbchat.errors import FinetuneError

VLLM_URL = "http://localhost:8000/v1"


def serve_files(run: Path, name: str, *, base_url: str = VLLM_URL) -> dict[str, str]:
    """The vLLM command, the Ollama Modelfile and the persona block for the run folder ``run`` (from
    `kbchat finetune train --out`), also written to ``run/serve/``."""
    from kbchat.finetune.evaluation import run_folder

    run, adapter = run_folder(run)
    meta = run / "run.json"
    if not meta.is_file():
        raise FinetuneError(f"{run}: no run.json (train with `kbchat finetune train --out {run}`)")
    base = json.loads(meta.read_text(encoding="utf-8"))["base"]
    adapter = adapter.resolve()
    vllm = (f"vllm serve {shlex.quote(base)} --enable-lora --lora-modules {shlex.quote(f'{name}={adapter}')} "
            f"--max-lora-rank 64 --port {base_url.rsplit(':', 1)[-1].split('/')[0] or 8000}")
    modelfile = f"FROM {base}\nADAPTER {adapter}\n"
    persona = f"llm:\n  model: {name}\n  base_url: {base_url}\n"
    folder = run / "serve"
    folder.mkdir(exist_ok=True)
    (folder / "vllm.sh").write_text("#!/bin/sh\n" + vllm + "\n", encoding="utf-8")
    (folder / "Modelfile").write_text(modelfile, encoding="utf-8")
    (folder / "persona-llm.yaml").write_text(persona, encoding="utf-8")
    return {"vllm": vllm, "modelfile": modelfile, "persona": persona, "folder": str(folder)}


__all__ = ["VLLM_URL", "serve_files"]
