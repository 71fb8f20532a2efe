"""The one-file build (tools/build_single_file.py): it builds, imports alone and exports the API."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Dict

import pytest

import waygpt
import waygpt.errors

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "build_single_file.py"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_single_file", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "waygpt_client.py"
    result = subprocess.run(
        [sys.executable, str(TOOL), str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def single(built: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("waygpt_client_under_test", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


# The one-file build is the sync client: no AsyncWayGPTClient (AsyncChatStream, which lives
# beside ChatStream in streaming.py, comes along, inert without the async client), and no
# batch runner (waygpt.batch: the package's, like the command line).
ASYNC_NAMES = ("AsyncWayGPTClient", "BatchInputError", "BatchSummary", "batch")


def test_public_names_match_the_package_but_the_async_client(single: ModuleType) -> None:
    expected = [name for name in waygpt.__all__ if name not in ASYNC_NAMES]
    assert list(single.__all__) == expected
    for name in expected:
        assert hasattr(single, name), name
    assert single.__version__ == waygpt.__version__
    assert not any(hasattr(single, name) for name in ASYNC_NAMES)


def test_every_error_class_is_exported(single: ModuleType) -> None:
    package_errors = {
        name
        for name, value in vars(waygpt.errors).items()
        if inspect.isclass(value) and issubclass(value, waygpt.WayGPTError)
    }
    assert package_errors <= set(single.__all__)
    for name in package_errors:
        assert issubclass(getattr(single, name), single.WayGPTError), name
    assert issubclass(single.ConfigurationError, ValueError)
    assert issubclass(single.RateLimitError, single.APIStatusError)


def test_methods_match_the_package(single: ModuleType) -> None:
    ours = {n for n in dir(waygpt.WayGPTClient) if not n.startswith("__")}
    theirs = {n for n in dir(single.WayGPTClient) if not n.startswith("__")}
    assert ours == theirs
    for name in ("__init__", "chat_completions", "client_update_project"):
        assert str(inspect.signature(getattr(single.WayGPTClient, name))) == str(
            inspect.signature(getattr(waygpt.WayGPTClient, name))
        )


def test_the_file_does_not_import_the_package(built: Path) -> None:
    tree = ast.parse(built.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import left on line {node.lineno}"
            assert (node.module or "").split(".")[0] != "waygpt", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] != "waygpt", node.lineno


def test_it_imports_with_the_package_blocked(built: Path) -> None:
    """In a fresh interpreter where ``import waygpt`` fails, the file still imports and works."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["waygpt"] = None  # any import of the package now raises ImportError
        sys.path.insert(0, sys.argv[1])
        import waygpt_client
        client = waygpt_client.WayGPTClient(api_url="http://127.0.0.1:9/", project_key="k")
        assert client.api_url == "http://127.0.0.1:9", client.api_url
        assert not [m for m in sys.modules if m.startswith("waygpt.")]
        print(waygpt_client.__version__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(built.parent)],
        cwd=built.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == waygpt.__version__


def test_header_says_generated(built: Path) -> None:
    text = built.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert "GENERATED FILE - DO NOT EDIT BY HAND" in docstring
    assert f"waygpt {waygpt.__version__}" in docstring
    assert text.count("from __future__ import annotations") == 1


def test_build_is_deterministic(built: Path) -> None:
    assert tool.build_source() == built.read_text(encoding="utf-8")


# -- the builder's safety checks, on small fake packages -------------------------------------


def _package(tmp_path: Path, files: Dict[str, str]) -> Path:
    package = tmp_path / "fakepkg"
    package.mkdir()
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return package


def test_dependency_order_and_multiline_imports(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": """
                from .b import B
                from .a import A, __version__
                __all__ = ["A", "B", "__version__"]
            """,
            "a.py": '''
                """Module a."""
                from __future__ import annotations
                import json
                __all__ = ["A"]
                __version__ = "9.9"
                class A:
                    value = json.dumps(1)
            ''',
            "b.py": """
                from __future__ import annotations
                from typing import List
                from .a import (
                    A,
                )
                class B(A):
                    items: List[int] = []
            """,
        },
    )
    text = tool.build_source(package)
    assert text.index("class A") < text.index("class B(A)")
    assert "from .a" not in text
    assert "__all__ = [\n" in text and text.count("__all__ =") == 1
    namespace: Dict[str, object] = {}
    exec(compile(text, "fake", "exec"), namespace)
    assert namespace["__all__"] == ["A", "B", "__version__"]
    assert namespace["__version__"] == "9.9"


def test_collision_fails_loudly(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": """
                from .a import A, __version__
                from .b import B
                __all__ = ["A", "B", "__version__"]
            """,
            "a.py": """
                __version__ = "1"
                def _helper(): return 1
                A = _helper()
            """,
            "b.py": """
                def _helper(): return 2
                B = _helper()
            """,
        },
    )
    with pytest.raises(tool.BuildError, match="_helper"):
        tool.build_source(package)


def test_import_collision_fails_loudly(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": """
                from .a import A, __version__
                from .b import B
                __all__ = ["A", "B", "__version__"]
            """,
            "a.py": """
                from json import loads as parse
                __version__ = "1"
                A = parse
            """,
            "b.py": """
                from ast import parse
                B = parse
            """,
        },
    )
    with pytest.raises(tool.BuildError, match="parse"):
        tool.build_source(package)


def test_aliased_relative_import_fails(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": """
                from .b import B, __version__
                __all__ = ["B", "__version__"]
            """,
            "a.py": "A = 1\n",
            "b.py": """
                from .a import A as Other
                __version__ = "1"
                B = Other
            """,
        },
    )
    with pytest.raises(tool.BuildError, match="cannot be flattened"):
        tool.build_source(package)


def test_unknown_third_party_import_fails(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": """
                from .a import A, __version__
                __all__ = ["A", "__version__"]
            """,
            "a.py": """
                import numpy_is_not_allowed_here
                __version__ = "1"
                A = numpy_is_not_allowed_here
            """,
        },
    )
    with pytest.raises(tool.BuildError, match="may only need"):
        tool.build_source(package)
