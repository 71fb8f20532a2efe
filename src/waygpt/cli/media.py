"""``waygpt image``, ``waygpt video`` and ``waygpt job``: generated media and media jobs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from typing import Any, Iterator, Mapping, Optional

from .. import NotFoundError
from ._common import UsageError, format_details, int_at_least, positive_float
from ._progress import JobProgress
from ._run import Run, add_command


def register(commands: Any) -> None:
    """Add ``image``, ``video`` and ``job`` to ``commands`` (an ``add_subparsers()`` result)."""
    image = add_command(commands, "image", "generate images and print their URLs", _image)
    image.add_argument("prompt", metavar="PROMPT", help="what the images should show")
    image.add_argument("--size", default="1024x1024", metavar="WxH",
                       help="width x height in pixels (default: %(default)s)")
    image.add_argument("-n", type=int_at_least(1), default=1, metavar="N",
                       help="how many images (default: %(default)s)")
    image.add_argument("--model", help="model id (default: the server's choice)")
    image.add_argument("-o", "--output", metavar="FILE",
                       help="also write the JSON answer (with the URLs) to FILE")

    video = add_command(commands, "video",
                        "start a video job; print its id, or wait for the result", _video)
    video.add_argument("prompt", metavar="PROMPT", help="what the video should show")
    video.add_argument("--model", help="model id (default: the server's choice)")
    video.add_argument("--duration", type=int_at_least(1), metavar="SECONDS",
                       help="length of the video (default: the server's choice)")
    video.add_argument("--wait", action="store_true",
                       help="wait for the job, showing progress, and print the result URL")
    _add_wait_options(video)

    job = add_command(commands, "job", "show, wait for or cancel a media job", _job)
    job.add_argument("job_id", metavar="ID", help="the job id that waygpt video printed")
    mode = job.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true",
                      help="wait until the job finishes, showing progress")
    mode.add_argument("--cancel", action="store_true", help="cancel the job")
    _add_wait_options(job)


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-interval", type=positive_float, default=2.0, metavar="SECONDS",
                        help="with --wait: time between two polls (default: %(default)g)")
    parser.add_argument("--wait-timeout", type=positive_float, default=600.0, metavar="SECONDS",
                        help="with --wait: give up after this long (default: %(default)g)")


def _image(run: Run) -> None:
    output = run.opt("output")
    if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise UsageError(f"cannot write {output}: no such directory")
    answer = run.project_client().image_generations(
        run.opt("prompt"), model=run.opt("model"), size=run.opt("size"), n=run.opt("n")
    )
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(answer, ensure_ascii=False, indent=2) + "\n")
        run.note(f"wrote the answer to {output}")
    if run.json:
        run.print_json(answer)
        return
    data = answer.get("data")
    for index, item in enumerate(data if isinstance(data, list) else [], start=1):
        url = item.get("url") if isinstance(item, dict) else None
        run.print(url if isinstance(url, str) else f"(image {index} has no URL; see --json)")


def _video(run: Run) -> None:
    answer = run.project_client().video_generations(
        run.opt("prompt"), model=run.opt("model"), duration=run.opt("duration")
    )
    job_id = answer.get("job_id") or answer.get("id")
    if run.opt("wait") and job_id:
        _wait(run, str(job_id))
        return
    if run.json:
        run.print_json(answer)
        return
    if not job_id:
        run.print(format_details(answer))
        return
    run.print(str(job_id))
    run.note(f"video job submitted ({answer.get('status', 'pending')}); "
             f"follow it with: waygpt job {job_id} --wait")


def _job(run: Run) -> None:
    job_id = run.opt("job_id")
    client = run.project_client()
    with _job_not_found(job_id):
        if run.opt("wait"):
            _wait(run, job_id)
            return
        job = client.cancel_media_job(job_id) if run.opt("cancel") else client.get_media_job(job_id)
    if run.json:
        run.print_json(job)
        return
    if run.opt("cancel"):
        run.note(f"cancel requested for job {job_id}")
    run.print(format_details(job))


@contextlib.contextmanager
def _job_not_found(job_id: str) -> Iterator[None]:
    """A 404 for a job says which job: the server's own text is a bare "Not Found"."""
    try:
        yield
    except NotFoundError as exc:
        raise NotFoundError(f"no media job with id {job_id!r}", exc.status_code, exc.response,
                            headers=exc.headers, body=exc.body,
                            request_id=exc.request_id) from None


def _wait(run: Run, job_id: str) -> None:
    progress = JobProgress(run.err, prefix=f"job {job_id}  ")
    try:
        job = run.client.wait_for_media_job(
            job_id,
            poll_interval=run.opt("poll_interval"),
            timeout=run.opt("wait_timeout"),
            on_update=progress,
        )
    finally:
        progress.finish()
    if run.json:
        run.print_json(job)
        return
    url = _job_result_url(job)
    run.print(url if url else format_details(job))


def _job_result_url(job: Mapping[str, Any]) -> Optional[str]:
    result = job.get("result")
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, dict):
        for key in ("url", "video_url"):
            if isinstance(result.get(key), str):
                return str(result[key])
    if isinstance(result, str):
        return result
    for key in ("url", "result_url", "video_url"):
        if isinstance(job.get(key), str):
            return str(job[key])
    return None
