"""Kiln's Python API for handler functions: a module-level ``handle(request)``
receives a :class:`Request` and returns a :class:`Response` (or a ``str``,
``bytes``, a ``dict``/``list`` answered as JSON, or a ``(body, status)`` pair).

    from kiln import Response

    def handle(request):
        name = request.query.get("name", "world")
        return Response.json({"hello": name})
"""

import json as _json
from urllib.parse import parse_qs


class Request:
    """One HTTP request, built from the CGI variables and the body."""

    def __init__(self, method, path, query_string, headers, body):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}

    def text(self):
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"


class Response:
    """An HTTP response: a body (str or bytes), a status and headers."""

    def __init__(self, body=b"", status=200, headers=None):
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"Response status must be an integer from 200 to 599, not {status!r}")
        self.status = status
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        if isinstance(body, str):
            body = body.encode("utf-8")
            self.headers.setdefault("content-type", "text/plain; charset=utf-8")
        self.body = bytes(body)

    @classmethod
    def json(cls, data, status=200, headers=None):
        """``data`` as a JSON response."""
        headers = dict(headers or {})
        headers.setdefault("content-type", "application/json")
        return cls(_json.dumps(data), status, headers)

    @classmethod
    def redirect(cls, location, status=302):
        return cls(b"", status, {"location": location})


def response_of(value):
    """What a handler returned, as a Response."""
    if isinstance(value, Response):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        body, status = value
        inner = response_of(body)
        return Response(inner.body, status, inner.headers)
    if isinstance(value, (str, bytes, bytearray)):
        return Response(value)
    if isinstance(value, (dict, list)):
        return Response.json(value)
    if value is None:
        return Response(b"", 204)
    raise TypeError(f"handle() returned {type(value).__name__}; return a Response, str, bytes, dict or list")
