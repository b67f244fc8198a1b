"""What TF Serving's HTTP layer (`util/net_http/server/internal/evhttp_*`, libevent 2.1.12) does
before and around the REST handler, where a client can tell.

- `ParsedEvRequest::decode` parses the request target with libevent's strict `evhttp_uri_parse`;
  a target it refuses gets libevent's own 400 page (`EvHTTPServer::DispatchEvRequest`).
- `EvHTTPRequest::uri_path()` is the path *with* `?query` (and `#fragment`): the REST dispatcher
  and the handler's regexes see the query string; exact handlers (the Prometheus page) are looked
  up by the path alone.
- Requests nobody takes get libevent's 404 page (`evhttp_send_error`): `Content-Type: text/html`,
  `Connection: close`, and the connection closes after it.
- A reply with no `Content-Type` gets libevent's default `text/html; charset=ISO-8859-1`
  (`evhttp_make_header_response`); libevent sends no `Server` header.

Judged harmless: targets that are not origin-form (`*`, `http://host/...`, `//...`) are treated as
plain paths (clients of TF Serving send origin-form), and request lines aiohttp's own parser refuses
get aiohttp's 400 instead of libevent's.
"""

import re

from aiohttp import web

DEFAULT_CONTENT_TYPE = "text/html; charset=ISO-8859-1"

_PHRASES = {400: "Bad Request", 404: "Not Found"}
# pchar of RFC 3986 as libevent's end_of_path checks it: unreserved, sub-delims, ':' '@' '/', %XX
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})"
_TARGET = re.compile(rf"{_PCHAR}*(?:\?(?:{_PCHAR}|\?)*)?(?:#(?:{_PCHAR}|\?)*)?")


def uri_ok(target: str) -> bool:
    """Would `evhttp_uri_parse` (flags 0) accept this origin-form request target?"""
    return _TARGET.fullmatch(target) is not None and not target.startswith("//")


def path_of(target: str) -> str:
    """`evhttp_uri_get_path`: the target up to its query or fragment."""
    return re.split(r"[?#]", target, maxsplit=1)[0]


def error_page(status: int) -> web.Response:
    """`evhttp_send_error(req, status, NULL)`: libevent's HTML page; the connection then closes."""
    phrase = _PHRASES[status]
    body = f"<HTML><HEAD>\n<TITLE>{status} {phrase}</TITLE>\n</HEAD><BODY>\n<H1>{phrase}</H1>\n</BODY></HTML>\n"
    response = web.Response(
        status=status, body=body.encode(), headers={"Content-Type": "text/html", "Connection": "close"}
    )
    response.force_close()
    return response


async def drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook: libevent sends no `Server` header, aiohttp adds one."""
    response.headers.popall("Server", None)
