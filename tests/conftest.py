"""Shared fixtures: the real-data folder, an isolated cache, and a CLI runner.

Real-data tests use ``PROSPECT_SHARED_DATA`` (default ``../shared/data``) and skip only
when that folder is absent; ``.ci/run`` refuses to run without it, so CI always runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prospect.io.manifests import shared_data_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_data_dir()
    if not (root / "SHA256SUMS").exists():
        pytest.skip(f"shared real data folder {root} is absent")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache so the user's ~/.cache is never touched."""
    if "PROSPECT_CACHE" not in os.environ or not os.environ["PROSPECT_CACHE"].startswith(str(tmp_path_factory.getbasetemp())):
        monkeypatch.setenv("PROSPECT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("PROSPECT_MIRROR", raising=False)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``prospect`` as a user would (a separate process) and capture its output."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "prospect.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)
