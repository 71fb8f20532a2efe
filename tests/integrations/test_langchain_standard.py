"""LangChain's standard tests (the ``langchain-tests`` package) for ``ChatWayGPT``.

The unit suite checks the class without a server; the integration suite runs every call over
real HTTP against a ``WayGPTTestServer``, whose chat model answers tool calls and structured
answers as a model would (docs/testing.md). Skipped when langchain-tests is not installed.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")
pytest.importorskip("aiohttp")  # the async half of the suite runs AsyncWayGPTClient

import io
import struct
import wave
import zlib
from types import SimpleNamespace
from typing import Any, AsyncIterator, Dict, Iterator, Tuple, Type

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from waygpt.langchain import ChatWayGPT
from waygpt.testing import WayGPTTestServer


class TestChatWayGPTUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> Type[ChatWayGPT]:
        return ChatWayGPT

    @property
    def chat_model_params(self) -> Dict[str, Any]:
        return {"model": "gpt-4o", "api_url": "http://127.0.0.1:9"}

    @property
    def init_from_env_params(self) -> Tuple[Dict[str, str], Dict[str, Any], Dict[str, Any]]:
        return (
            {"WAYGPT_PROJECT_KEY": "sk_live_from_env", "WAYGPT_HMAC_SECRET": "secret-from-env"},
            {"model": "gpt-4o"},
            {"project_key": "sk_live_from_env", "hmac_secret": "secret-from-env"},
        )

    @pytest.mark.xfail(
        reason="langchain-core's load() takes only the classes it lists, or those a caller "
        "allows: test_langchain.py loads ChatWayGPT back with allowed_objects=[ChatWayGPT]"
    )
    def test_serdes(self, model: ChatWayGPT, snapshot: Any) -> None:
        super().test_serdes(model, snapshot)


@pytest.fixture(scope="module")
def langchain_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as server:
        yield server


def _sample(url: str) -> bytes:
    """A small file of the kind the suite downloads from ``url``, made here."""
    if url.endswith(".wav"):
        out = io.BytesIO()
        with wave.open(out, "wb") as audio:
            audio.setnchannels(1)
            audio.setsampwidth(2)
            audio.setframerate(8000)
            audio.writeframes(b"\x00\x00" * 800)
        return out.getvalue()
    if url.endswith(".pdf"):
        return b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    pixel = zlib.compress(b"\x00\xff\xff\xff")
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)), (b"IDAT", pixel),
              (b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + kind + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        for kind, data in chunks
    )


@pytest.fixture
def _local_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's image, PDF and audio samples, which it downloads from the internet, made
    locally instead: tests reach only 127.0.0.1."""
    from langchain_tests.integration_tests import chat_models

    monkeypatch.setattr(
        chat_models.httpx, "get",
        lambda url, **_: SimpleNamespace(content=_sample(str(url))),
    )
    monkeypatch.setenv("LANGCHAIN_TESTS_USER_AGENT", "waygpt-python tests")


@pytest.mark.usefixtures("_local_samples")
class TestChatWayGPTIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, langchain_server: WayGPTTestServer) -> None:
        self.server = langchain_server

    @pytest.fixture(autouse=True)
    async def _closed(self, _server: None, model: ChatWayGPT) -> AsyncIterator[None]:
        """The model's connections closed after the test, in its event loop."""
        yield
        await model.aclose()

    @property
    def chat_model_class(self) -> Type[ChatWayGPT]:
        return ChatWayGPT

    @property
    def chat_model_params(self) -> Dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "api_url": self.server.url,
            "project_key": self.server.project_key,
        }

    @property
    def model_override_value(self) -> str:
        return "gpt-4o"

    # The gateway passes OpenAI's fields and content parts through to the model: these say
    # that ChatWayGPT sends them in OpenAI's shape, not what a given model makes of them.
    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_pdf_tool_message(self) -> bool:
        return True

    @property
    def supports_audio_inputs(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True
