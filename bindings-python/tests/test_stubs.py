"""The .pyi stub describes exactly what the module exports; mypy stubtest agrees."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import video_llava as vl
from video_llava import _native

PKG = Path(__file__).resolve().parents[1] / "python" / "video_llava"


def stub_tree() -> ast.Module:
    return ast.parse((PKG / "__init__.pyi").read_text())


def stub_public_names() -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in stub_tree().body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
    return {n: v for n, v in names.items() if not n.startswith("_") or n == "__version__"}


def test_stub_names_match_module():
    stub = set(stub_public_names())
    runtime = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert stub == runtime
    assert set(vl.__all__) == runtime


def test_stub_class_members_match():
    for name, node in stub_public_names().items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(vl, name)
        if issubclass(cls, BaseException):
            continue
        members = {
            item.name
            for item in node.body
            if isinstance(item, ast.FunctionDef)
            and (not item.name.startswith("_") or item.name.startswith("__"))
        }
        runtime = {m for m in vars(cls) if not m.startswith("_")}
        assert {m for m in members if not m.startswith("_")} == runtime, name
        for dunder in (m for m in members if m.startswith("__")):
            assert hasattr(cls, dunder), f"{name}.{dunder}"


def test_stub_signatures_match():
    """Argument names, kinds and defaults of every stubbed function and method."""
    for name, node in stub_public_names().items():
        targets = []
        if isinstance(node, ast.FunctionDef):
            targets.append((getattr(vl, name), node))
        elif isinstance(node, ast.ClassDef) and not issubclass(getattr(vl, name), BaseException):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    attr = inspect.getattr_static(getattr(vl, name), item.name)
                    if isinstance(attr, (staticmethod, classmethod)) or callable(attr):
                        if not any(
                            isinstance(d, ast.Name) and d.id == "property"
                            for d in item.decorator_list
                        ):
                            targets.append((getattr(getattr(vl, name), item.name), item))
        for func, fnode in targets:
            sig = inspect.signature(func)
            params = [p for p in sig.parameters.values() if p.name != "self"]
            args = fnode.args
            stub_pos = [a.arg for a in args.posonlyargs + args.args if a.arg != "self"]
            stub_kw = [a.arg for a in args.kwonlyargs]
            got_pos = [
                p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            got_kw = [p.name for p in params if p.kind == p.KEYWORD_ONLY]
            assert got_pos == stub_pos, f"{fnode.name}: {got_pos} != {stub_pos}"
            assert got_kw == stub_kw, f"{fnode.name}: {got_kw} != {stub_kw}"
            stub_defaults = {}
            overloaded = any(
                isinstance(d, ast.Name) and d.id == "overload" for d in fnode.decorator_list
            )
            pos = [a for a in args.posonlyargs + args.args if a.arg != "self"]
            for a, d in zip(pos[len(pos) - len(args.defaults) :], args.defaults):
                stub_defaults[a.arg] = ast.literal_eval(d)
            for a, d in zip(args.kwonlyargs, args.kw_defaults):
                if d is not None:
                    stub_defaults[a.arg] = ast.literal_eval(d)
            got_defaults = {p.name: p.default for p in params if p.default is not p.empty}
            if overloaded:
                # An overload may narrow an argument (no default, a Literal); what defaults it
                # gives must be the runtime's.
                assert stub_defaults.items() <= got_defaults.items(), fnode.name
            else:
                assert got_defaults == stub_defaults, fnode.name


def test_py_typed_shipped():
    assert (Path(vl.__file__).parent / "py.typed").exists()


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_mypy_stubtest():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "video_llava", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
