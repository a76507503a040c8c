# Hello in the CGI style: the request body on stdin, the response on stdout.
#   kiln deploy examples/python/hello.py && curl -d Kiln http://127.0.0.1:8080/fn/default/hello
import sys

print(f"Hello, {sys.stdin.read() or 'world'}!")
