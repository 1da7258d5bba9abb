"""Servers on loopback for the tests: run one in a thread for the duration of a block, and call it."""

import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager


@contextmanager
def running(httpd):
    """Serve in a thread for the duration of a block (any server with serve_forever/shutdown/server_close)."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def call(
    url: str, body: dict | None = None, key: str | None = None, path: str = "/completions", timeout: float = 120
) -> tuple[int, dict | str, dict]:
    """(status, decoded body, headers) of one request; errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, head = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        status, raw, head = err.code, err.read(), dict(err.headers)
    try:
        return status, json.loads(raw), head
    except ValueError:
        return status, raw.decode(), head
