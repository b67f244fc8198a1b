"""Status codes of the stand-in TF Serving, and how its REST API maps them to HTTP.

TF Serving's errors are absl status codes (the same numbers and names as gRPC's); the REST server
maps them with `ToHTTPStatusCode` (`model_servers/http_server.cc`), which this copies.
"""

import enum


class Code(enum.IntEnum):
    """Canonical status codes (tensorflow.error.Code == grpc.StatusCode numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,  # CLIENT_CLOSED_REQUEST
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class SimError(Exception):
    """A TF Serving error status: code and message, sent as a gRPC status or a REST error body."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def grpc_message(self) -> str:
        """`ToGRPCStatus`: messages over 1024 bytes are cut and marked."""
        if len(self.message) > 1024:
            return self.message[:1024] + "...TRUNCATED"
        return self.message
