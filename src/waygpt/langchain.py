"""``ChatWayGPT``: WayGPT as a LangChain chat model (``pip install "waygpt[langchain]"``).

A thin class over the SDK's clients: each call goes through a :class:`~waygpt.WayGPTClient`
(or, from ``ainvoke``/``astream``, an :class:`~waygpt.AsyncWayGPTClient`) made from the
model's fields, so HMAC signing, retries, the total deadline, typed errors, stream restarts
and observability are the SDK's own. This module maps LangChain messages to the OpenAI shape
the WayGPT chat endpoint takes, and its answers back. It imports ``langchain_core``; ``import
waygpt`` does not import this module.
"""

from __future__ import annotations

import json
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

try:
    import langchain_core  # noqa: F401
except ImportError as missing:  # said plainly, with what to install
    raise ImportError(
        'waygpt.langchain needs langchain-core: pip install "waygpt[langchain]"'
    ) from missing

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils import secret_from_env
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, SecretStr

from ._redaction import Redactor
from ._structured import StructuredAnswer
from .client import WayGPTClient

if TYPE_CHECKING:
    from langchain_core.language_models.base import LangSmithParams
    from langchain_core.tools import BaseTool

    from ._async_client import AsyncWayGPTClient

__all__ = ["ChatWayGPT"]

# One lock for making any model's clients: two threads' first calls make one client.
_CLIENT_LOCK = threading.Lock()
_TOOL_CHOICES = ("auto", "none", "required")
_CLIENTS = ("_waygpt_client", "_waygpt_async_client")


class ChatWayGPT(BaseChatModel):
    """A LangChain chat model on the WayGPT chat endpoint.

    ``ChatWayGPT(model="gpt-4o", use_case="support")``; unset connection fields come from
    the ``WAYGPT_*`` variables, as for :class:`~waygpt.WayGPTClient`. ``invoke``, ``stream``,
    ``batch`` and their async forms; ``bind_tools`` and ``with_structured_output``. Errors
    are the SDK's typed errors (``RateLimitError``, ``APITimeoutError``, ...), unchanged.

    Tools, ``tool_choice`` and ``response_format`` are OpenAI's fields, passed through by
    the gateway: whether the model behind it honours them is that model's business.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model: str = "auto"
    """A model id, or ``"auto"`` to let the server choose."""
    use_case: Optional[str] = None
    """A use-case key, sent as ``use_case``."""
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    stop: Optional[List[str]] = None
    """Stop sequences, sent as ``stop``."""
    streaming: bool = False
    """``invoke`` streams and gathers the answer."""
    model_kwargs: Dict[str, Any] = Field(default_factory=dict)
    """Other fields for the request body, sent as they are."""

    api_url: Optional[str] = None
    """Default: ``WAYGPT_API_URL``, else ``https://app.waygpt.ru``."""
    project_key: Optional[SecretStr] = Field(
        alias="api_key", default_factory=secret_from_env("WAYGPT_PROJECT_KEY", default=None)
    )
    """The project key (``api_key`` is an alias); default ``WAYGPT_PROJECT_KEY``."""
    project_id: Optional[str] = None
    """Needed with ``use_hmac``; default ``WAYGPT_PROJECT_ID``."""
    hmac_secret: Optional[SecretStr] = Field(
        default_factory=secret_from_env("WAYGPT_HMAC_SECRET", default=None)
    )
    """Needed with ``use_hmac``; default ``WAYGPT_HMAC_SECRET``."""
    use_hmac: bool = False
    """Sign the requests (also on with ``WAYGPT_USE_HMAC=true``)."""
    timeout: Union[float, Tuple[float, float], None] = None
    """Seconds, or ``(connect, read)``; the client's default when unset."""
    max_retries: Optional[int] = None
    """Retries for 429/5xx and connect failures; the client's default (3) when unset."""
    total_timeout: Optional[float] = None
    """The wall-clock bound of one call, in seconds; the client's default when unset."""

    @property
    def _llm_type(self) -> str:
        return "waygpt"

    @property
    def _identifying_params(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "use_case": self.use_case,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "api_url": self.api_url,
        }

    @property
    def lc_secrets(self) -> Dict[str, str]:
        return {"project_key": "WAYGPT_PROJECT_KEY", "hmac_secret": "WAYGPT_HMAC_SECRET"}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> List[str]:
        return ["waygpt", "langchain"]

    def _get_ls_params(self, stop: Optional[List[str]] = None, **kwargs: Any) -> LangSmithParams:
        params: LangSmithParams = {
            "ls_provider": "waygpt",
            "ls_model_name": str(kwargs.get("model") or self.model),
            "ls_model_type": "chat",
        }
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    # -- the clients --------------------------------------------------------------------------

    def _client_options(self) -> Dict[str, Any]:
        options: Dict[str, Any] = {
            "api_url": self.api_url,
            "project_key": _secret(self.project_key),
            "project_id": self.project_id,
            "hmac_secret": _secret(self.hmac_secret),
            "use_hmac": self.use_hmac,
        }
        if self.timeout is not None:
            options["timeout"] = self.timeout
        if self.max_retries is not None:
            options["max_retries"] = self.max_retries
        if self.total_timeout is not None:
            options["total_timeout"] = self.total_timeout
        return options

    @property
    def client(self) -> WayGPTClient:
        """The :class:`~waygpt.WayGPTClient` the sync methods use, made at the first use."""
        made: WayGPTClient = self._shared("_waygpt_client", WayGPTClient)
        return made

    @property
    def async_client(self) -> AsyncWayGPTClient:
        """The :class:`~waygpt.AsyncWayGPTClient` of the async methods (it needs aiohttp)."""
        from ._async_client import AsyncWayGPTClient

        made: AsyncWayGPTClient = self._shared("_waygpt_async_client", AsyncWayGPTClient)
        return made

    def _shared(self, name: str, make: Callable[..., Any]) -> Any:
        # In the instance's __dict__, not a pydantic field: never compared, copied into
        # serialisation or shown by repr. Copies made by bind/with_config share the model.
        made = self.__dict__.get(name)
        if made is None:
            with _CLIENT_LOCK:
                made = self.__dict__.get(name)
                if made is None:
                    made = make(**self._client_options())
                    self.__dict__[name] = made
        return made

    def __getstate__(self) -> Dict[Any, Any]:
        # A copy in another process makes its own clients: connections are not for sharing.
        state: Dict[Any, Any] = super().__getstate__()
        state["__dict__"] = {
            key: value for key, value in state["__dict__"].items() if key not in _CLIENTS
        }
        return state

    def close(self) -> None:
        """Close the sync client's connections (a later call opens new ones)."""
        made = self.__dict__.get("_waygpt_client")
        if made is not None:
            made.close()

    async def aclose(self) -> None:
        """Close both clients' connections; call it in the event loop the model was used in."""
        self.close()
        made = self.__dict__.get("_waygpt_async_client")
        if made is not None:
            await made.close()

    # -- calls --------------------------------------------------------------------------------

    def _request(
        self, messages: List[BaseMessage], stop: Optional[List[str]], kwargs: Mapping[str, Any]
    ) -> Dict[str, Any]:
        """The keyword arguments of ``chat_completions`` for one call."""
        fields: Dict[str, Any] = {**self.model_kwargs, **kwargs}
        request: Dict[str, Any] = {
            "model": fields.pop("model", None) or self.model,
            "messages": _openai_messages(messages),
            "use_case": fields.pop("use_case", self.use_case),
            "temperature": fields.pop("temperature", self.temperature),
            "max_tokens": fields.pop("max_tokens", self.max_tokens),
        }
        fields.pop("stream", None)
        stop = stop if stop is not None else self.stop
        if stop:
            fields["stop"] = list(stop)
        return {**request, **fields}

    def _generate(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return _gathered(self._stream(messages, stop, run_manager, **kwargs))
        raw = self.client.with_raw_response.chat_completions(
            **self._request(messages, stop, kwargs)
        )
        return _result(raw.parse(), raw.request_id)

    async def _agenerate(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = self._astream(messages, stop, run_manager, **kwargs)
            return _gathered([chunk async for chunk in chunks])
        raw = await self.async_client.with_raw_response.chat_completions(
            **self._request(messages, stop, kwargs)
        )
        return _result(raw.parse(), raw.request_id)

    def _stream(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self.client.chat_completions_stream(**self._request(messages, stop, kwargs)) as chunks:
            for data in chunks:
                chunk = _chunk(data, chunks.request_id)
                if chunk is None:
                    continue
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks = await self.async_client.chat_completions_stream(
            **self._request(messages, stop, kwargs)
        )
        async with chunks:
            async for data in chunks:
                chunk = _chunk(data, chunks.request_id)
                if chunk is None:
                    continue
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    # -- tools and structured output -----------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Union[Dict[str, Any], Type[Any], Callable[..., Any], BaseTool]],
        *,
        tool_choice: Union[str, bool, Dict[str, Any], None] = None,
        strict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """This model with tools (LangChain tools, pydantic models, functions, OpenAI tool
        dicts) sent as OpenAI's ``tools``.

        ``tool_choice``: ``"auto"``, ``"none"``, ``"required"`` (or ``"any"``), a tool's
        name, ``True`` (the only tool), or OpenAI's dict. ``strict`` asks for arguments that
        match the schema exactly.
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = _tool_choice(tool_choice, formatted)
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: Union[Dict[str, Any], Type[Any], None] = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """This model answering with an object of ``schema`` (a pydantic class, a TypedDict
        or a JSON schema dict): a pydantic instance for a pydantic class, else a dict.

        ``method``: ``"json_schema"`` (OpenAI's ``response_format``, ``strict`` when the
        schema allows; an unusable answer raises :class:`~waygpt.StructuredOutputError`),
        ``"function_calling"`` (a forced call of a tool with that schema) or ``"json_mode"``
        (``response_format`` ``json_object``: say the keys in the prompt). ``include_raw``:
        ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` instead, with parse
        errors caught.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if schema is None and method != "json_mode":
            raise ValueError(f"method={method!r} needs a schema")
        is_model = isinstance(schema, type) and is_basemodel_subclass(schema)
        traced = {
            "kwargs": {"method": method, "strict": strict},
            "schema": convert_to_json_schema(schema) if schema is not None else None,
        }
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema, strict=strict)  # type: ignore[arg-type]
            name = tool["function"]["name"]
            llm = self.bind_tools(
                [schema], tool_choice=name, strict=strict,  # type: ignore[list-item]
                ls_structured_output_format=traced,
            )
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                if is_model
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method == "json_mode":
            llm = self.bind(
                response_format={"type": "json_object"}, ls_structured_output_format=traced
            )
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_model
                else JsonOutputParser()
            )
        elif method == "json_schema":
            answer = StructuredAnswer(schema)
            if strict is False:
                answer.response_format["json_schema"].update(
                    schema=answer.schema, strict=False
                )
            llm = self.bind(
                response_format=answer.response_format, ls_structured_output_format=traced
            )
            redact = Redactor((_secret(self.project_key), _secret(self.hmac_secret)))
            parser = RunnableLambda(lambda message: _parse_message(answer, message, redact))
        else:
            raise ValueError(
                f"method must be json_schema, function_calling or json_mode, not {method!r}"
            )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=lambda x: parser.invoke(x["raw"]))
        no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.assign(parsing_error=lambda _: None).with_fallbacks(
            [no_parse], exception_key="parsing_error"
        )


def _secret(value: Optional[SecretStr]) -> Optional[str]:
    return value.get_secret_value() if value is not None else None


def _tool_choice(choice: Union[str, bool, Dict[str, Any]], tools: List[Dict[str, Any]]) -> Any:
    """LangChain's ``tool_choice`` forms in OpenAI's."""
    if isinstance(choice, dict):
        return choice
    names = [tool["function"]["name"] for tool in tools]
    if choice is True:
        if len(names) != 1:
            raise ValueError("tool_choice=True needs exactly one tool")
        choice = names[0]
    if choice == "any":
        return "required"
    if choice in _TOOL_CHOICES:
        return choice
    if isinstance(choice, str):
        if choice not in names:
            raise ValueError(f"tool_choice {choice!r} is not among the tools {names}")
        return {"type": "function", "function": {"name": choice}}
    raise ValueError(f"unsupported tool_choice: {choice!r}")


def _openai_messages(messages: List[BaseMessage]) -> List[Dict[str, Any]]:
    """LangChain messages in the OpenAI chat shape (content blocks as OpenAI's parts)."""
    converted: List[Dict[str, Any]] = convert_to_openai_messages(messages)
    for message in converted:
        content = message.get("content")
        if message["role"] == "assistant" and isinstance(content, list):
            # An answer's own blocks (reasoning, another provider's tool_use): its text only.
            message["content"] = "".join(
                part.get("text", "") for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
        if message["role"] == "tool":
            message.pop("name", None)  # not a field of OpenAI's tool message
    return converted


def _usage(usage: Any) -> Optional[Dict[str, Any]]:
    """OpenAI's ``usage`` as LangChain's ``usage_metadata``."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    metadata: Dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if isinstance(cached, int):
        metadata["input_token_details"] = {"cache_read": cached}
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if isinstance(reasoning, int):
        metadata["output_token_details"] = {"reasoning": reasoning}
    return metadata


def _metadata(data: Mapping[str, Any], finish_reason: Any, request_id: Optional[str]) -> Any:
    metadata = {"finish_reason": finish_reason, "model_name": data.get("model")}
    if request_id:
        metadata["request_id"] = request_id
    return {key: value for key, value in metadata.items() if value is not None}


def _result(completion: Mapping[str, Any], request_id: Optional[str]) -> ChatResult:
    generations = []
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        calls, broken = [], []
        for raw in message.get("tool_calls") or []:
            function = raw.get("function") or {}
            arguments = function.get("arguments") or "{}"
            try:
                args = json.loads(arguments)
            except ValueError as error:
                broken.append(invalid_tool_call(
                    name=function.get("name"), args=arguments, id=raw.get("id"), error=str(error)
                ))
                continue
            if not isinstance(args, dict):
                broken.append(invalid_tool_call(
                    name=function.get("name"), args=arguments, id=raw.get("id"),
                    error="the arguments are not a JSON object",
                ))
                continue
            calls.append(tool_call(name=function.get("name", ""), args=args, id=raw.get("id")))
        extra = {"refusal": message["refusal"]} if message.get("refusal") else {}
        ai = AIMessage(
            content=message.get("content") or "",
            tool_calls=calls,
            invalid_tool_calls=broken,
            additional_kwargs=extra,
            usage_metadata=_usage(completion.get("usage")),
            response_metadata=_metadata(completion, choice.get("finish_reason"), request_id),
            id=completion.get("id"),
        )
        generations.append(ChatGeneration(message=ai))
    return ChatResult(generations=generations, llm_output={"model_name": completion.get("model")})


def _chunk(data: Mapping[str, Any], request_id: Optional[str]) -> Optional[ChatGenerationChunk]:
    """One streamed chunk (of choice 0) as an ``AIMessageChunk``: its text, its tool-call
    pieces (LangChain joins them by index), and on the last ones the finish reason, model,
    request id and usage (set once each, as chunks add up)."""
    choices = [c for c in data.get("choices") or [] if c.get("index", 0) == 0]
    usage = _usage(data.get("usage"))
    if not choices and usage is None:
        return None
    delta = (choices[0].get("delta") if choices else None) or {}
    finish_reason = choices[0].get("finish_reason") if choices else None
    pieces = [
        tool_call_chunk(
            name=(piece.get("function") or {}).get("name"),
            args=(piece.get("function") or {}).get("arguments"),
            id=piece.get("id"),
            index=piece.get("index"),
        )
        for piece in delta.get("tool_calls") or []
    ]
    message = AIMessageChunk(
        content=delta.get("content") or "",
        tool_call_chunks=pieces,
        usage_metadata=usage,  # type: ignore[arg-type]
        response_metadata=_metadata(data, finish_reason, request_id) if finish_reason else {},
        id=data.get("id"),
    )
    info = {"finish_reason": finish_reason} if finish_reason else None
    return ChatGenerationChunk(message=message, generation_info=info)


def _gathered(chunks: Any) -> ChatResult:
    total: Optional[ChatGenerationChunk] = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    if total is None:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])
    message = total.message
    gathered = AIMessage(
        content=message.content,
        tool_calls=getattr(message, "tool_calls", []),
        invalid_tool_calls=getattr(message, "invalid_tool_calls", []),
        usage_metadata=getattr(message, "usage_metadata", None),
        response_metadata=message.response_metadata,
        id=message.id,
    )
    return ChatResult(generations=[ChatGeneration(message=gathered)])


def _parse_message(answer: StructuredAnswer, message: Any, redact: Redactor) -> Any:
    """A structured answer read as ``chat_completions_parse`` reads it."""
    choice = {
        "finish_reason": message.response_metadata.get("finish_reason"),
        "message": {
            "content": message.content if isinstance(message.content, str) else message.text,
            "refusal": message.additional_kwargs.get("refusal"),
        },
    }
    return answer.parse({"choices": [choice]}, redact)["choices"][0]["message"]["parsed"]
