"""``chat_completions_parse``: a schema out as OpenAI's ``response_format``, ``parsed`` back.

Over real HTTP against the local server, whose model answers ``json_schema`` with a valid
instance; the failures (a refusal, a cut answer, text that is not JSON or does not match)
come from the server itself (``max_tokens``) or from scripted answers.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, Dict, List, Literal, Optional

import pytest

if sys.version_info >= (3, 11):
    from typing import NotRequired, Required, TypedDict
else:  # typing's TypedDict before 3.11 knows no NotRequired (pydantic brings this module)
    from typing_extensions import NotRequired, Required, TypedDict


class Address(TypedDict):
    city: str
    zip: Optional[str]


class Person(TypedDict):
    name: str
    age: int
    role: Literal["admin", "user"]
    tags: List[str]
    address: Address


class Loose(TypedDict):
    name: str
    nickname: NotRequired[str]


class Sparse(TypedDict, total=False):
    name: Required[str]
    nickname: str


CITY_SCHEMA = {
    "title": "City",
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}
ASK = [{"role": "user", "content": "'Kazan' has 1300000 people"}]


def _answer(content: Optional[str], **message: Any) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
    }


def _sent_format(server: Any) -> Dict[str, Any]:
    sent: Dict[str, Any] = server.last_request.json()["response_format"]
    return sent


def test_a_pydantic_model_is_sent_as_a_strict_json_schema_and_parsed_into_an_instance(
    client, server
):
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):
        name: str
        population: int

    answer = client.chat_completions_parse(messages=ASK, response_format=City)
    parsed = answer["choices"][0]["message"]["parsed"]
    assert isinstance(parsed, City) and (parsed.name, parsed.population) == ("Kazan", 1300000)
    sent = _sent_format(server)
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "City"
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["additionalProperties"] is False


def test_a_typeddict_is_described_from_its_annotations_and_parsed_into_a_checked_dict(
    client, server
):
    answer = client.chat_completions_parse(
        messages=[{"role": "user", "content": "'Ann' 'Kazan' is 30, an admin"}],
        response_format=Person,
    )
    assert answer["choices"][0]["message"]["parsed"] == {
        "name": "Ann", "age": 30, "role": "admin", "tags": ["Kazan"],
        "address": {"city": "city", "zip": "zip"},
    }
    spec = _sent_format(server)["json_schema"]
    assert spec["strict"] is True
    assert spec["schema"]["properties"]["address"] == {"$ref": "#/$defs/Address"}
    assert spec["schema"]["$defs"]["Address"]["properties"]["zip"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }


def test_a_schema_with_an_optional_property_is_sent_without_strict(client, server):
    client.chat_completions_parse(messages=ASK, response_format=Loose)
    assert _sent_format(server)["json_schema"]["strict"] is False
    open_schema = {"type": "object", "properties": {"a": {"type": "string"}},
                   "required": ["a"], "additionalProperties": {"type": "string"}}
    client.chat_completions_parse(messages=ASK, response_format=open_schema)
    assert _sent_format(server)["json_schema"] == {
        "name": "response", "schema": open_schema, "strict": False
    }


def test_required_and_not_required_decide_what_a_typeddict_requires(client, server):
    client.chat_completions_parse(messages=ASK, response_format=Sparse)
    assert _sent_format(server)["json_schema"]["schema"]["required"] == ["name"]
    client.chat_completions_parse(messages=ASK, response_format=Loose)
    assert _sent_format(server)["json_schema"]["schema"]["required"] == ["name"]


def test_a_json_schema_dict_gives_a_dict_checked_against_it(client, server):
    answer = client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA)
    assert answer["choices"][0]["message"]["parsed"] == {"name": "Kazan", "population": 1300000}
    assert _sent_format(server)["json_schema"]["name"] == "City"


def test_an_openai_response_format_dict_is_sent_as_it_is(client, server):
    given = {"type": "json_schema",
             "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": False}}
    answer = client.chat_completions_parse(messages=ASK, response_format=given)
    assert answer["choices"][0]["message"]["parsed"]["name"] == "Kazan"
    assert _sent_format(server) == given


def test_every_choice_is_parsed(client, server):
    two = _answer('{"name": "A", "population": 1}')
    two["choices"].append({**two["choices"][0], "index": 1,
                           "message": {"role": "assistant",
                                       "content": '{"name": "B", "population": 2}'}})
    server.script(body=two)
    answer = client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA)
    assert [c["message"]["parsed"]["name"] for c in answer["choices"]] == ["A", "B"]


def test_a_refusal_raises_structured_output_error_with_its_text(sdk, client, server):
    server.script(body=_answer(None, refusal="I cannot help with that."))
    with pytest.raises(sdk.StructuredOutputError) as caught:
        client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA)
    assert caught.value.reason == "refusal"
    assert caught.value.raw_text == "I cannot help with that."
    assert isinstance(caught.value, sdk.APIResponseValidationError)


def test_an_answer_cut_at_max_tokens_raises_with_what_was_written(sdk, client):
    with pytest.raises(sdk.StructuredOutputError, match="cut at max_tokens") as caught:
        client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA, max_tokens=2)
    assert caught.value.reason == "length"
    assert caught.value.raw_text == '{"name": "Kazan",'


def test_text_that_is_not_json_raises_without_a_json_error_chained(sdk, client, server):
    server.script(body=_answer("Sure! Here it is: {name: Kazan"))
    with pytest.raises(sdk.StructuredOutputError, match="not JSON") as caught:
        client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA)
    assert caught.value.reason == "not_json"
    assert caught.value.raw_text == "Sure! Here it is: {name: Kazan"
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_json_that_does_not_match_the_schema_raises_saying_where(sdk, client, server):
    server.script(body=_answer('{"name": 5, "extra": true}'))
    with pytest.raises(sdk.StructuredOutputError) as caught:
        client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA)
    assert caught.value.reason == "mismatch"
    assert "'population' is required" in caught.value.message
    assert "$.name: should be string" in caught.value.message


def test_a_pydantic_mismatch_raises_without_pydantic_s_error(sdk, client, server):
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):
        name: str
        population: int

    server.script(body=_answer('{"name": "Kazan", "population": "many"}'))
    with pytest.raises(sdk.StructuredOutputError, match=r"\$\.population: ") as caught:
        client.chat_completions_parse(messages=ASK, response_format=City)
    assert caught.value.reason == "mismatch"
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert "many" not in caught.value.message  # the answer's values stay in raw_text


def test_the_raw_text_of_an_error_has_the_project_key_redacted_and_pickles(
    sdk, client, server
):
    server.script(body=_answer(f'{{"name": "{server.project_key}"}}'))
    with pytest.raises(sdk.StructuredOutputError) as caught:
        client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA)
    assert server.project_key not in caught.value.raw_text
    assert "[REDACTED]" in caught.value.raw_text
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.reason, copy.raw_text) == ("mismatch", caught.value.raw_text)


@pytest.mark.parametrize("bad", [42, "City", List[int], {"type": "json_schema"}.keys()])
def test_a_response_format_that_is_no_schema_is_refused_before_the_network(client, server, bad):
    with pytest.raises(TypeError, match="response_format"):
        client.chat_completions_parse(messages=ASK, response_format=bad)
    assert server.requests == []


def test_parse_does_not_stream(client, server):
    with pytest.raises(TypeError, match="does not stream"):
        client.chat_completions_parse(messages=ASK, response_format=CITY_SCHEMA, stream=True)
    assert server.requests == []
