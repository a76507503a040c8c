"""Kiln's Python runtime: CPython (componentize-py's build) as a WASI command
component that Kiln initializes once, at deploy, and snapshots.

- ``init`` (run by the server at deploy, with the user's code mounted at /app and
  ``KILN_ENTRY`` naming the entry file) parses the code. A module that defines
  ``handle`` is a *handler*: it is imported now, and ``handle(request)`` serves
  every request. Any other module is a *script* (the CGI style): it is compiled
  now and runs once per request with the body on stdin. It answers ``handler``
  or ``script``, or an error with the traceback, and the deploy fails with it.
  It touches no WASI descriptor meanwhile, since one opened before the snapshot
  would be dangling in every request: what the code prints is kept, not
  written, and modules are read through ``kiln:runtime/loader`` (the host reads
  /app and /python for it) instead of the filesystem. The server then
  snapshots the instance.
- ``run`` (``wasi:cli/run``, once per request, in a fresh instance of the
  snapshot) finds everything loaded.
"""

import ast
import builtins
import importlib.abc
import importlib.machinery
import io
import os
import random
import sys
import traceback
import types

import kiln
import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, loader

# Modules most functions use, imported while the runtime is built so that they
# are in every snapshot; anything else of the standard library is imported from
# /python at deploy or at run time.
import base64, collections, dataclasses, datetime, decimal, enum, functools  # noqa: E401,F401
import hashlib, html, itertools, json, math, re, string, textwrap, time  # noqa: E401,F401
import typing, urllib.parse, uuid  # noqa: E401,F401

_handler = None
_code = None
_entry = None


def _refresh_environ():
    """The environment of this call: os.environ was filled when the interpreter
    started, which was when the runtime was built."""
    os.environ.clear()
    os.environ.update(dict(environment.get_environment()))


def _defines_handle(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handle":
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "handle" for t in node.targets
        ):
            return True
        if isinstance(node, ast.ImportFrom) and any(
            (a.asname or a.name) == "handle" for a in node.names
        ):
            return True
    return False


class _SourceLoader(importlib.abc.Loader):
    """A Python module whose source was read through the loader interface."""

    def __init__(self, path, source):
        self.path = path
        self.source = source

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = self.path
        exec(compile(self.source, self.path, "exec"), module.__dict__)

    def get_source(self, name):
        return self.source.decode("utf-8", errors="replace")


class _DeployFinder:
    """Finds modules under ``roots`` through ``kiln:runtime/loader``: the import
    system while the code is loaded at deploy, when the filesystem is off limits."""

    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, name, path=None, target=None):
        leaf = name.rpartition(".")[2]
        for base in path if path is not None else self.roots:
            stem = f"{base}/{leaf}"
            source = loader.read_file(f"{stem}/__init__.py")
            if source is not None:
                spec = importlib.machinery.ModuleSpec(
                    name, _SourceLoader(f"{stem}/__init__.py", source),
                    origin=f"{stem}/__init__.py", is_package=True,
                )
                spec.submodule_search_locations = [stem]
                spec.has_location = True
                return spec
            source = loader.read_file(f"{stem}.py")
            if source is not None:
                spec = importlib.machinery.ModuleSpec(
                    name, _SourceLoader(f"{stem}.py", source), origin=f"{stem}.py"
                )
                spec.has_location = True
                return spec
        return None


def _fail(status=1):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class WitWorld(wit_world.WitWorld):
    def init(self) -> str:
        global _handler, _code, _entry
        _refresh_environ()
        _entry = os.environ.get("KILN_ENTRY", "")
        real = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(), io.StringIO(), io.StringIO()
        app = os.path.dirname(_entry)
        stdlib = [p for p in sys.path if p.startswith("/python/lib/python3") and p.count("/") == 3]
        finders = sys.meta_path
        sys.meta_path = [
            importlib.machinery.BuiltinImporter,
            importlib.machinery.FrozenImporter,
            _DeployFinder([app, *stdlib]),
        ]
        try:
            source = loader.read_file(_entry)
            if source is None:
                raise FileNotFoundError(f"no file {_entry}")
            tree = ast.parse(source, filename=_entry)
            code = compile(tree, _entry, "exec")
            sys.path.insert(0, app)
            if _defines_handle(tree):
                name = os.path.splitext(os.path.basename(_entry))[0]
                module = types.ModuleType(name)
                module.__file__ = _entry
                sys.modules[name] = module
                exec(code, module.__dict__)
                if not callable(getattr(module, "handle", None)):
                    raise TypeError(f"{_entry}: handle is not a function")
                _handler = module.handle
                return "handler"
            _code = code
            return "script"
        except BaseException:
            raise Err(traceback.format_exc())
        finally:
            sys.stdin, sys.stdout, sys.stderr = real
            sys.meta_path = finders
            # Imports in requests go through the filesystem, opened afresh there.
            sys.path_importer_cache.clear()


def _request():
    env = os.environ
    method = env.get("REQUEST_METHOD", "GET")
    headers = {
        name[5:].replace("_", "-").lower(): value
        for name, value in env.items()
        if name.startswith("HTTP_")
    }
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if env.get(name):
            headers[name.replace("_", "-").lower()] = env[name]
    body = sys.stdin.buffer.read()
    path = env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")
    return kiln.Request(method, path or "/", env.get("QUERY_STRING", ""), headers, body)


def _serve():
    out = sys.stdout.buffer
    try:
        response = kiln.response_of(_handler(_request()))
    except Exception as error:
        # The traceback goes to the function's log; the client gets one line.
        traceback.print_exc()
        line = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
        out.write(b"Status: 500\r\nContent-Type: text/plain\r\n\r\n" + line.encode() + b"\n")
        return
    head = f"Status: {response.status}\r\n"
    for name, value in response.headers.items():
        if "\r" in value or "\n" in value:
            print(f"kiln: header {name} dropped: its value has a line break", file=sys.stderr)
            continue
        head += f"{name}: {value}\r\n"
    out.write(head.encode() + b"\r\n" + response.body)


class Run(exports.Run):
    def run(self) -> None:
        _refresh_environ()
        # The snapshot's PRNG state would repeat in every request.
        random.seed()
        try:
            if _handler is not None:
                _serve()
            elif _code is not None:
                exec(_code, {"__name__": "__main__", "__file__": _entry, "__builtins__": builtins})
            else:
                print("kiln: this runtime was not initialized", file=sys.stderr)
                _fail()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            if exit.code is not None and not isinstance(exit.code, int):
                print(exit.code, file=sys.stderr)
            _fail(code)
        except BaseException:
            traceback.print_exc()
            _fail()
        sys.stdout.flush()
        sys.stderr.flush()
