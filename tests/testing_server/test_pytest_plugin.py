"""The pytest plugin installed with waygpt (``pytest11`` entry point ``waygpt``).

Each test writes a test file into an empty directory (no conftest, no ini file) and runs
``python -m pytest`` on it in a subprocess, as a user's fresh project would: the fixtures
come only from the installed entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TIMEOUT = 120


def run_pytest(
    directory: Path, source: str, *args: str, alone: bool = False
) -> subprocess.CompletedProcess[str]:
    """pytest in ``directory`` on ``source``; ``alone``: with the waygpt plugin only, loaded as
    its module, so that the other plugins installed beside it (langchain-core brings
    langsmith's, langchain-tests pytest-asyncio's) add neither imports nor warnings."""
    (directory / "test_app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WAYGPT_", "PYTEST_")) and k != "PYTHONPATH"
    }
    env["PYTHONIOENCODING"] = "utf-8"
    if alone:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args = ("-p", "waygpt_pytest", *args)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-v", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )


def test_the_plugin_imports_nothing_heavy_when_its_fixtures_are_unused(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        import sys

        HEAVY = ("requests", "urllib3", "waygpt", "waygpt.testing")
        AT_COLLECTION = [name for name in HEAVY if name in sys.modules]


        def test_uses_no_waygpt_fixture(pytestconfig):
            plugins = sorted(name for name, _ in pytestconfig.pluginmanager.list_name_plugin())
            assert pytestconfig.pluginmanager.has_plugin("waygpt_pytest"), plugins
            assert AT_COLLECTION == [], plugins
            assert [name for name in HEAVY if name in sys.modules] == [], plugins
        """,
        alone=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_fresh_project_gets_the_fixtures_from_the_entry_point(tmp_path: Path) -> None:
    assert not list(tmp_path.iterdir())  # no conftest.py, no pytest.ini
    result = run_pytest(
        tmp_path,
        """
        import pytest

        from waygpt import WayGPTClient
        from waygpt.testing import WayGPTTestServer

        SERVERS = []


        def test_server_and_client(waygpt_server, waygpt_client):
            assert isinstance(waygpt_server, WayGPTTestServer)
            assert isinstance(waygpt_client, WayGPTClient)
            assert waygpt_client.api_url == waygpt_server.url
            answer = waygpt_client.chat_completions(
                messages=[{"role": "user", "content": "Привет"}]
            )
            assert answer["choices"][0]["message"]["content"] == "Echo: Привет"
            sent = waygpt_server.last_request
            assert sent.headers["x-project-key"] == waygpt_server.project_key
            assert "x-mb-signature" not in sent.headers
            SERVERS.append(waygpt_server)


        def test_each_test_gets_a_fresh_server(waygpt_server):
            assert waygpt_server.requests == []
            with pytest.raises(RuntimeError):
                SERVERS[0].url  # the previous test's server was stopped


        def test_the_client_retries_without_sleeping(waygpt_server, waygpt_client):
            waygpt_server.script(status=503, times=2, path="/api/v1/waygpt/models")
            assert waygpt_client.get_models()
            assert len(waygpt_server.requests) == 3


        @pytest.mark.waygpt_server(require_hmac=True, allowed_models=["gpt-4o"])
        def test_the_marker_configures_the_server(waygpt_server, waygpt_client):
            assert waygpt_client.get_models() == ["gpt-4o"]
            assert "x-mb-signature" in waygpt_server.last_request.headers


        @pytest.mark.waygpt_server(rate_limit_rpm=1)
        class TestClassMarker:
            @pytest.mark.waygpt_server(rate_limit_rpm=2)
            def test_the_closest_marker_wins(self, waygpt_client):
                waygpt_client.get_models()
                waygpt_client.get_models()
        """,
        "--strict-markers",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout


def test_async_waygpt_client_is_there_or_skips_with_the_reason(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        def test_async_client(async_waygpt_client, waygpt_server):
            assert type(async_waygpt_client).__name__ == "AsyncWayGPTClient"
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    import waygpt

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        available = False
    else:
        available = hasattr(waygpt, "AsyncWayGPTClient")
    if available:
        assert "1 passed" in result.stdout, result.stdout
        assert "PytestWarning" not in result.stdout  # the unused client closed cleanly
    else:
        assert "1 skipped" in result.stdout, result.stdout
        assert "SKIPPED" in result.stdout and "async_waygpt_client needs" in result.stdout


def test_the_plugin_can_be_disabled(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        def test_wants_the_server(waygpt_server):
            pass
        """,
        "-p",
        "no:waygpt",
    )
    assert result.returncode == 1
    assert "fixture 'waygpt_server' not found" in result.stdout


def test_async_waygpt_client_builds_and_closes_the_client(tmp_path: Path) -> None:
    """The fixture's contract with the async client, checked on a stand-in for it.

    ``AsyncWayGPTClient`` is not in this SDK version yet; the stand-in takes the same
    constructor arguments as ``WayGPTClient`` and has an ``async close()`` and ``closed``.
    An empty ``aiohttp`` package in the test directory stands for the optional dependency.
    """
    (tmp_path / "aiohttp").mkdir()
    (tmp_path / "aiohttp" / "__init__.py").write_text("", encoding="utf-8")
    result = run_pytest(
        tmp_path,
        """
        import asyncio

        import waygpt

        CLOSED = []


        class AsyncWayGPTClient:
            def __init__(self, **options):
                self.options = options
                self.closed = False

            async def close(self):
                asyncio.get_running_loop()  # closed inside an event loop
                self.closed = True
                CLOSED.append(self)

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc_info):
                await self.close()


        waygpt.AsyncWayGPTClient = AsyncWayGPTClient


        def test_left_open(async_waygpt_client, waygpt_server):
            options = async_waygpt_client.options
            assert options["api_url"] == waygpt_server.url
            assert options["project_key"] == waygpt_server.project_key
            assert options["use_hmac"] is False


        def test_a_client_left_open_was_closed_after_its_test():
            assert len(CLOSED) == 1


        def test_closed_by_the_test(async_waygpt_client):
            async def main():
                async with async_waygpt_client:
                    pass

            asyncio.run(main())


        def test_a_closed_client_is_not_closed_again():
            assert len(CLOSED) == 2
        """,
        "-W",
        "error::pytest.PytestWarning",
        alone=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout, result.stdout
