"""Fixtures that run the real `outlast` binary: simulated providers and gateways.

Every process is started on a port the OS picked, waited for with a bounded poll, and killed
when the session (or the test that started it) ends. Nothing listens outside 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import httpx
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
API_KEY = "sk-outlast-test"
STARTUP_DEADLINE_S = 15.0
STOP_DEADLINE_S = 5.0


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port the OS says is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], deadline_s: float, what: str,
               proc: Optional[subprocess.Popen] = None, log: Optional[Path] = None) -> None:
    """Poll `predicate` every 20 ms until it is true or `deadline_s` passes (then fail)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode} before it was ready"
                        f"{_log_tail(log)}")
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"{what}: not ready within {deadline_s}s{_log_tail(log)}")


def _log_tail(log: Optional[Path], n: int = 4000) -> str:
    if log is None or not log.exists():
        return ""
    return "\n--- log tail ---\n" + log.read_text(errors="replace")[-n:]


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, wait a bounded time, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_DEADLINE_S)


# --------------------------------------------------------------------------- processes


class Sim:
    """One `outlast sim` process with a separate control listener."""

    def __init__(self, binary: Path, name: str, logdir: Path, *extra: str,
                 protocol: str = "openai"):
        self.name = name
        self.protocol = protocol
        self.port = free_port()
        self.control_port = free_port()
        self.log = logdir / f"sim-{name}-{self.port}.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "sim", "--protocol", protocol,
             "--listen", f"{HOST}:{self.port}",
             "--control", f"{HOST}:{self.control_port}",
             "--name", name, *extra],
            stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.control = httpx.Client(base_url=f"http://{HOST}:{self.control_port}", timeout=5.0)
        wait_until(lambda: tcp_open(self.control_port), STARTUP_DEADLINE_S,
                   f"sim {name} control", self.proc, self.log)
        if "--down" not in extra:
            wait_until(lambda: tcp_open(self.port), STARTUP_DEADLINE_S,
                       f"sim {name}", self.proc, self.log)
        self.baseline = self.faults()

    @property
    def base_url(self) -> str:
        # OpenAI's base includes the version; Anthropic's and Gemini's are the API root.
        root = f"http://{HOST}:{self.port}"
        return f"{root}/v1" if self.protocol == "openai" else root

    def faults(self) -> dict:
        r = self.control.get("/_sim/faults")
        r.raise_for_status()
        return r.json()

    def patch(self, **faults) -> dict:
        r = self.control.patch("/_sim/faults", content=json.dumps(faults),
                               headers={"content-type": "application/json"})
        assert r.status_code == 200, f"PATCH {faults} -> {r.status_code} {r.text}"
        return r.json()

    def stats(self) -> dict:
        r = self.control.get("/_sim/stats")
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        """Back to the faults it started with, and listening again."""
        if self.faults() != self.baseline:
            self.patch(**self.baseline)
        if not self.baseline.get("down"):
            wait_until(lambda: tcp_open(self.port), STARTUP_DEADLINE_S,
                       f"sim {self.name} back up", self.proc, self.log)

    def stop(self) -> None:
        try:
            stop_process(self.proc)
        finally:
            self.control.close()
            self._logf.close()


def gateway_config(port: int, data_dir: Path, providers: list[Sim], routes: dict[str, list[str]],
                   api_keys: Optional[list[str]] = None, max_body_bytes: Optional[int] = None,
                   extra_server: str = "", extra: str = "") -> str:
    lines = [f'listen = "{HOST}:{port}"', f'data_dir = "{data_dir}"', ""]
    lines += ["[server]"]
    if max_body_bytes is not None:
        lines += [f"max_body_bytes = {max_body_bytes}"]
    if extra_server:
        lines += [extra_server]
    lines += ["", "[upstream]", 'connect_timeout = "1s"', 'first_byte_timeout = "5s"',
              'request_timeout = "20s"', ""]
    # Tests take providers down and bring them back in quick succession: keep the breakers'
    # probation short so each test starts from a fleet the gateway trusts again.
    lines += ["[resilience]", 'ejection_base = "50ms"', 'ejection_max = "100ms"', ""]
    if api_keys:
        lines += ["[auth]", "api_keys = [" + ", ".join(json.dumps(k) for k in api_keys) + "]", ""]
    for sim in providers:
        lines += ["[[providers]]", f'name = "{sim.name}"', f'protocol = "{sim.protocol}"',
                  f'base_url = "{sim.base_url}"',
                  'models = ["gpt-4o-mini", "text-embedding-3-small"]', ""]
    for model, targets in routes.items():
        lines += ["[[routes]]", f'model = "{model}"',
                  "targets = [" + ", ".join(json.dumps(t) for t in targets) + "]", ""]
    if extra:
        lines += [extra]
    return "\n".join(lines)


class Gateway:
    """One `outlast serve` process."""

    def __init__(self, binary: Path, workdir: Path, name: str, providers: list[Sim],
                 routes: dict[str, list[str]], **config):
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"gateway-{name}-{self.port}.toml"
        self.config_path.write_text(
            gateway_config(self.port, workdir / f"data-{name}", providers, routes, **config))
        self.log = workdir / f"gateway-{name}-{self.port}.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(self.config_path)],
            stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "OUTLAST_CONFIG"},
        )
        wait_until(self._ready, STARTUP_DEADLINE_S, f"gateway {name}", self.proc, self.log)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def _ready(self) -> bool:
        try:
            return httpx.get(f"http://{HOST}:{self.port}/readyz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, api_key: str = API_KEY, **kw) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **kw)

    def stop(self) -> None:
        try:
            stop_process(self.proc)
        finally:
            self._logf.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def outlast_bin() -> Path:
    path = Path(os.environ.get("OUTLAST_BIN", REPO_ROOT / "target" / "debug" / "outlast"))
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"outlast binary not found at {path}; build it (cargo build -p outlast) "
                    f"or set OUTLAST_BIN")
    return path


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outlast")


@pytest.fixture(scope="session")
def start_sim(outlast_bin, workdir, request):
    """Factory: start a sim that lives until the end of the session."""
    def start(name: str, *extra: str, protocol: str = "openai") -> Sim:
        sim = Sim(outlast_bin, name, workdir, *extra, protocol=protocol)
        request.addfinalizer(sim.stop)
        return sim
    return start


@pytest.fixture(scope="session")
def primary(start_sim) -> Sim:
    return start_sim("primary")


@pytest.fixture(scope="session")
def backup(start_sim) -> Sim:
    return start_sim("backup")


@pytest.fixture(scope="session")
def gateway(outlast_bin, workdir, primary, backup, request) -> Gateway:
    """The shared gateway: route "chat" = primary then backup, auth on, 64 KiB body cap."""
    gw = Gateway(outlast_bin, workdir, "shared", [primary, backup],
                 {"chat": ["primary/gpt-4o-mini", "backup/gpt-4o-mini"]},
                 api_keys=[API_KEY], max_body_bytes=65536)
    request.addfinalizer(gw.stop)
    return gw


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    c = gateway.client()
    yield c
    c.close()


@pytest.fixture(autouse=True)
def restore_faults(request):
    """Before each test that uses the shared gateway, wait until the primary answers through it
    again (a previous test may have left its breaker open); after each test, put back every
    session sim the test used to its starting faults."""
    if "client" in request.fixturenames and "primary" in request.fixturenames:
        client = request.getfixturevalue("client")

        def primary_serves() -> bool:
            raw = client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "ping"}])
            return raw.headers.get("x-outlast-target", "").startswith("primary/")

        wait_until(primary_serves, 5, "the primary to serve through the gateway again")
    yield
    for name in ("primary", "backup"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


@pytest.fixture
def start_gateway(outlast_bin, tmp_path):
    """Factory: a gateway that lives only for the calling test."""
    started: list[Gateway] = []

    def start(name: str, providers: list[Sim], routes: dict[str, list[str]], **config) -> Gateway:
        gw = Gateway(outlast_bin, tmp_path, name, providers, routes, **config)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
