"""Does the upstream speak TLS? The relay cannot see inside TLS, so the sidecar says so at start.

TF Serving serves gRPC over TLS when started with `--ssl_config_file`; its clients then speak TLS
to the sidecar too, which relays their bytes without being able to read a call. The probe sends a
TLS ClientHello (made by Python's own TLS stack, never completed) and looks at the first bytes of
the answer: a TLS handshake record means TLS; a plaintext HTTP/2 server answers otherwise or closes.
"""

import contextlib
import socket
import ssl


def client_hello() -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def speaks_tls(host: str, port: int, timeout: float = 2.0) -> bool | None:
    """True if host:port answers a ClientHello with TLS, False if not, None if it cannot be reached."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(client_hello())
            answer = sock.recv(5)
    except TimeoutError:
        return False
    except OSError:
        return None
    return len(answer) >= 2 and answer[0] == 0x16 and answer[1] == 0x03
