"""The ``openai`` package pointed at WayGPT, with the settings docs/integrations.md gives:
what works and what does not, against the local server. Skipped without openai."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator

import pytest

openai = pytest.importorskip("openai")

from waygpt.testing import WayGPTTestServer  # noqa: E402


def _client(server: WayGPTTestServer, cls: Any = None) -> Any:
    return (cls or openai.OpenAI)(
        base_url=f"{server.url}/api/v1/waygpt",
        api_key="unused",
        default_headers={"X-Project-Key": server.project_key},
        max_retries=0,
    )


@pytest.fixture
def gpt(server: WayGPTTestServer) -> Iterator[Any]:
    client = _client(server)
    yield client
    client.close()


def test_chat_goes_to_the_waygpt_endpoint_with_the_project_key(gpt, server):
    answer = gpt.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Привет"}]
    )
    assert answer.choices[0].message.content == "Echo: Привет"
    assert answer.usage.total_tokens == 3
    sent = server.last_request
    assert sent.path == "/api/v1/waygpt/chat/completions"
    assert sent.headers["x-project-key"] == server.project_key


def test_a_stream_arrives_chunk_by_chunk(gpt):
    stream = gpt.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "one two"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content for chunk in stream]
    assert "".join(p for p in pieces if p) == "Echo: one two" and len(pieces) > 2


def test_images_are_generated(gpt, server):
    image = gpt.images.generate(prompt="a cat", model="dall-e-3", size="1024x1024")
    assert image.data[0].url.startswith(f"{server.url}/media/images/")


def test_tool_calls_and_structured_answers_work_as_with_openai(gpt):
    pydantic = pytest.importorskip("pydantic")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    answer = gpt.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather in 'Kazan'?"}],
        tools=tools,
    )
    call = answer.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "Kazan"}
    )

    class City(pydantic.BaseModel):
        name: str

    parsed = gpt.chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": "'Kazan'"}], response_format=City
    )
    assert parsed.choices[0].message.parsed == City(name="Kazan")


def test_the_async_client_works_the_same(server):
    async def main() -> str:
        client = _client(server, openai.AsyncOpenAI)
        try:
            answer = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            await client.close()
        return str(answer.choices[0].message.content)

    assert asyncio.run(main()) == "Echo: hi"


def test_models_list_does_not_read_waygpt_s_list_of_names(gpt):
    # WayGPT answers a list of model ids; openai expects {"object": "list", "data": [...]}.
    with pytest.raises(Exception) as caught:  # openai's own, whatever it is
        list(gpt.models.list())
    assert not isinstance(caught.value, openai.APIStatusError)


def test_a_project_that_requires_hmac_refuses_openai_s_unsigned_requests(hmac_server):
    client = _client(hmac_server)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    client.close()
