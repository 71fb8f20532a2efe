"""A caller's ``aiohttp.ClientSession``: what it may and may not do to the SDK's requests.

The sync client's side of this is tests/sessions/test_callers_session.py. Here: aiohttp's own replay
of a failed request must never re-send an HMAC nonce, and the Client API's Bearer token wins
over the session's ``auth`` and over a netrc entry (``trust_env=True``), while both still
apply to the project-key calls and to the caller's own requests, even concurrent ones.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any, List

import pytest

pytest.importorskip("aiohttp")

import aiohttp

import waygpt
from waygpt import AsyncWayGPTClient
from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
BASIC_AUTH = "Basic Z3c6Z3ctc2VjcmV0"  # gw:gw-secret


@pytest.fixture(autouse=True)
def _no_proxy_or_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # never the developer's ~/.netrc
    monkeypatch.setenv("HOME", str(tmp_path))


def basic_auth_session(**options: Any) -> Any:
    with warnings.catch_warnings():  # `auth=` is deprecated from aiohttp 3.14 on, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        return aiohttp.ClientSession(auth=aiohttp.BasicAuth("gw", "gw-secret"), **options)


# -- signed requests are never replayed with their nonce --------------------------------------


def test_signed_requests_on_a_callers_session_never_resend_a_nonce():
    with WayGPTTestServer(require_hmac=True) as server:
        server.script(reset=True, path=MODELS, times=40)

        async def one(client: AsyncWayGPTClient, index: int) -> Any:
            try:
                if index % 2 == 0:
                    return await client.get_models()
                return await client.get_media_job(f"job-{index}")
            except waygpt.NotFoundError:
                return "no such job"
            except waygpt.WayGPTError as error:
                return error

        async def main() -> List[Any]:
            async with aiohttp.ClientSession() as session:
                client = AsyncWayGPTClient(
                    api_url=server.url, project_key=server.project_key,
                    project_id=server.project_id, hmac_secret=server.hmac_secret,
                    use_hmac=True, session=session, max_retries=6, timeout=10,
                )
                results = await asyncio.gather(*(one(client, i) for i in range(200)))
                assert session._retry_connection is True  # the caller's setting, unchanged
                return list(results)

        results = asyncio.run(main())

    # aiohttp would replay each reset GET with its nonce: 403 "HMAC nonce already used". The
    # SDK does not retry a reset (the request may have run), so the reset calls fail as
    # they do on the client's own session.
    errors = [r for r in results if isinstance(r, waygpt.WayGPTError)]
    assert [e for e in errors if "nonce" in str(e).lower()] == []
    assert all(isinstance(e, waygpt.APIConnectionError) for e in errors), errors
    assert len(errors) <= 40
    nonces = [r.headers.get("x-mb-nonce") for r in server.requests]
    assert len(nonces) == len(set(nonces)) >= 200


# -- the Client API's Bearer token wins ---------------------------------------------------------


def netrc_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login gw password gw-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    return aiohttp.ClientSession(trust_env=True)


def client_api_calls(server: WayGPTTestServer, make_session: Any) -> List[str]:
    """Project-key call, login, Client API call: the Authorization header each one sent."""

    async def main() -> List[str]:
        async with make_session() as session:
            client = AsyncWayGPTClient(
                api_url=server.url, project_key=server.project_key, session=session,
                max_retries=0,
            )
            await client.get_models()
            sent = [server.last_request.headers.get("authorization", "")]
            login = await client.client_login(server.user_email, server.user_password)
            assert await client.client_list_projects() is not None  # a 401 if Bearer was lost
            sent.append(server.last_request.headers["authorization"])
            assert sent[-1] == f"Bearer {login['token']}"
            project = await client.client_create_project("shop")
            await client.client_delete_project(project["id"])
            sent.append(server.last_request.headers["authorization"])
            return sent

    return asyncio.run(main())


def test_the_bearer_token_wins_over_the_sessions_basic_auth(server):
    sent = client_api_calls(server, basic_auth_session)

    assert sent[0] == BASIC_AUTH  # the session's auth still goes with project-key calls
    assert sent[1].startswith("Bearer ") and sent[2] == sent[1]


def test_the_bearer_token_wins_over_a_netrc_entry_with_trust_env(server, tmp_path, monkeypatch):
    sent = client_api_calls(server, lambda: netrc_session(tmp_path, monkeypatch))

    assert sent[0] == BASIC_AUTH  # netrc still applies where the SDK sends no Authorization
    assert sent[1].startswith("Bearer ") and sent[2] == sent[1]


def test_the_bearer_token_wins_over_the_sessions_authorization_header(server):
    sent = client_api_calls(
        server, lambda: aiohttp.ClientSession(headers={"Authorization": BASIC_AUTH})
    )

    assert sent[0] == BASIC_AUTH
    assert sent[1].startswith("Bearer ")


def test_the_callers_own_concurrent_requests_keep_the_sessions_auth(server):
    token = server.issue_token()

    async def main() -> List[str]:
        async with basic_auth_session() as session:
            client = AsyncWayGPTClient(api_url=server.url, session=session, max_retries=0)

            async def own() -> str:
                async with session.get(server.url + MODELS) as answer:
                    return answer.request_info.headers.get("Authorization", "")

            results = await asyncio.gather(
                *(client.client_list_projects(jwt_token=token) for _ in range(20)),
                *(own() for _ in range(20)),
            )
            return [r for r in results if isinstance(r, str)]

    assert asyncio.run(main()) == [BASIC_AUTH] * 20


def test_a_client_api_call_with_trust_env_still_goes_through_the_environments_proxy(
    server, tmp_path, monkeypatch
):
    token = server.issue_token()
    # The SDK turns trust_env off for that request (no netrc auth over its token), so it
    # looks the proxy up itself: the local server plays the proxy, seeing absolute URLs.
    monkeypatch.setenv("HTTP_PROXY", server.url)
    closed = "http://127.0.0.1:9"  # nothing listens: only the proxy can answer

    async def main() -> Any:
        async with netrc_session(tmp_path, monkeypatch) as session:
            client = AsyncWayGPTClient(api_url=closed, session=session, max_retries=0)
            try:
                return await client.client_list_projects(jwt_token=token)
            except waygpt.WayGPTError as error:
                return error

    result = asyncio.run(main())

    assert isinstance(result, waygpt.NotFoundError)  # the "proxy" knows no such path
    request = server.last_request
    assert request.path == closed + "/api/v1/client/projects"
    assert request.headers["authorization"] == f"Bearer {token}"
    # The netrc entry for 127.0.0.1 is the proxy's too: aiohttp would send it to the proxy.
    assert request.headers["proxy-authorization"] == BASIC_AUTH
