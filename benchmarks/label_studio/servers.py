"""Start a real Label Studio and a `forgetting serve` backend on local ports, for the real-server test
(tests/test_label_studio_server.py) and the screenshot (docs/label_studio_screenshot.py). Standard library
only: it runs in the project's venv and talks to both servers over HTTP; Label Studio's SDK runs in Label
Studio's own venv (client.py, run as a subprocess).

Label Studio: SQLite in a temporary data directory, the user and the API token from the environment
(``LABEL_STUDIO_USERNAME``, ``LABEL_STUDIO_PASSWORD``, ``LABEL_STUDIO_USER_TOKEN``; made up when unset), local
files served from a document root above the projects' image folders (``label_studio_document_root``),
a copy of the migrated empty database of ``make label-studio-env`` when there is one, and local ML backends
and webhooks allowed
(``ML_BLOCK_LOCAL_IP=false``, ``SSRF_PROTECTION_ENABLED=false``: both servers are on 127.0.0.1); no
version check and no analytics (nothing leaves the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).resolve().parent / "client.py"
DEFAULT_VENV = REPO / ".venv-labelstudio"
DATABASE = "label_studio.sqlite3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(
    url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> Any:
    """GET ``url`` until it answers 200 (its JSON); fail after ``timeout`` seconds or if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{url}: the server exited with {process.returncode}\n{tail}")
        try:
            return get_json(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s\n{tail}") from None
            time.sleep(0.5)


class LabelStudioServer:
    """``label-studio start`` from ``venv`` on a free local port (a context manager).

    Attributes:
        url: ``http://127.0.0.1:<port>``; ``token`` the API token; ``startup_seconds`` how long it took to
            answer ``/health``.
    """

    def __init__(
        self, data_dir: Path, document_root: Path, *, venv: Path = DEFAULT_VENV, port: int | None = None
    ):
        self.venv = Path(venv)
        self.data_dir = Path(data_dir)
        self.document_root = Path(document_root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.username = os.environ.get("LABEL_STUDIO_USERNAME", "forgetting@example.com")
        self.password = os.environ.get("LABEL_STUDIO_PASSWORD", secrets.token_hex(8))
        self.token = os.environ.get("LABEL_STUDIO_USER_TOKEN", secrets.token_hex(20))
        self.log = self.data_dir / "label-studio.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = float("nan")

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    def __enter__(self) -> LabelStudioServer:
        if not self.executable.is_file():
            raise FileNotFoundError(
                f"{self.executable} is missing: build the Label Studio venv with `make label-studio-env`"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = self.venv / "template" / DATABASE
        if template.is_file() and not (self.data_dir / DATABASE).exists():
            shutil.copyfile(template, self.data_dir / DATABASE)  # migrated by `make label-studio-env`
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # the SDK authenticates with the user token
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root.resolve()),
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "LATEST_VERSION_CHECK": "false",  # no call to pypi.org
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        }
        started = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(self.executable),
                    "start",
                    "--no-browser",
                    "--port",
                    str(self.port),
                    "--internal-host",
                    "127.0.0.1",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(f"{self.url}/health", timeout=600, process=self.process, log=self.log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self, command: str, *args: str, timeout: float = 300) -> dict[str, Any]:
        """Run ``client.py COMMAND ARGS`` in Label Studio's venv against this server; its JSON answer."""
        python = self.venv / "bin" / "python"
        done = subprocess.run(
            [str(python), str(CLIENT), command, "--url", self.url, "--token", self.token, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"client.py {command} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def connect(self, project: Any, backend: BackendServer, title: str) -> dict[str, Any]:
        """``client.py setup``: a Label Studio project titled ``title`` with the labelling project's
        interface, tasks and media, connected to ``backend``; its JSON answer."""
        return self.client(
            "setup",
            "--title",
            title,
            "--config",
            str(project.label_studio_config_path),
            "--tasks",
            str(project.label_studio_tasks_path),
            "--media",
            str(project.media_root),
            "--backend",
            backend.url,
        )


class BackendServer:
    """``forgetting serve PROJECT`` in a subprocess of this Python, on a free local port (context manager)."""

    def __init__(
        self,
        project: Path,
        *args: str,
        port: int | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.project = Path(project)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or self.project.parent / f"{self.project.name}-serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BackendServer:
        path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path, **self.extra_env}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "forgetting",
                    "serve",
                    str(self.project),
                    "--port",
                    str(self.port),
                    *self.args,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(f"{self.url}/health", timeout=120, process=self.process, log=self.log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def health(self) -> dict[str, Any]:
        return get_json(f"{self.url}/health")

    def wait(self, predicate: Any, *, timeout: float = 300, what: str = "the backend") -> dict[str, Any]:
        """Poll ``/health`` until ``predicate(health)`` holds; the last health."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if predicate(health):
                return health
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{what}: the backend exited\n{self.log.read_text(errors='replace')[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not reached within {timeout:.0f} s; last health {health}")
            time.sleep(0.3)
