"""``client.py`` is generated from ``_async_client.py`` (``tools/unasync.py``): it must be
up to date, and the rules must leave nothing of asyncio in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sync_client_is_generated_from_the_async_one_and_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "unasync.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_client_says_it_is_generated():
    text = (ROOT / "src" / "waygpt" / "client.py").read_text(encoding="utf-8")
    assert text.startswith("# Generated from _async_client.py by tools/unasync.py")
    code = text.split("\n", 2)[2]  # after the two header lines, which name the async client
    assert "async " not in code and "await " not in code
