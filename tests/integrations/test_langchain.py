"""``ChatWayGPT`` beyond LangChain's standard suite: what it sends, what it keeps from the
answer, and that the SDK's guarantees (signing, typed errors, stream restarts, secrets) hold
through it. Over real HTTP against the local server; skipped without langchain-core."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any, Iterator, List

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, dumps, load
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from waygpt import RateLimitError, StructuredOutputError
from waygpt.langchain import ChatWayGPT
from waygpt.testing import WayGPTTestServer


class City(BaseModel):
    """A city."""

    name: str
    population: int


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@pytest.fixture
def model(server: WayGPTTestServer) -> Iterator[ChatWayGPT]:
    chat = ChatWayGPT(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=5
    )
    yield chat
    chat.close()


def _body(server: WayGPTTestServer) -> Any:
    return server.last_request.json()


def test_the_model_s_settings_and_a_call_s_arguments_go_into_the_request(server):
    chat = ChatWayGPT(
        api_url=server.url, project_key=server.project_key, model="gpt-4o",
        use_case="support", temperature=0.2, max_tokens=50, stop=["END"],
        model_kwargs={"top_p": 0.5},
    )
    chat.invoke("Привет")
    body = _body(server)
    assert body == {
        "model": "gpt-4o", "messages": [{"role": "user", "content": "Привет"}],
        "use_case": "support", "temperature": 0.2, "max_tokens": 50, "top_p": 0.5,
        "stop": ["END"],
    }
    chat.invoke("Привет", model="claude-3-5-sonnet", stop=["x"], top_p=0.9)
    body = _body(server)
    assert (body["model"], body["stop"], body["top_p"]) == ("claude-3-5-sonnet", ["x"], 0.9)


def test_an_answer_carries_usage_finish_reason_model_and_request_id(model, server):
    answer = model.invoke("one two")
    assert answer.content == "Echo: one two"
    assert answer.usage_metadata == {"input_tokens": 2, "output_tokens": 3, "total_tokens": 5}
    assert answer.response_metadata["finish_reason"] == "stop"
    assert answer.response_metadata["model_name"] == "gpt-4o-mini"
    assert answer.id.startswith("chatcmpl-")
    server.script(
        body={"id": "chatcmpl-7", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason":
              "length", "message": {"role": "assistant", "content": "Hi"}}]},
        headers={"X-Request-ID": "req-123"},
    )
    assert model.invoke("hi").response_metadata == {
        "finish_reason": "length", "model_name": "gpt-4o", "request_id": "req-123"
    }


def test_a_streamed_answer_adds_up_to_the_same_metadata_once(model):
    chunks = list(model.stream("one two"))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert full.content == "Echo: one two"
    assert full.usage_metadata == {"input_tokens": 2, "output_tokens": 3, "total_tokens": 5}
    assert full.response_metadata["finish_reason"] == "stop"
    assert full.response_metadata["model_name"] == "gpt-4o-mini"
    assert full.response_metadata["request_id"]
    assert len([c for c in chunks if c.usage_metadata]) == 1


def test_streaming_true_makes_invoke_stream(server):
    chat = ChatWayGPT(api_url=server.url, project_key=server.project_key, streaming=True)
    assert chat.invoke("one two").content == "Echo: one two"
    assert _body(server)["stream"] is True


def test_requests_are_signed_when_the_project_requires_it(hmac_server):
    chat = ChatWayGPT(
        api_url=hmac_server.url, project_key=hmac_server.project_key,
        project_id=hmac_server.project_id, hmac_secret=hmac_server.hmac_secret, use_hmac=True,
    )
    assert chat.invoke("hi").content == "Echo: hi"
    assert "x-mb-signature" in hmac_server.last_request.headers


def test_unset_settings_come_from_the_waygpt_variables(server, monkeypatch):
    monkeypatch.setenv("WAYGPT_API_URL", server.url)
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", server.project_key)
    assert ChatWayGPT().invoke("hi").content == "Echo: hi"


def test_the_sdk_s_typed_errors_pass_through_unchanged(model, server):
    server.script(status=429, body={"detail": "Too many requests"}, headers={"Retry-After": "7"})
    with pytest.raises(RateLimitError) as caught:
        model.invoke("hi")
    assert caught.value.retry_after == 7 and caught.value.request_id


def test_a_stream_cut_before_its_first_content_starts_again(server):
    chat = ChatWayGPT(api_url=server.url, project_key=server.project_key, max_retries=1)
    server.script_stream_fault(after_events=0, cut="reset")
    assert "".join(c.content for c in chat.stream("one two")) == "Echo: one two"
    assert len(server.requests) == 2


def test_secrets_stay_out_of_repr_serialisation_and_traces(server):
    chat = ChatWayGPT(
        api_url=server.url, project_key=server.project_key, project_id=server.project_id,
        hmac_secret=server.hmac_secret,
    )
    seen: List[Any] = []

    class Recorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            seen.append((serialized, kwargs))

    chat.invoke("hi", config={"callbacks": [Recorder()]})
    shown = [repr(chat), str(chat), dumps(chat), chat.model_dump_json(), repr(seen)]
    for secret in (server.project_key, server.hmac_secret):
        assert not any(secret in text for text in shown)
    assert secret not in repr(chat.client) and "<set>" in repr(chat.client)


@pytest.mark.filterwarnings("ignore:The function `load` is in beta")
def test_a_serialized_model_loads_back_with_its_key_from_the_environment(server, monkeypatch):
    chat = ChatWayGPT(api_url=server.url, project_key=server.project_key, model="gpt-4o")
    serialized = dumpd(chat)
    assert serialized["kwargs"]["project_key"] == {
        "lc": 1, "type": "secret", "id": ["WAYGPT_PROJECT_KEY"]
    }
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", server.project_key)
    loaded = load(serialized, allowed_objects=[ChatWayGPT], valid_namespaces=["waygpt"],
                  secrets_from_env=True)
    assert loaded.model == "gpt-4o" and loaded.invoke("hi").content == "Echo: hi"


def test_a_pickled_model_makes_its_own_client(model):
    model.invoke("hi")
    copy = pickle.loads(pickle.dumps(model))
    assert "_waygpt_client" not in copy.__dict__
    assert copy.invoke("hi").content == "Echo: hi" and copy.client is not model.client


def test_tool_calls_and_tool_results_travel_in_openai_s_shape(model, server):
    with_tools = model.bind_tools([get_weather])
    asked = HumanMessage("What is the weather in 'Kazan'?")
    call = with_tools.invoke([asked])
    assert call.tool_calls == [
        {"name": "get_weather", "args": {"city": "Kazan"}, "id": call.tool_calls[0]["id"],
         "type": "tool_call"}
    ]
    result = get_weather.invoke(call.tool_calls[0])
    answer = with_tools.invoke([asked, call, result])
    assert answer.content == "get_weather: Sunny in Kazan"
    sent = _body(server)["messages"]
    assert sent[1] == {
        "role": "assistant", "content": "",
        "tool_calls": [{"type": "function", "id": call.tool_calls[0]["id"],
                        "function": {"name": "get_weather", "arguments": '{"city": "Kazan"}'}}],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": call.tool_calls[0]["id"],
                       "content": "Sunny in Kazan"}


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("any", "required"),
        ("auto", "auto"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
        (True, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_is_sent_in_openai_s_form(model, server, choice, sent):
    model.bind_tools([get_weather], tool_choice=choice).invoke("hello")
    assert _body(server)["tool_choice"] == sent


def test_an_unknown_tool_choice_is_refused_before_the_network(model, server):
    with pytest.raises(ValueError, match="not among the tools"):
        model.bind_tools([get_weather], tool_choice="other")
    assert server.requests == []


def test_a_streamed_tool_call_adds_up_to_the_call(model):
    chunks = list(model.bind_tools([get_weather], tool_choice="any").stream("'Omsk'"))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("get_weather", {"city": "Omsk"})]
    assert full.response_metadata["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_by_each_method_gives_a_pydantic_instance(model, server, method):
    ask = "'Kazan' has 1300000 people" if method != "json_mode" else "'name' and 'population'"
    structured = model.with_structured_output(City, method=method)
    if method == "json_mode":
        server.script(body={"choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": '{"name": "Kazan", "population": 1300000}'}}]})
    assert structured.invoke(ask) == City(name="Kazan", population=1300000)
    body = _body(server)
    if method == "json_schema":
        assert body["response_format"]["json_schema"]["strict"] is True
    elif method == "function_calling":
        assert body["tool_choice"] == {"type": "function", "function": {"name": "City"}}
    else:
        assert body["response_format"] == {"type": "json_object"}


def test_strict_false_sends_the_schema_as_it_is(model, server):
    model.with_structured_output(City, strict=False).invoke("'Kazan' 5")
    spec = _body(server)["response_format"]["json_schema"]
    assert spec["strict"] is False and "additionalProperties" not in spec["schema"]


def test_an_unusable_structured_answer_raises_structured_output_error(model, server):
    server.script(body={"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "No."}}]})
    with pytest.raises(StructuredOutputError) as caught:
        model.with_structured_output(City).invoke("x")
    assert (caught.value.reason, caught.value.raw_text) == ("refusal", "No.")


def test_include_raw_keeps_the_message_and_the_parsing_error(model, server):
    server.script(body={"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": '{"name": "Kazan"}'}}]})
    result = model.with_structured_output(City, include_raw=True).invoke("x")
    assert isinstance(result["raw"], AIMessage) and result["parsed"] is None
    assert isinstance(result["parsing_error"], StructuredOutputError)
    good = model.with_structured_output(City, include_raw=True).invoke("'Kazan' 5")
    assert good["parsed"] == City(name="Kazan", population=5) and good["parsing_error"] is None


def test_a_tool_message_with_a_list_of_text_parts_is_sent_as_its_text(model, server):
    call = AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "c1", "type": "tool_call"}])
    result = ToolMessage([{"type": "text", "text": "done"}], tool_call_id="c1")
    assert model.invoke([HumanMessage("go"), call, result]).content == "f: done"
    assert _body(server)["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "done"}


# -- the async client ----------------------------------------------------------------------


def test_the_async_client_is_made_only_when_an_async_method_is_used(model):
    pytest.importorskip("aiohttp")
    model.invoke("hi")
    assert "_waygpt_async_client" not in model.__dict__

    async def main() -> Any:
        try:
            return await model.ainvoke("hi"), [c async for c in model.astream("one two")]
        finally:
            await model.aclose()

    answer, chunks = asyncio.run(main())
    assert answer.content == "Echo: hi" and answer.response_metadata["request_id"]
    assert "".join(c.content for c in chunks) == "Echo: one two"
    assert "_waygpt_async_client" in model.__dict__


def test_the_async_path_raises_the_sdk_s_typed_errors(model, server):
    pytest.importorskip("aiohttp")
    server.script(status=429, body={"detail": "slow down"})

    async def main() -> None:
        try:
            await model.ainvoke("hi")
        finally:
            await model.aclose()

    with pytest.raises(RateLimitError):
        asyncio.run(main())
