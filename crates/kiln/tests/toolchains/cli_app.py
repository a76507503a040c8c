"""A wasi:cli/command component built by componentize-py: reads stdin,
prints an answer (the test checks Kiln serves it as is)."""

import sys
from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        body = sys.stdin.read()
        print(f"Hello, {body or 'world'}! (componentize-py command)")
