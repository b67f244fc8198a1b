"""Protobuf's C++ text-format parser, for the files `tensorflow_model_server` reads at startup.

TF Serving reads `--model_config_file` (and the monitoring and SSL configs) with
`ParseProtoTextFile` (`util/proto_util.h`): `TextFormat::ParseFromString`, C++ protobuf's
`TextFormat::Parser` with its defaults. Its verdicts and its messages differ from Python's
`text_format` in ways a user sees (positions, wording, which inputs pass: `"\\q"`, a repeated
singular field, a non-ASCII byte outside a string), so the stand-in parses the same way:
`io::Tokenizer` (`src/google/protobuf/io/tokenizer.cc`) and `TextFormat::Parser::ParserImpl`
(`src/google/protobuf/text_format.cc`), rule for rule:

- the tokenizer reports its errors as it reads ahead and the parse goes on; the parser stops at
  its first error; the file is refused if anything was reported. Each error is one log line,
  `Error parsing text-format TYPE: LINE:COLUMN: MESSAGE` (1-based; a tab moves the column to the
  next multiple of 8, columns count bytes), at the *current* token (for an unknown field name,
  the token after the name);
- singular fields and oneofs may be set once (`FORBID_SINGULAR_OVERWRITES`); a proto3 scalar
  counts as set only when it is not the default; `model_type` (deprecated) logs a warning;
- integers: decimal, `0x` hex, `0` octal, range-checked per type; floats and `inf`/`nan`; enums
  by name or number (an unknown number is kept in an open enum); bools `true`/`t`/`True`, `1`...;
- `google.protobuf.Any` in its expanded form `[type.googleapis.com/T] { ... }`.

Judged harmless: a string field whose bytes are not UTF-8 is refused here (C++ accepts it and
complains only when the message is serialized, which TF Serving never does with its config);
Python messages cannot hold such a string. `tests/sim/test_sim_textformat.py` compares every rule
with protoc's own parser (`grpc_tools.protoc --encode`).
"""

import math
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

_WHITESPACE = frozenset(b" \t\n\v\f\r")
_LETTER = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGIT = frozenset(b"0123456789")
_ALNUM = _LETTER | _DIGIT
_OCTAL = frozenset(b"01234567")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPE = frozenset(b"abfnrtv\\?'\"")
_UNPRINTABLE = frozenset(range(1, 32))
_URL_CHAR = _ALNUM | frozenset(b"-.~!$&()*+,;=%/")
_TAB_WIDTH = 8

START, END, IDENTIFIER, INTEGER, FLOAT, STRING, SYMBOL, WHITESPACE, URL_CHARS = range(9)

_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_RECURSION_LIMIT = 100  # TextFormat::Parser's default recursion limit

_TRANSLATE = {
    ord("a"): 7,
    ord("b"): 8,
    ord("f"): 12,
    ord("n"): 10,
    ord("r"): 13,
    ord("t"): 9,
    ord("v"): 11,
    ord("\\"): 92,
    ord("?"): 63,
    ord("'"): 39,
    ord('"'): 34,
}


def _text(data: bytes) -> str:
    """Token bytes as the str that log lines carry (bytes that are not UTF-8 kept as escapes)."""
    return data.decode("utf-8", "surrogateescape")


@dataclass
class Token:
    type: int
    text: bytes
    line: int
    column: int
    end_column: int


class Tokenizer:
    """`io::Tokenizer` with the settings `ParserImpl` gives it (`#` comments, `f` after floats)."""

    def __init__(self, data: bytes, report: Any) -> None:
        self._data = data
        self._pos = 0
        self._line = 0
        self._column = 0
        self._report = report  # report(line, column, message): the parser's error collector
        self._start = 0
        self.report_whitespace = False
        self.report_url_chars = False
        self.current = Token(START, b"", 0, 0, 0)
        self.previous = self.current

    @property
    def _char(self) -> int:
        return self._data[self._pos] if self._pos < len(self._data) else 0

    @property
    def _eof(self) -> bool:
        return self._pos >= len(self._data)

    def _next_char(self) -> None:
        char = self._char
        if char == 10:
            self._line += 1
            self._column = 0
        elif char == 9:
            self._column += _TAB_WIDTH - self._column % _TAB_WIDTH
        else:
            self._column += 1
        self._pos += 1

    def _error(self, message: str) -> None:
        self._report(self._line, self._column, message)

    def _try_one(self, chars: frozenset[int]) -> bool:
        if not self._eof and self._char in chars:
            self._next_char()
            return True
        return False

    def _try(self, char: bytes) -> bool:
        if not self._eof and self._char == char[0]:
            self._next_char()
            return True
        return False

    def _zero_or_more(self, chars: frozenset[int]) -> None:
        while not self._eof and self._char in chars:
            self._next_char()

    def _one_or_more(self, chars: frozenset[int], error: str) -> None:
        if self._eof or self._char not in chars:
            self._error(error)
        else:
            self._zero_or_more(chars)

    def _looking_at(self, chars: frozenset[int]) -> bool:
        return not self._eof and self._char in chars

    def _start_token(self) -> None:
        self.current = Token(START, b"", self._line, self._column, self._column)
        self._start = self._pos

    def _end_token(self) -> None:
        self.current.text = self._data[self._start : self._pos]
        self.current.end_column = self._column

    def _consume_string(self, delimiter: int) -> None:
        while True:
            char = self._char
            if char == 0:  # the end of the input, or a NUL byte
                self._error("Unexpected end of string.")
                return
            if char == 10:
                self._error('Multiline strings are not allowed. Did you miss a "?.')
                return
            if char == 92:  # backslash
                self._next_char()
                if self._try_one(_ESCAPE) or self._try_one(_OCTAL):
                    pass
                elif self._try(b"x") or self._try(b"X"):
                    if not self._try_one(_HEX):
                        self._error("Expected hex digits for escape sequence.")
                elif self._try(b"u"):
                    if not all(self._try_one(_HEX) for _ in range(4)):
                        self._error("Expected four hex digits for \\u escape sequence.")
                elif self._try(b"U"):
                    ok = (
                        self._try(b"0")
                        and self._try(b"0")
                        and (self._try(b"0") or self._try(b"1"))
                        and all(self._try_one(_HEX) for _ in range(5))
                    )
                    if not ok:
                        self._error("Expected eight hex digits up to 10ffff for \\U escape sequence")
                else:
                    self._error("Invalid escape sequence in string literal.")
                continue
            self._next_char()
            if char == delimiter:
                return

    def _consume_number(self, started_with_zero: bool, started_with_dot: bool) -> int:
        is_float = False
        if started_with_zero and (self._try(b"x") or self._try(b"X")):
            self._one_or_more(_HEX, '"0x" must be followed by hex digits.')
        elif started_with_zero and self._looking_at(_DIGIT):
            self._zero_or_more(_OCTAL)
            if self._looking_at(_DIGIT):
                self._error("Numbers starting with leading zero must be in octal.")
                self._zero_or_more(_DIGIT)
        else:
            if started_with_dot:
                is_float = True
                self._zero_or_more(_DIGIT)
            else:
                self._zero_or_more(_DIGIT)
                if self._try(b"."):
                    is_float = True
                    self._zero_or_more(_DIGIT)
            if self._try(b"e") or self._try(b"E"):
                is_float = True
                _ = self._try(b"-") or self._try(b"+")
                self._one_or_more(_DIGIT, '"e" must be followed by exponent.')
            if self._try(b"f") or self._try(b"F"):
                is_float = True
        if self._looking_at(_LETTER):
            self._error("Need space between number and identifier.")
        elif not self._eof and self._char == ord("."):
            if is_float:
                self._error("Already saw decimal point or exponent; can't have another one.")
            else:
                self._error("Hex and octal numbers must be integers.")
        return FLOAT if is_float else INTEGER

    def next(self) -> bool:
        """`Tokenizer::Next`: the next token into `current` (END at the end of the input)."""
        self.previous = self.current
        while not self._eof:
            self._start_token()
            if self._try_one(_WHITESPACE):
                self._zero_or_more(_WHITESPACE)
                self.current.type = WHITESPACE
                self._end_token()
                if self.report_whitespace:
                    return True
                continue
            self._end_token()
            if self._try(b"#"):
                while self._char not in (0, 10):  # a NUL byte ends a comment too
                    self._next_char()
                self._try(b"\n")
                continue
            if self._eof:
                break
            char = self._char
            if char in _UNPRINTABLE or char == 0:
                self._error("Invalid control characters encountered in text.")
                self._next_char()
                while not self._eof and (self._char in _UNPRINTABLE or self._char == 0):
                    self._next_char()
                continue
            self._start_token()
            if self.report_url_chars:
                if self._try_one(_URL_CHAR):
                    self._zero_or_more(_URL_CHAR)
                    self.current.type = URL_CHARS
                else:
                    self._consume_symbol()
            elif self._try_one(_LETTER):
                self._zero_or_more(_ALNUM)
                self.current.type = IDENTIFIER
            elif self._try(b"0"):
                self.current.type = self._consume_number(True, False)
            elif self._try(b"."):
                if self._try_one(_DIGIT):
                    prev = self.previous
                    if (
                        prev.type == IDENTIFIER
                        and self.current.line == prev.line
                        and self.current.column == prev.end_column
                    ):
                        self._report(self._line, self._column - 2, "Need space between identifier and decimal point.")
                    self.current.type = self._consume_number(False, True)
                else:
                    self.current.type = SYMBOL
            elif self._try_one(_DIGIT):
                self.current.type = self._consume_number(False, False)
            elif self._try(b'"'):
                self._consume_string(ord('"'))
                self.current.type = STRING
            elif self._try(b"'"):
                self._consume_string(ord("'"))
                self.current.type = STRING
            else:
                self._consume_symbol()
            self._end_token()
            return True
        self.current = Token(END, b"", self._line, self._column, self._column)
        return False

    def _consume_symbol(self) -> None:
        if self._char & 0x80:
            self._report(self._line, self._column, f"Interpreting non ascii codepoint {self._char}.")
        self._next_char()
        self.current.type = SYMBOL


def parse_integer(text: bytes, max_value: int) -> int | None:
    """`Tokenizer::ParseInteger`: decimal, `0x` hex or `0` octal, at most max_value."""
    base = 10
    digits = text
    if text[:1] == b"0":
        if text[1:2] in (b"x", b"X"):
            base, digits = 16, text[2:]
        else:
            base = 8
    try:
        value = int(digits.decode("ascii"), base) if digits else 0
    except ValueError:
        return None
    return value if value <= max_value else None


def parse_string(text: bytes) -> bytes:
    """`Tokenizer::ParseStringAppend`: one quoted token's bytes, escapes translated."""
    out = bytearray()
    i, n = 1, len(text)
    quote = text[0]
    while i < n:
        char = text[i]
        if char == 92 and i + 1 < n:
            i += 1
            char = text[i]
            if char in _OCTAL:
                code = char - 48
                for _ in range(2):
                    if i + 1 < n and text[i + 1] in _OCTAL:
                        i += 1
                        code = code * 8 + text[i] - 48
                out.append(code & 0xFF)
            elif char in b"xX":
                code = 0
                for _ in range(2):
                    if i + 1 < n and text[i + 1] in _HEX:
                        i += 1
                        code = code * 16 + int(chr(text[i]), 16)
                out.append(code)
            elif char in b"uU":
                end, code_point = _unicode_point(text, i)
                if end == i:
                    out.append(char)
                else:
                    out += _utf8(code_point)
                    i = end - 1
            else:
                out.append(_TRANSLATE.get(char, 63))
        elif char == quote and i + 1 == n:
            pass
        else:
            out.append(char)
        i += 1
    return bytes(out)


def _hex_digits(text: bytes, start: int, count: int) -> int | None:
    chunk = text[start : start + count]
    if len(chunk) < count or any(c not in _HEX for c in chunk):
        return None
    return int(chunk, 16)


def _unicode_point(text: bytes, i: int) -> tuple[int, int]:
    """`FetchUnicodePoint`: (index after the escape, code point), or (i, 0) on failure."""
    length = 4 if text[i] == ord("u") else 8
    code_point = _hex_digits(text, i + 1, length)
    if code_point is None:
        return i, 0
    end = i + 1 + length
    if 0xD800 <= code_point < 0xDC00 and text[end : end + 2] == b"\\u":
        trail = _hex_digits(text, end + 2, 4)
        if trail is not None and 0xDC00 <= trail < 0xE000:
            code_point = 0x10000 + (((code_point - 0xD800) << 10) | (trail - 0xDC00))
            end += 6
    return end, code_point


def _utf8(code_point: int) -> bytes:
    if code_point > 0x10FFFF:
        return f"\\U{code_point:08x}".encode()
    return chr(code_point).encode("utf-8", "surrogatepass")


def _is_identifier(text: str) -> bool:
    return bool(text) and ord(text[0]) in _LETTER and all(ord(c) in _ALNUM for c in text[1:])


class _Stop(Exception):
    """The parser gave up (`DO(...)` returned false)."""


_reserved_names: dict[str, frozenset[str]] = {}


def _reserved(descriptor: Descriptor) -> frozenset[str]:
    names = _reserved_names.get(descriptor.full_name)
    if names is None:
        proto = descriptor_pb2.DescriptorProto()
        descriptor.CopyToProto(proto)
        names = _reserved_names[descriptor.full_name] = frozenset(proto.reserved_name)
    return names


def _is_set(message: Any, field: FieldDescriptor) -> bool:
    """C++ `Reflection::HasField`: a proto3 scalar without presence is set when it is not the default."""
    if field.type == FieldDescriptor.TYPE_MESSAGE or field.has_presence:
        return bool(message.HasField(field.name))
    return bool(getattr(message, field.name) != field.default_value)


_warnings_logged = 0  # ABSL_LOG_EVERY_POW_2 counts per call site, for the process


class Parser:
    """`TextFormat::Parser::ParserImpl` over one input, filling a Python message."""

    def __init__(self, data: bytes, root: Descriptor) -> None:
        self.root = root
        self.errors: list[str] = []  # "LINE:COLUMN: message" (1-based)
        self.warnings: list[str] = []
        self.tokenizer = Tokenizer(data, self._report_error)
        self.recursion = _RECURSION_LIMIT
        self.tokenizer.next()

    # --- reporting ---

    def _report_error(self, line: int, column: int, message: str) -> None:
        self.errors.append(f"{line + 1}:{column + 1}: {message}" if line >= 0 else message)

    def _error(self, message: str) -> _Stop:
        token = self.tokenizer.current
        self._report_error(token.line, token.column, message)
        return _Stop()

    def _warning(self, message: str) -> None:
        global _warnings_logged
        _warnings_logged += 1
        if _warnings_logged & (_warnings_logged - 1) == 0:
            token = self.tokenizer.current
            self.warnings.append(f"{token.line + 1}:{token.column + 1} (N = {_warnings_logged}): {message}")

    # --- token helpers ---

    def _looking_at(self, text: str) -> bool:
        return self.tokenizer.current.text == text.encode()

    def _looking_at_type(self, kind: int) -> bool:
        return self.tokenizer.current.type == kind

    def _consume(self, text: str) -> None:
        current = self.tokenizer.current.text
        if current != text.encode():
            raise self._error(f'Expected "{text}", found "{_text(current)}".')
        self.tokenizer.next()

    def _try_consume(self, text: str) -> bool:
        if self.tokenizer.current.text == text.encode():
            self.tokenizer.next()
            return True
        return False

    def _before_whitespace(self, step: Any) -> Any:
        self.tokenizer.report_whitespace = True
        try:
            return step()
        finally:
            self.tokenizer.report_whitespace = False

    def _try_consume_whitespace(self) -> None:
        if self._looking_at_type(WHITESPACE):
            self.tokenizer.next()

    def _consume_identifier(self) -> str:
        if self._looking_at_type(IDENTIFIER):
            text = _text(self.tokenizer.current.text)
            self.tokenizer.next()
            return text
        raise self._error(f"Expected identifier, got: {_text(self.tokenizer.current.text)}")

    def _consume_string(self) -> bytes:
        if not self._looking_at_type(STRING):
            raise self._error(f"Expected string, got: {_text(self.tokenizer.current.text)}")
        out = b""
        while self._looking_at_type(STRING):
            out += parse_string(self.tokenizer.current.text)
            self.tokenizer.next()
        return out

    def _consume_unsigned(self, max_value: int) -> int:
        if not self._looking_at_type(INTEGER):
            raise self._error(f"Expected integer, got: {_text(self.tokenizer.current.text)}")
        value = parse_integer(self.tokenizer.current.text, max_value)
        if value is None:
            raise self._error(f"Integer out of range ({_text(self.tokenizer.current.text)})")
        self.tokenizer.next()
        return value

    def _consume_signed(self, max_value: int) -> int:
        negative = self._try_consume("-")
        value = self._consume_unsigned(max_value + 1 if negative else max_value)
        return -value if negative else value

    def _consume_double(self) -> float:
        negative = self._try_consume("-")
        token = self.tokenizer.current
        if token.type == INTEGER:
            if len(token.text) >= 2 and token.text[0:1] == b"0" and (token.text[1:2] in b"xX01234567"):
                raise self._error(f"Expect a decimal number, got: {_text(token.text)}")
            as_int = parse_integer(token.text, _UINT64_MAX)
            value = float(as_int) if as_int is not None else float(token.text)
            self.tokenizer.next()
        elif token.type == FLOAT:
            value = _parse_float(token.text)
            self.tokenizer.next()
        elif token.type == IDENTIFIER:
            text = _text(token.text).lower()
            if text in ("inf", "infinity"):
                value = math.inf
            elif text == "nan":
                value = math.nan
            else:
                raise self._error(f"Expected double, got: {text}")
            self.tokenizer.next()
        else:
            raise self._error(f"Expected double, got: {_text(token.text)}")
        return -value if negative else value

    # --- messages ---

    def parse(self, message: Any) -> bool:
        try:
            while not self._looking_at_type(END):
                self._consume_field(message)
        except _Stop:
            return False
        return not self.errors

    def _consume_message(self, message: Any, delimiter: str) -> None:
        self.recursion -= 1
        try:
            if self.recursion < 0:
                raise self._error(
                    f"Message is too deep, the parser exceeded the configured recursion limit of {_RECURSION_LIMIT}."
                )
            while not self._looking_at(">") and not self._looking_at("}"):
                self._consume_field(message)
            self._consume(delimiter)
        finally:
            self.recursion += 1

    def _consume_delimiter(self) -> str:
        if self._try_consume("<"):
            return ">"
        self._consume("{")
        return "}"

    def _consume_type_url(self) -> tuple[str, str]:
        """`ConsumeAnyTypeUrlOrFullTypeName`: (full type name, URL prefix)."""
        self.tokenizer.report_url_chars = True
        self._consume("[")
        text = ""
        while self._looking_at_type(URL_CHARS):
            text += _text(self.tokenizer.current.text)
            self.tokenizer.next()
        self.tokenizer.report_url_chars = False
        self._before_whitespace(lambda: self._consume("]"))
        slash = text.rfind("/")
        prefix, name = ("", text) if slash < 0 else (text[: slash + 1], text[slash + 1 :])
        if slash >= 0:
            if prefix == "/":
                raise self._error("Type URL prefix is empty")
            if prefix.startswith("/"):
                raise self._error('Type URL starts with "/"')
            for i, char in enumerate(prefix):
                hex_digits = "0123456789abcdefABCDEF"
                if char == "%" and (
                    i + 2 >= len(prefix) or prefix[i + 1] not in hex_digits or prefix[i + 2] not in hex_digits
                ):
                    raise self._error(f'Invalid percent encode, got: "{prefix[i : i + 3]}"')
        for identifier in name.split("."):
            if not _is_identifier(identifier):
                raise self._error(f'Invalid identifier in type name, got: "{identifier}"')
        return name, prefix

    def _consume_any(self, message: Any) -> None:
        name, prefix = self._consume_type_url()
        if not prefix:
            raise self._error("Type URL prefix is missing")
        self._try_consume_whitespace()
        if self._before_whitespace(lambda: self._try_consume(":")):
            self._try_consume_whitespace()
        try:
            value_descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
        except KeyError:
            raise self._error(f'Could not find type "{prefix}{name}" stored in google.protobuf.Any.') from None
        value = message_factory.GetMessageClass(value_descriptor)()
        delimiter = self._consume_delimiter()
        self._consume_message(value, delimiter)
        if message.type_url or message.value:
            raise self._error("Non-repeated Any specified multiple times.")
        message.type_url = prefix + name
        message.value = value.SerializeToString()
        self._end_of_field()

    def _end_of_field(self) -> None:
        """Fields may be followed by `;` or `,`."""
        _ = self._try_consume(";") or self._try_consume(",")

    def _consume_field(self, message: Any) -> None:
        descriptor = message.DESCRIPTOR
        if descriptor.full_name == "google.protobuf.Any" and self._looking_at("["):
            self._consume_any(message)
            return
        field: FieldDescriptor | None = None
        reserved = False
        if self._looking_at("["):
            name, prefix = self._consume_type_url()
            if prefix:
                raise self._error('Extension name contains "/"')
            self._try_consume_whitespace()
            raise self._error(f'Extension "{name}" is not defined or is not an extension of "{descriptor.full_name}".')
        name = self._before_whitespace(self._consume_identifier)
        self._try_consume_whitespace()
        field = descriptor.fields_by_name.get(name)
        if field is None:
            reserved = name in _reserved(descriptor)
            if not reserved:
                raise self._error(f'Message type "{descriptor.full_name}" has no field named "{name}".')
            if self._before_whitespace(lambda: self._try_consume(":")):
                self._try_consume_whitespace()
                if not self._looking_at("{") and not self._looking_at("<"):
                    self._skip_value()
                    self._end_of_field()
                    return
            self._skip_message()
            self._end_of_field()
            return
        if field.GetOptions().deprecated:
            self._warning(f'text format contains deprecated field "{name}"')
        repeated = field.is_repeated
        if not repeated and _is_set(message, field):
            raise self._error(f'Non-repeated field "{name}" is specified multiple times.')
        oneof = field.containing_oneof
        if oneof is not None:
            other = message.WhichOneof(oneof.name)
            if other is not None:
                raise self._error(
                    f'Field "{name}" is specified along with field "{other}", another member of oneof "{oneof.name}".'
                )
        is_message = field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)
        if is_message:
            if self._before_whitespace(lambda: self._try_consume(":")):
                self._try_consume_whitespace()
        else:
            self._before_whitespace(lambda: self._consume(":"))
            self._try_consume_whitespace()
        if repeated and self._try_consume("["):
            if not self._try_consume("]"):
                while True:
                    if is_message:
                        self._consume_field_message(message, field)
                    else:
                        self._consume_field_value(message, field)
                    if self._try_consume("]"):
                        break
                    self._consume(",")
        elif is_message:
            self._consume_field_message(message, field)
        else:
            self._consume_field_value(message, field)
        self._end_of_field()

    def _consume_field_message(self, message: Any, field: FieldDescriptor) -> None:
        delimiter = self._consume_delimiter()
        container = getattr(message, field.name)
        if field.message_type.GetOptions().map_entry:
            entry = message_factory.GetMessageClass(field.message_type)()
            self._consume_message(entry, delimiter)
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                container[entry.key].CopyFrom(entry.value)
            else:
                container[entry.key] = entry.value
            return
        if field.is_repeated:
            self._consume_message(container.add(), delimiter)
        else:
            container.SetInParent()
            self._consume_message(container, delimiter)

    def _set(self, message: Any, field: FieldDescriptor, value: Any) -> None:
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)

    def _consume_field_value(self, message: Any, field: FieldDescriptor) -> None:
        kind = field.cpp_type
        if kind == FieldDescriptor.CPPTYPE_INT32:
            self._set(message, field, self._consume_signed(_INT32_MAX))
        elif kind == FieldDescriptor.CPPTYPE_UINT32:
            self._set(message, field, self._consume_unsigned(_UINT32_MAX))
        elif kind == FieldDescriptor.CPPTYPE_INT64:
            self._set(message, field, self._consume_signed(_INT64_MAX))
        elif kind == FieldDescriptor.CPPTYPE_UINT64:
            self._set(message, field, self._consume_unsigned(_UINT64_MAX))
        elif kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
            self._set(message, field, self._consume_double())
        elif kind == FieldDescriptor.CPPTYPE_STRING:
            start = self.tokenizer.current
            raw = self._consume_string()
            if field.type == FieldDescriptor.TYPE_BYTES:
                self._set(message, field, raw)
            else:
                try:
                    self._set(message, field, raw.decode("utf-8"))
                except UnicodeDecodeError:
                    message = f'String field "{field.name}" is not UTF-8 (the stand-in cannot hold it).'
                    self._report_error(start.line, start.column, message)
                    raise _Stop() from None
        elif kind == FieldDescriptor.CPPTYPE_BOOL:
            if self._looking_at_type(INTEGER):
                self._set(message, field, bool(self._consume_unsigned(1)))
            else:
                value = self._consume_identifier()
                if value in ("true", "True", "t"):
                    self._set(message, field, True)
                elif value in ("false", "False", "f"):
                    self._set(message, field, False)
                else:
                    raise self._error(f'Invalid value for boolean field "{field.name}". Value: "{value}".')
        elif kind == FieldDescriptor.CPPTYPE_ENUM:
            self._consume_enum(message, field)

    def _consume_enum(self, message: Any, field: FieldDescriptor) -> None:
        enum_type = field.enum_type
        number: int | None = None
        if self._looking_at_type(IDENTIFIER):
            value = self._consume_identifier()
            found = enum_type.values_by_name.get(value)
        elif self._looking_at("-") or self._looking_at_type(INTEGER):
            number = self._consume_signed(_INT32_MAX)
            value = str(number)
            found = enum_type.values_by_number.get(number)
        else:
            raise self._error(f"Expected integer or identifier, got: {_text(self.tokenizer.current.text)}")
        if found is None:
            if number is not None and not enum_type.is_closed:
                self._set(message, field, number)
                return
            raise self._error(f'Unknown enumeration value of "{value}" for field "{field.name}".')
        self._set(message, field, found.number)

    # --- skipping reserved fields ---

    def _skip_message(self) -> None:
        self.recursion -= 1
        try:
            if self.recursion < 0:
                raise self._error(
                    f"Message is too deep, the parser exceeded the configured recursion limit of {_RECURSION_LIMIT}."
                )
            delimiter = self._consume_delimiter()
            while not self._looking_at(">") and not self._looking_at("}"):
                self._skip_field()
            self._consume(delimiter)
        finally:
            self.recursion += 1

    def _skip_field(self) -> None:
        if self._looking_at("["):
            self._consume_type_url()
        else:
            self._before_whitespace(self._consume_identifier)
        self._try_consume_whitespace()
        if self._before_whitespace(lambda: self._try_consume(":")):
            self._try_consume_whitespace()
            if not self._looking_at("{") and not self._looking_at("<"):
                self._skip_value()
            else:
                self._skip_message()
        else:
            self._skip_message()
        self._end_of_field()

    def _skip_value(self) -> None:
        if self._looking_at_type(STRING):
            while self._looking_at_type(STRING):
                self.tokenizer.next()
            return
        if self._try_consume("["):
            if not self._try_consume("]"):
                while True:
                    if not self._looking_at("{") and not self._looking_at("<"):
                        self._skip_value()
                    else:
                        self._skip_message()
                    if self._try_consume("]"):
                        break
                    self._consume(",")
            return
        has_minus = self._try_consume("-")
        if self.tokenizer.current.type not in (INTEGER, FLOAT, IDENTIFIER):
            raise self._error(f"Cannot skip field value, unexpected token: {_text(self.tokenizer.current.text)}")
        if has_minus and self._looking_at_type(IDENTIFIER):
            text = _text(self.tokenizer.current.text).lower()
            if text not in ("inf", "infinity", "nan"):
                raise self._error(f"Invalid float number: {text}")
        self.tokenizer.next()


def _parse_float(text: bytes) -> float:
    """`Tokenizer::ParseFloat` of a FLOAT token (an `f` suffix and a dangling `e` are allowed)."""
    body = text.rstrip(b"fF")
    if body[-1:] in (b"e", b"E"):
        body = body[:-1]
    elif body[-2:-1] in (b"e", b"E") and body[-1:] in (b"+", b"-"):
        body = body[:-2]
    return float(body)


@dataclass
class Result:
    """A parse: the message (None if refused), and the log lines protobuf writes on the way."""

    message: Any
    errors: list[str]  # each: `Error parsing text-format TYPE: ...`
    warnings: list[str]  # each: `Warning parsing text-format TYPE: ...`


def parse(data: bytes, message_class: Any) -> Result:
    """`TextFormat::ParseFromString(data, &message)`."""
    message = message_class()
    parser = Parser(data, message.DESCRIPTOR)
    ok = parser.parse(message)
    name = message.DESCRIPTOR.full_name
    errors = [f"Error parsing text-format {name}: {e}" for e in parser.errors]
    warnings = [f"Warning parsing text-format {name}: {w}" for w in parser.warnings]
    return Result(message if ok else None, errors, warnings)
