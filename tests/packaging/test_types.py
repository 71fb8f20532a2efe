"""The answers are typed for type checkers: mypy --strict on code that uses both clients."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = '''
from typing import List

from waygpt import AsyncWayGPTClient, WayGPTClient
from waygpt.types import ChatCompletion, MediaJob


def sync_usage(client: WayGPTClient) -> None:
    reply = client.chat_completions(messages=[{"role": "user", "content": "hi"}])
    reveal_type(reply["choices"])
    reveal_type(reply["choices"][0]["message"]["content"])
    reveal_type(client.get_media_job("j1")["status"])
    reveal_type(client.get_models())
    reveal_type(client.client_login("a@b.c", "pw")["token"])
    with client.chat_completions_stream(messages=[{"role": "user", "content": "hi"}]) as stream:
        for chunk in stream:
            reveal_type(chunk["choices"])
    models: List[str] = client.get_models()
    job: MediaJob = client.video_generations("sunset")
    typed: ChatCompletion = reply
    schema = {"type": "object"}
    parsed = client.chat_completions_parse(messages=[{"role": "user", "content": "hi"}],
                                           response_format=schema)
    reveal_type(parsed["choices"][0]["message"]["parsed"])


async def async_usage(client: AsyncWayGPTClient) -> None:
    reply = await client.chat_completions(messages=[{"role": "user", "content": "hi"}])
    reveal_type(reply["choices"])
    reveal_type((await client.get_media_job("j1"))["status"])
    stream = await client.chat_completions(messages=[], stream=True)
    async for chunk in stream:
        reveal_type(chunk)


def misuse(client: WayGPTClient) -> None:
    client.get_media_job("j1")["status"] + 1
'''


def test_mypy_strict_sees_the_answer_types(tmp_path: Path) -> None:
    source = tmp_path / "user_code.py"
    source.write_text(textwrap.dedent(USER_CODE), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), str(source)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    notes = result.stdout.replace("builtins.", "")
    revealed = {
        int(line.split(":")[1]): line.split('Revealed type is "', 1)[1].rstrip('"')
        for line in notes.splitlines()
        if "Revealed type is" in line
    }
    lines = textwrap.dedent(USER_CODE).splitlines()

    def type_at(text: str) -> str:
        return revealed[next(n for n, line in enumerate(lines, 1) if text in line)]

    assert type_at('reveal_type(reply["choices"])').startswith("list[")
    assert "ChatCompletionChoice" in type_at('reveal_type(reply["choices"])')
    assert type_at('["message"]["content"]') in ("str | None", "Union[str, None]")
    assert type_at('get_media_job("j1")["status"])') == "str"
    assert type_at("reveal_type(client.get_models())") == "list[str]"
    assert type_at('["token"])') == "str"
    assert "ChatCompletionChunkChoice" in type_at('reveal_type(chunk["choices"])')
    assert type_at('(await client.get_media_job("j1"))["status"]') == "str"
    assert "ChatCompletionChunk" in type_at("reveal_type(chunk)")
    assert type_at('["message"]["parsed"]') == "Any"
    # The one deliberate mistake, and nothing else, is an error.
    errors = [line for line in notes.splitlines() if ": error:" in line]
    assert len(errors) == 1, notes
    assert 'Unsupported operand types for + ("str" and "int")' in errors[0]
