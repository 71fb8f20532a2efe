"""The CLI's media-job progress display (``waygpt video --wait``, ``waygpt job --wait``)."""

from __future__ import annotations

import io

from waygpt.cli._progress import JobProgress, format_job_line, progress_bar


def test_progress_bar() -> None:
    assert progress_bar(0, width=10) == "[----------]"
    assert progress_bar(50, width=10) == "[#####-----]"
    assert progress_bar(100, width=10) == "[##########]"
    assert progress_bar(250, width=10) == "[##########]"


def test_job_line() -> None:
    job = {"status": "processing", "progress": 40}
    assert format_job_line(job, 1.25, bar=False) == "   1.2s  processing  40%"
    assert format_job_line(job, 1.25, bar=True).endswith("[##########--------------]  40%")
    assert format_job_line({"status": "pending"}, 0, bar=True) == "   0.0s  pending"
    assert "%" not in format_job_line({"status": "pending", "progress": "n/a"}, 0, bar=True)


def test_progress_redraws_in_place_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = JobProgress(stream, tty=True)
    progress({"status": "processing", "progress": 50})
    progress({"status": "done", "progress": 100})
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.count("\n") == 1 and text.endswith("\n")
    first, second = text.split("\r")[1:]
    assert "[############------------]  50%" in first
    # The shorter second line is padded so nothing of the first one is left on screen.
    assert len(second.rstrip("\n")) == len(first)


def test_progress_prints_plain_lines_elsewhere() -> None:
    stream = io.StringIO()
    progress = JobProgress(stream)  # StringIO is not a terminal
    assert not progress.tty
    progress({"status": "processing", "progress": 50})
    progress({"status": "completed", "progress": 100})
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue() and "#" not in stream.getvalue()
    assert lines[0].endswith("processing  50%") and lines[1].endswith("completed  100%")
