"""The deployment files: compose.yaml's structure (and `docker compose config` where docker has compose),
deploy/nginx.conf checked by `nginx -t` and run for real in front of two HTTP backends on loopback:
sticky sessions by the affinity cookie and websocket upgrade headers passed through."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from kbchat.settings import Settings
from tests.conftest import REPO
from tests.fixtures.appserver import free_port

COMPOSE = REPO / "compose.yaml"
NGINX_CONF = REPO / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _resolve(value: str) -> str:
    """A compose value with ${VAR:-default} / ${VAR:?message} replaced as compose would with VAR unset
    (a required variable gets a stand-in)."""
    def sub(m):
        op, arg = m.group(2), m.group(3) or ""
        return arg if op in (":-", "-") else "stand-in-for-required"
    return _VAR.sub(sub, str(value))


def test_compose_structure():
    c = _compose()
    svc = c["services"]
    assert {"postgres", "kbchat", "nginx"} <= set(svc)
    pg = svc["postgres"]
    assert pg["image"].startswith("pgvector/pgvector:pg")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    app = svc["kbchat"]
    assert app["build"] == "." and (REPO / "Dockerfile").is_file()
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert int(_resolve(app["deploy"]["replicas"])) >= 2
    ng = svc["nginx"]
    assert ng["depends_on"]["kbchat"]["condition"] == "service_healthy"
    mounts = [v.split(":") for v in ng["volumes"]]
    assert ["./deploy/nginx.conf", "/etc/nginx/nginx.conf", "ro"] in mounts and NGINX_CONF.is_file()
    # the model servers are optional: each behind a profile, so `docker compose up` starts none of them
    for name in ("ollama", "vllm", "tei-embed", "tei-rerank"):
        assert svc[name]["profiles"], name
    for name in ("postgres", "kbchat", "nginx"):
        assert "profiles" not in svc[name], name
    # every named volume a service mounts is declared; every bind mount exists in the repo
    for name, s in svc.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), (name, src)
            else:
                assert src in c["volumes"], (name, src)
    # depends_on only names services of this file
    for name, s in svc.items():
        assert set(s.get("depends_on", {})) <= set(svc), name


def test_compose_environment_is_real_kbchat_settings():
    env = _compose()["services"]["kbchat"]["environment"]
    kb = {k: _resolve(v) for k, v in env.items() if k.startswith("KBCHAT_")}
    fields = {f"KBCHAT_{f.upper()}" for f in Settings.model_fields}
    aliases = {a for f in Settings.model_fields.values()
               for a in getattr(f.validation_alias, "choices", []) if isinstance(a, str)}
    unknown = sorted(set(kb) - fields - aliases)
    assert not unknown, f"compose.yaml sets variables kbchat does not read: {unknown}"
    assert kb["KBCHAT_DATABASE_URL"].startswith("postgresql+psycopg://kbchat:")
    assert "@postgres:5432/" in kb["KBCHAT_DATABASE_URL"]
    # the defaults compose would pass are valid settings (empty means unset, as compose passes "")
    values = {k[len("KBCHAT_"):].lower(): v for k, v in kb.items() if v != "" and k in fields}
    s = Settings(**values)
    assert s.auth == "password" and s.reranker_candidates == 45 and s.embedding_base_url is None
    assert "CHAINLIT_AUTH_SECRET" in env and ":?" in env["CHAINLIT_AUTH_SECRET"]  # required, never defaulted
    # every replica mounts the same shared volume at the data dir
    vols = _compose()["services"]["kbchat"]["volumes"]
    assert f"shared:{kb['KBCHAT_DATA_DIR']}" in vols


def test_docker_compose_config_when_available(tmp_path):
    docker = shutil.which("docker")
    ok = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if not ok:  # the structure is checked above; this runs where docker has the compose plugin
        assert yaml.safe_load(COMPOSE.read_text()) is not None
        return
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                       env={"CHAINLIT_AUTH_SECRET": "x", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------ nginx


class _Backend:
    """An HTTP server that answers which backend it is and the hop headers it received."""

    def __init__(self, name: str):
        me = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                body = json.dumps({"backend": me.name, "upgrade": self.headers.get("Upgrade"),
                                   "connection": self.headers.get("Connection"),
                                   "forwarded_user": self.headers.get("X-Forwarded-User"),
                                   "real_ip": self.headers.get("X-Real-IP")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.name = name
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _local_conf(tmp_path: Path, backends: list[int], port: int) -> Path:
    """deploy/nginx.conf with the compose service name replaced by loopback backends, run unprivileged."""
    conf = NGINX_CONF.read_text(encoding="utf-8")
    servers = " ".join(f"server 127.0.0.1:{p};" for p in backends)
    conf, n = re.subn(r"server kbchat:8000[^;]*;", servers, conf)
    assert n == 1
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("events {", f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{", 1)
    conf = conf.replace("http {", f"http {{\n    access_log off;\n    client_body_temp_path {tmp_path}/body;\n"
                        f"    proxy_temp_path {tmp_path}/proxy;\n", 1)
    out = tmp_path / "nginx.conf"
    out.write_text(conf, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    if NGINX is None:
        pytest.fail("nginx is missing: apt-get install -y nginx-light (scripts/test.sh installs it)")
    tmp = tmp_path_factory.mktemp("nginx")
    backends = [_Backend("a"), _Backend("b")]
    port = free_port()
    conf = _local_conf(tmp, [b.port for b in backends], port)
    t = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp)], capture_output=True, text=True)
    assert t.returncode == 0 and "syntax is ok" in t.stderr, t.stderr
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    for b in backends:
        b.stop()


def _get(url: str, headers: dict | None = None) -> tuple[dict, str | None]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read()), r.headers.get("Set-Cookie")


def test_nginx_sticky_sessions_by_affinity_cookie(nginx):
    first, cookie = _get(nginx + "/")
    assert cookie and cookie.startswith("kbchat_affinity=") and "HttpOnly" in cookie
    value = cookie.split(";")[0]
    # every later request of this browser (polling, then the websocket) reaches the same replica
    seen = {_get(nginx + "/ws/socket.io/?EIO=4&transport=polling", {"Cookie": value})[0]["backend"]
            for _ in range(10)}
    assert seen == {first["backend"]}
    again, set_again = _get(nginx + "/", {"Cookie": value})
    assert set_again.split(";")[0] == value  # the cookie keeps its value
    # browsers without the cookie (even from one address, as behind a NAT) spread over both replicas
    spread = {_get(nginx + "/")[0]["backend"] for _ in range(30)}
    assert spread == {"a", "b"}


def test_nginx_passes_websocket_upgrade_and_strips_identity_header(nginx):
    got, _ = _get(nginx + "/ws/socket.io/?EIO=4&transport=websocket",
                  {"Upgrade": "websocket", "Connection": "Upgrade", "X-Forwarded-User": "admin"})
    assert got["upgrade"] == "websocket" and got["connection"].lower() == "upgrade"
    assert not got["forwarded_user"]  # a client can never claim a user through the proxy
    assert got["real_ip"] == "127.0.0.1"
    plain, _ = _get(nginx + "/")
    assert plain["upgrade"] is None and (plain["connection"] or "").lower() != "upgrade"
