"""The local server's chat model: tool calls, tool results and structured answers, over HTTP.

What docs/testing.md ("Tool calls and structured answers") promises, each behaviour once,
through the real client against a real ``WayGPTTestServer``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional

import pytest

from waygpt import BadRequestError, UnprocessableEntityError, WayGPTClient
from waygpt.testing import WayGPTTestServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}


@pytest.fixture(scope="module")
def module_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as running:
        yield running


@pytest.fixture(scope="module")
def chat(module_server: WayGPTTestServer) -> Iterator[WayGPTClient]:
    with WayGPTClient(
        api_url=module_server.url, project_key=module_server.project_key, max_retries=0,
        timeout=5,
    ) as created:
        yield created


def _ask(chat: WayGPTClient, text: str, **fields: Any) -> Dict[str, Any]:
    answer = chat.chat_completions(messages=[{"role": "user", "content": text}], **fields)
    choice: Dict[str, Any] = answer["choices"][0]
    return choice


def _arguments(choice: Dict[str, Any]) -> Any:
    (call,) = choice["message"]["tool_calls"]
    return call["function"]["name"], json.loads(call["function"]["arguments"])


def test_a_named_tool_choice_calls_that_tool_with_the_message_s_values(chat):
    choice = _ask(
        chat, "Weather in 'Kazan' for 3 days, in fahrenheit", tools=[ADD, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["id"].startswith("call_")
    assert _arguments(choice) == (
        "get_weather", {"city": "Kazan", "days": 3, "unit": "fahrenheit"}
    )


def test_values_that_do_not_fit_the_schema_are_passed_over_for_fixed_ones(chat):
    choice = _ask(chat, "weather for 30 days", tools=[WEATHER], tool_choice="required")
    assert _arguments(choice) == ("get_weather", {"city": "city", "days": 1, "unit": "celsius"})


def test_required_calls_the_first_tool_when_the_message_names_none(chat):
    assert _arguments(_ask(chat, "2 and 5", tools=[ADD, WEATHER], tool_choice="required")) == (
        "add", {"a": 2, "b": 5}
    )


def test_auto_calls_a_tool_the_message_names_by_a_word_of_its_name(chat):
    choice = _ask(chat, "What is the weather in 'Omsk'?", tools=[ADD, WEATHER])
    assert _arguments(choice)[0] == "get_weather"


def test_auto_answers_in_text_when_no_tool_is_named(chat):
    choice = _ask(chat, "Hello there", tools=[ADD, WEATHER], tool_choice="auto")
    assert choice["message"] == {"role": "assistant", "content": "Echo: Hello there"}
    assert choice["finish_reason"] == "stop"


def test_none_never_calls_a_tool(chat):
    choice = _ask(chat, "add 1 and 2", tools=[ADD], tool_choice="none")
    assert "tool_calls" not in choice["message"]


def test_after_tool_messages_the_answer_uses_their_content(chat):
    messages = [
        {"role": "user", "content": "weather in 'Kazan' and 1 + 2?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "add", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny, +20"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "3"}]},
    ]
    answer = chat.chat_completions(messages=messages, tools=[ADD, WEATHER])
    assert answer["choices"][0]["message"]["content"] == "get_weather: Sunny, +20\nadd: 3"


def test_a_streamed_tool_call_sends_id_and_name_first_then_the_arguments_in_pieces(chat):
    stream = chat.chat_completions(
        messages=[{"role": "user", "content": "Weather in 'Saint Petersburg' for 2 days"}],
        tools=[WEATHER], tool_choice="required", stream=True,
    )
    deltas = [chunk["choices"][0] for chunk in stream]
    head = deltas[0]["delta"]["tool_calls"][0]
    assert head["index"] == 0 and head["id"].startswith("call_")
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [d["delta"]["tool_calls"][0] for d in deltas[1:-1]]
    assert len(pieces) > 1 and all(set(p) == {"index", "function"} for p in pieces)
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert json.loads(arguments) == {"city": "Saint Petersburg", "days": 2, "unit": "celsius"}
    assert deltas[-1]["finish_reason"] == "tool_calls"


def _schema_answer(chat: WayGPTClient, text: str, schema: Dict[str, Any], **fields: Any) -> Any:
    choice = _ask(
        chat, text,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        **fields,
    )
    return json.loads(choice["message"]["content"])


def test_a_json_schema_answer_is_a_valid_instance_of_a_pydantic_schema(chat):
    pydantic = pytest.importorskip("pydantic")
    from enum import Enum

    class Kind(str, Enum):
        city = "city"
        village = "village"

    class Place(pydantic.BaseModel):
        name: str
        kind: Kind
        population: int = pydantic.Field(gt=0)
        area: Optional[float] = None
        founded: Optional[Place] = None

    class Trip(pydantic.BaseModel):
        title: str = pydantic.Field(min_length=8, max_length=10)
        stops: List[Place]
        visa: bool
        extra: Dict[str, int]

    schema = Trip.model_json_schema() if hasattr(Trip, "model_json_schema") else Trip.schema()
    data = _schema_answer(chat, "A trip: 'Kazan', a village of 1000 people, 'Sviyazhsk'", schema)
    trip = Trip.model_validate(data) if hasattr(Trip, "model_validate") else Trip.parse_obj(data)
    assert trip.title == "Kazanxxx" and trip.stops[0].name == "Sviyazhsk"
    assert trip.stops[0].kind == Kind.village and trip.stops[0].population == 1000


def test_a_schema_with_required_recursion_has_no_instance_and_is_refused(chat):
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}},
                           "required": ["next"]}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(BadRequestError, match="nests too deeply"):
        _schema_answer(chat, "x", schema)


def test_after_tool_messages_their_results_fill_a_schema_after_the_user_s_words(chat):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature": {"type": "integer"}},
        "required": ["city", "temperature"],
    }
    messages = [
        {"role": "user", "content": "How warm is it in 'Kazan'?"},
        {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "Sunny, +20"},
    ]
    answer = chat.chat_completions(
        messages=messages,
        response_format={"type": "json_schema", "json_schema": {"name": "f", "schema": schema}},
    )
    content = answer["choices"][0]["message"]["content"]
    assert json.loads(content) == {"city": "Kazan", "temperature": 20}


def test_a_strict_schema_that_leaves_a_property_optional_is_refused_as_openai_does(chat):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    spec = {"name": "x", "schema": schema, "strict": True}
    with pytest.raises(BadRequestError, match="'required' is required to list every key"):
        _ask(chat, "x", response_format={"type": "json_schema", "json_schema": spec})


def test_json_mode_answers_an_object_with_the_quoted_keys_of_the_message(chat):
    choice = _ask(chat, "Reply as JSON with 'setup' and 'punchline'",
                  response_format={"type": "json_object"})
    assert json.loads(choice["message"]["content"]) == {"setup": "setup", "punchline": "punchline"}
    plain = _ask(chat, "Reply as JSON", response_format={"type": "json_object"})
    assert json.loads(plain["message"]["content"]) == {"answer": "Echo: Reply as JSON"}


def test_a_structured_answer_streams_in_pieces_that_join_into_the_instance(chat):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    stream = chat.chat_completions(
        messages=[{"role": "user", "content": "'Kazan'"}], stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert json.loads(stream.collect().text) == {"city": "Kazan"}


def test_stop_cuts_the_answer_at_the_first_stop_sequence(chat):
    choice = _ask(chat, "one two three four", stop=["four", "three"])
    assert choice["message"]["content"] == "Echo: one two "
    assert choice["finish_reason"] == "stop"


def test_max_tokens_cuts_the_answer_with_finish_reason_length(chat):
    choice = _ask(chat, "one two three four", max_tokens=2)
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "Echo: one"},
        "finish_reason": "length",
    }
    streamed = chat.chat_completions(
        messages=[{"role": "user", "content": "one two three"}], max_tokens=3, stream=True
    ).collect()
    assert (streamed.text, streamed.finish_reason) == ("Echo: one two", "length")


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"tool_choice": "required"}, 400, "only allowed when 'tools' are specified"),
        ({"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         400, "names function 'nope', which is not in 'tools'"),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, 422, "non-empty string"),
        ({"tools": [{"type": "retrieval"}]}, 422, "Input should be 'function'"),
        ({"response_format": {"type": "yaml"}}, 422, "'json_schema'"),
    ],
    ids=["choice-without-tools", "unknown-function", "nameless-tool", "not-a-function",
         "unknown-format"],
)
def test_bad_tool_and_format_fields_are_refused(chat, fields, status, message):
    error = UnprocessableEntityError if status == 422 else BadRequestError
    with pytest.raises(error, match=message):
        _ask(chat, "x", **fields)


def test_an_assistant_message_with_tool_calls_may_leave_content_out(chat):
    messages = [
        {"role": "user", "content": "add 1 2"},
        {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "3"},
    ]
    assert chat.chat_completions(messages=messages)["choices"][0]["message"]["content"] == "add: 3"
    with pytest.raises(UnprocessableEntityError, match="content"):
        chat.chat_completions(messages=[{"role": "assistant"}])
