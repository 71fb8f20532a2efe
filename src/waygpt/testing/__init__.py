"""A stateful local WayGPT server for testing code that talks to WayGPT.

Standard library only. Start it in a test, point your client at ``server.url``
with ``server.project_key``, then inspect ``server.requests`` or script
failures with ``server.script(...)``::

    from waygpt.testing import WayGPTTestServer

    def test_models():
        with WayGPTTestServer() as server:
            server.script(status=429, headers={"Retry-After": "0"}, times=2)
            server.script_stream_fault(after_events=1, cut="reset")
            ...

Run ``python -m waygpt.testing`` to keep one running in the foreground.
"""

from ._faults import ScriptedResponse, StreamFault, sse_event, usage_chunk
from ._records import RecordedRequest
from ._server import WayGPTTestServer

__all__ = [
    "RecordedRequest",
    "ScriptedResponse",
    "StreamFault",
    "WayGPTTestServer",
    "sse_event",
    "usage_chunk",
]
