"""The one error the relay's readers raise: the bytes are not the protocol the reader follows.

`http1` and `http2` raise it with a short reason; the relay catches it, keeps relaying the connection
unchanged, stops counting it and logs the reason (README, "tfs-traffic sidecar": bytes it cannot parse).
"""


class ParseError(Exception):
    """The bytes are not HTTP/1.x or HTTP/2 as the relay's readers understand them."""
