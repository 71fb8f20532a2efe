"""A benchmark server in a child process, so that none of its work counts as client CPU.

The child prints ``PORT <n>`` on its first line once it listens on 127.0.0.1, and stops when
its stdin is closed (by ``__exit__``, or by the parent's death).
"""

from __future__ import annotations

import subprocess
import sys
from typing import List


class ServerProcess:
    """``with ServerProcess([script, args...]) as server: ... server.url ...``"""

    def __init__(self, argv: List[str], name: str = "benchmark server") -> None:
        self._argv = argv
        self._name = name

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, *self._argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the {self._name} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
