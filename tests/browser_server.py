"""Start the real app (`chainlit run app.py`) in a subprocess for browser and load tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Variables that change `chainlit run` (CI mode fakes OPENAI_API_KEY) or leak the developer's setup.
_STRIP = ("CI", "DEBUG", "WATCH", "HEADLESS", "NO_CACHE", "DATABASE_URL", "LITERAL_API_KEY",
          "OPENAI_API_KEY", "NVIDIA_API_KEY", "CHAINLIT_APP_ROOT",
          "CHAINLIT_AUTH_SECRET")  # an app makes and keeps its own (a test in this process may have set one)


def seed_knowledge(folder: Path) -> Path:
    """A knowledge folder with the repo's (empty) base sub-folders, each with its README.md: the shipped
    personas name them (knowledge: [clinic]) and the app refuses a persona naming an unknown base."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in (REPO / "knowledge").iterdir():
        if sub.is_dir():
            (folder / sub.name).mkdir(exist_ok=True)
            for readme in sub.glob("README*.md"):  # README.md and its translations README.<lang>.md
                shutil.copy(readme, folder / sub.name / readme.name)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`chainlit run app.py` on a free port, with its own app root, data dir and knowledge dir."""

    def __init__(self, root: Path, llm_base_url: str, *, knowledge: list[Path] = (), extra_env: dict | None = None):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for name in (".chainlit", "public"):
            shutil.copytree(REPO / name, root / name, dirs_exist_ok=True)
        for name in ("chainlit.md", "chainlit_zh-TW.md"):
            if (REPO / name).exists():
                shutil.copy(REPO / name, root / name)
        seed_knowledge(root / "knowledge")  # the bases the shipped personas name (knowledge/clinic/)
        for pdf in knowledge:
            shutil.copy(pdf, root / "knowledge" / pdf.name)
        env = {k: v for k, v in os.environ.items() if k not in _STRIP and not k.startswith("KBCHAT_")}
        env.update({
            "CHAINLIT_APP_ROOT": str(root),
            "KBCHAT_DATA_DIR": str(root / "data"),
            "KBCHAT_KNOWLEDGE_DIR": str(root / "knowledge"),
            "KBCHAT_PERSONAS_DIR": str(REPO / "personas"),
            "KBCHAT_LLM_BASE_URL": llm_base_url,
            "KBCHAT_LLM_MODEL": "stub",
            "KBCHAT_LLM_TIMEOUT": "5",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
            # the embedder variant measured for this CPU and the ONNX query encoder: once per test run
            **({"KBCHAT_MODEL_CACHE_DIR": os.environ["KBCHAT_MODEL_CACHE_DIR"]}
               if os.environ.get("KBCHAT_MODEL_CACHE_DIR") else {}),
            **(extra_env or {}),
        })
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chainlit", "run", str(REPO / "app.py"), "--headless",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited: {self.read_log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200 and "knowledge sync:" in self.read_log():
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"app not ready in {timeout}s: {self.read_log()[-3000:]}")

    def read_log(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@contextlib.contextmanager
def running_app(root: Path, llm_base_url: str, **kw):
    """An AppServer that is ready (model loaded, knowledge synced) inside the block, stopped after."""
    srv = AppServer(root, llm_base_url, **kw)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
