"""Every script in examples/ runs to completion with --demo (local test server, no network).

An example that streams runs its demo against a server that ends every stream with a
usage-only chunk (``always_include_usage=True``), as a real server may: a loop over its
streams that reads ``chunk["choices"][0]`` fails its run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
# Examples that need an optional extra: their --demo run is skipped where the extra is not
# installed (CI's cell without aiohttp). Without --demo they still explain what to set.
NEEDS_MODULE = {"async_chat": ("aiohttp", 'pip install "waygpt[aiohttp]"')}


def test_there_are_enough_examples() -> None:
    assert len(SCRIPTS) >= 6, [p.name for p in SCRIPTS]


def run_python(args: List[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Python with ``args``, with none of the developer's WAYGPT_* variables (which could
    steer an example to a real server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYGPT_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_with_demo(script: Path, tmp_path: Path) -> None:
    if script.stem in NEEDS_MODULE:
        module, install = NEEDS_MODULE[script.stem]
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script.name} needs {module}, which is not installed ({install})")
    result = run_python([str(script), "--demo"], tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert result.stdout.strip(), "the example printed nothing"


def test_streaming_examples_demo_against_streams_that_end_with_usage() -> None:
    checked = []
    for script in SCRIPTS:
        source = script.read_text(encoding="utf-8")
        if "chat_completions_stream" not in source and "stream=True" not in source:
            continue
        for call in ast.walk(ast.parse(source)):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "WayGPTTestServer":
                options = {k.arg: k.value for k in call.keywords}
                value = options.get("always_include_usage")
                where = f"{script.name}:{call.lineno}"
                assert isinstance(value, ast.Constant) and value.value is True, (
                    f"{where}: a streaming example's demo server needs always_include_usage=True"
                )
                checked.append(where)
    assert len(checked) >= 2, checked


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_explains_missing_settings(script: Path, tmp_path: Path) -> None:
    """Without --demo and without credentials, an example says what to set, not a traceback."""
    result = run_python([str(script)], tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "--demo" in result.stderr


def test_async_example_says_how_to_install_aiohttp(tmp_path: Path) -> None:
    """Where aiohttp is missing, the async example says what to install, not a traceback."""
    script = str(EXAMPLES / "async_chat.py")
    code = (
        "import runpy, sys\n"
        "sys.modules['aiohttp'] = None  # what a machine without the extra looks like\n"
        f"sys.argv = [{script!r}, '--demo']\n"
        f"runpy.run_path({script!r}, run_name='__main__')\n"
    )
    result = run_python(["-c", code], tmp_path, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert 'pip install "waygpt[aiohttp]"' in result.stderr
