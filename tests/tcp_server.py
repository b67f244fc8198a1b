"""A TCP server on 127.0.0.1 for what a test puts in a real server's place (a registry that answers
nonsense, a TLS-only upstream, a forwarder that cuts connections): the test's function handles each
connection, in the server's thread."""

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def tcp_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """Listen on a free port and pass every accepted connection to `handle`, which owns it, until the
    block ends; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # how soon the loop sees that the block has ended
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            handle(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()
