"""Project-key endpoints: ``/api/v1/waygpt/*`` and ``/api/v1/widget/token``."""

import re
import secrets
import uuid
from typing import Any, Dict, List, Optional

from . import _policy as policy
from . import _validate as v
from ._answers import Answer, Message, answer, read_messages
from ._context import Context, reply
from ._faults import ScriptedResponse, sse_event, usage_chunk
from ._schema import iter_pieces
from ._state import Job, Project, UseCase

_SIZE = re.compile(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")
_WORD = re.compile(r"\s*\S+")


def _resolve_chat_model(project: Project, model: str, use_case: Optional[UseCase]) -> str:
    """The model that answers: the one named (it must exist and be allowed), or ``auto``'s pick.

    ``auto`` takes the use case's own ``models`` list (lowest priority number first) when it
    has one: the owner configured it, so it is used as it is, even for a model outside
    ``allowed_models``. Otherwise it takes the project's first allowed chat model.
    """
    if model != "auto":
        return policy.check_model(project, model)
    configured = use_case.config.get("models") if use_case is not None else None
    if isinstance(configured, list):
        candidates = [
            entry
            for entry in configured
            if isinstance(entry, dict) and isinstance(entry.get("model_id"), str)
        ]
        if candidates:
            best = min(candidates, key=lambda entry: entry.get("priority", 0))
            return str(best["model_id"])
    return policy.auto_model(project, "chat")


def _tokens(text: str) -> List[str]:
    """Word tokens that concatenate back to ``text`` exactly."""
    tokens = _WORD.findall(text)
    if not tokens:
        return [text]
    tail = text[len("".join(tokens)) :]
    tokens[-1] += tail
    return tokens


def _usage(messages: List[Message], said: Answer) -> Dict[str, int]:
    prompt_tokens = sum(len(m.text.split()) for m in messages)
    completion_tokens = len((said.content or "").split()) + sum(
        1 + len(call["function"]["arguments"].split()) for call in said.tool_calls
    )
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _deltas(said: Answer) -> List[Dict[str, Any]]:
    """The answer as a model streams it: the content word by word; a tool call's id and name
    first, then its arguments in pieces."""
    if not said.tool_calls:
        tokens = _tokens(said.content or "")
        return [{"role": "assistant", "content": tokens[0]}] + [
            {"content": token} for token in tokens[1:]
        ]
    deltas: List[Dict[str, Any]] = []
    for index, call in enumerate(said.tool_calls):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        deltas.append({"role": "assistant", "content": None, "tool_calls": [head]}
                      if index == 0 else {"tool_calls": [head]})
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in iter_pieces(call["function"]["arguments"])
        )
    return deltas


def _include_usage(body: Dict[str, Any]) -> bool:
    """``stream_options.include_usage``, checked (False when not given)."""
    options = v.mapping(body, "stream_options") or {}
    value = options.get("include_usage")
    if value is not None and not isinstance(value, bool):
        loc = ["stream_options", "include_usage"]
        raise v.invalid(loc, "Input should be a valid boolean", "bool_type")
    return bool(value)


def chat_completions(ctx: Context) -> ScriptedResponse:
    project = ctx.require_project()
    body = v.json_object(ctx.request)
    messages = read_messages(body)
    model = v.string(body, "model") or "auto"
    use_case_key = v.string(body, "use_case")
    v.number(body, "temperature", low=0, high=2)
    v.integer(body, "max_tokens", low=1)
    stream = v.boolean(body, "stream") or False
    said = answer(body, messages)
    include_usage = _include_usage(body) or ctx.always_include_usage
    # The fields are valid (422 first, as FastAPI validates before the endpoint runs);
    # now what they name must exist: the use case, then the model.
    use_case: Optional[UseCase] = None
    if use_case_key is not None:
        use_case = project.active_use_case(use_case_key)
        if use_case is None:
            raise v.ApiError(404, f"Use case '{use_case_key}' not found")
    resolved_model = _resolve_chat_model(project, model, use_case)

    usage = _usage(messages, said)
    answer_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(ctx.state.clock.now())
    base = {"id": answer_id, "created": created, "model": resolved_model}
    if not stream:
        message: Dict[str, Any] = {"role": "assistant", "content": said.content}
        if said.tool_calls:
            message["tool_calls"] = said.tool_calls
        return reply(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": message, "finish_reason": said.finish_reason}
                ],
                "usage": usage,
            }
        )
    # Asked for usage, the stream is OpenAI's: every chunk says "usage": null, and one more,
    # without choices, carries the usage before [DONE]. Otherwise the final chunk carries it.
    null_usage: Dict[str, Any] = {"usage": None} if include_usage else {}
    events = []
    for delta in _deltas(said):
        chunk = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            **null_usage,
        }
        events.append(sse_event(chunk))
    final = {
        **base,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": said.finish_reason}],
        "usage": None if include_usage else usage,
    }
    events.append(sse_event(final))
    if include_usage:
        last = usage_chunk(
            usage["prompt_tokens"], usage["completion_tokens"], id=answer_id,
            model=resolved_model, created=created,
        )
        events.append(sse_event(last))
    events.append(sse_event("[DONE]"))
    answer_stream = ScriptedResponse(
        chunks=events,
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
        framing="chunked",
        times=None,
    )
    fault = ctx.stream_faults.take()
    return answer_stream if fault is None else fault.answer(answer_stream)


def _media_model(project: Project, model: Optional[str], kind: str) -> str:
    """The named model (it must exist and be allowed), or for None/``auto`` the first allowed
    model of the kind."""
    if model in (None, "", "auto"):
        return policy.auto_model(project, kind)
    return policy.check_model(project, model)


def image_generations(ctx: Context) -> ScriptedResponse:
    body = v.json_object(ctx.request)
    prompt = v.string(body, "prompt", required=True, non_empty=True)
    size = v.string(body, "size") or "1024x1024"
    if not _SIZE.fullmatch(size):
        raise v.invalid(["size"], "Size should look like 1024x1024", "string_pattern_mismatch")
    count = v.integer(body, "n", default=1, low=1, high=10)
    model = _media_model(ctx.require_project(), v.string(body, "model"), "image")
    data = []
    for _ in range(count or 1):
        image_id = uuid.uuid4().hex
        ctx.state.images.add(image_id)
        data.append(
            {"url": f"{ctx.base_url}/media/images/{image_id}.png", "revised_prompt": prompt}
        )
    created = int(ctx.state.clock.now())
    return reply({"created": created, "data": data, "model": model, "size": size})


def video_generations(ctx: Context) -> ScriptedResponse:
    body = v.json_object(ctx.request)
    prompt = v.string(body, "prompt", required=True, non_empty=True)
    model_field = v.string(body, "model")
    duration = v.number(body, "duration", low=1, high=600)
    model = _media_model(ctx.require_project(), model_field, "video")
    job_id = str(uuid.uuid4())
    job = Job(
        job_id=job_id,
        project_id=ctx.require_project().id,
        prompt=prompt or "",
        model=model,
        duration=duration,
        result_url=f"{ctx.base_url}/media/videos/{job_id}.mp4",
        created_at=ctx.state.clock.iso(),
    )
    ctx.state.jobs[job_id] = job
    return reply({"job_id": job_id, "status": job.status})


def _job(ctx: Context) -> Job:
    job = ctx.state.jobs.get(ctx.params["job_id"])
    # Another project's job is as invisible as a missing one.
    if job is None or job.project_id != ctx.require_project().id:
        raise v.not_found()
    return job


def get_media_job(ctx: Context) -> ScriptedResponse:
    job = _job(ctx)
    job.advance(ctx.job_steps)
    return reply(job.public())


def cancel_media_job(ctx: Context) -> ScriptedResponse:
    job = _job(ctx)
    if job.finished:
        raise v.ApiError(409, f"Job is already {job.status}")
    job.status = "cancelled"
    return reply(job.public())


def models(ctx: Context) -> ScriptedResponse:
    return reply([model["id"] for model in policy.visible_models(ctx.require_project())])


def models_full(ctx: Context) -> ScriptedResponse:
    return reply(policy.visible_models(ctx.require_project()))


def use_cases(ctx: Context) -> ScriptedResponse:
    detailed = ctx.request.query.get("detailed", "").lower() in ("true", "1", "yes")
    project = ctx.require_project()
    return reply([uc.summary(detailed) for uc in project.use_cases.values() if uc.is_active])


def widget_token(ctx: Context) -> ScriptedResponse:
    body = v.json_object(ctx.request)
    ttl = v.integer(body, "ttl_seconds", default=600, low=60, high=86400)
    site_domain = v.string(body, "site_domain")
    if site_domain is not None and not policy.domain_allowed(ctx.require_project(), site_domain):
        raise policy.domain_refused(policy.host_of(site_domain) or site_domain)
    return reply(
        {
            "token": "wgt_" + secrets.token_urlsafe(24),
            "expires_in": ttl,
            "site_domain": site_domain,
        }
    )
