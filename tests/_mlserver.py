"""Third-party servers as tests start them: a subprocess on a free port of
127.0.0.1, polled until ready, always stopped. `mlserver` hosts the models of
tests/_oip_model.py (MLServer imports them by name from PYTHONPATH)."""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from _faulty import free_port

TESTS = os.path.dirname(os.path.abspath(__file__))
START_S = 120  # a server not ready by then has failed (a loaded machine is slow)


def status_of(url: str) -> int | None:
    """HTTP status of a GET, None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_ready(proc, urls, log_path):
    """Polls each URL until it answers 200; fails with the server's log if it
    exits or misses the deadline. Seconds it took."""
    start = time.monotonic()
    for url in urls:
        while status_of(url) != 200:
            if proc.poll() is not None or time.monotonic() - start > START_S:
                with open(log_path) as f:
                    log = f.read()[-3000:]
                pytest.fail(f"the server never answered {url} (exit {proc.poll()}):\n{log}")
            time.sleep(0.1)
    return time.monotonic() - start


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def mlserver(repo, models: dict[str, dict]):
    """MLServer hosting `models` (name -> model-settings) from the directory
    `repo`; yields its base URL once every model is ready."""
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": 0,  # any free port: the tests speak HTTP only
        "metrics_endpoint": None,  # no metrics server, no third port
        "parallel_workers": 0,  # inference in the server process: one process to stop
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    for name, model_settings in models.items():
        (repo / name).mkdir()
        (repo / name / "model-settings.json").write_text(json.dumps(model_settings))
    log_path = repo / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])),
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserver.cli.main", "start", str(repo)],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        seconds = wait_ready(proc, [f"{base}/v2/models/{name}/ready" for name in models], log_path)
        print(f"MLServer ready in {seconds:.1f} s")
        yield base
    finally:
        stop(proc)
