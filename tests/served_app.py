"""A web app under test in a Python process of its own on 127.0.0.1, its log collected: the
docs' recipes (tests/docs) run as their readers run them, against a ``WayGPTTestServer``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Pattern, Sequence, Tuple

from waygpt.testing import WayGPTTestServer

START_BOUND = 30.0


class ServedApp:
    """``python <arguments>`` in ``directory``, pointed at ``server`` with ``key``; ``url()``
    is where it listens, read from its log by ``listening``."""

    def __init__(
        self, arguments: Sequence[str], directory: Path, server: WayGPTTestServer, key: str, *,
        listening: Pattern[str], drop: Tuple[str, ...] = ("WAYGPT_",),
    ) -> None:
        env: Dict[str, str] = {
            name: value for name, value in os.environ.items()
            if not name.startswith(drop) and "proxy" not in name.lower()
        }
        env.update(WAYGPT_API_URL=server.url, WAYGPT_PROJECT_KEY=key, NO_PROXY="*",
                   PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, *arguments], cwd=directory, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
        )
        self.lines: List[str] = []
        self._listening = listening
        self._url: Optional[str] = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def url(self) -> str:
        """Where it listens, once it does; fails if it exits or takes too long first."""
        give_up = time.monotonic() + START_BOUND
        while self._url is None and time.monotonic() < give_up:
            found = [m for m in map(self._listening.search, list(self.lines)) if m]
            if found:
                self._url = found[0].group(1)
            elif self.process.poll() is not None:
                raise AssertionError(f"the app exited:\n{self.log}")
            else:
                time.sleep(0.05)
        if self._url is None:
            self.stop()
            raise AssertionError(f"the app did not start within {START_BOUND:g} s:\n{self.log}")
        return self._url

    def wait(self) -> int:
        code = self.process.wait(timeout=START_BOUND)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
