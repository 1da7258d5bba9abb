"""Servers on loopback for the tests: run one in a thread for the duration of a block."""

import threading
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
