"""JSON the way TF Serving 2.20 reads and quotes it: rapidjson 1.1.0 as `util/json_tensor.cc` uses it.

`ParseJson` parses a request body with `Document::ParseStream<kParseIterativeFlag |
kParseNanAndInfFlag | kParseStopWhenDoneFlag>` over `EncodedInputStream<UTF8<>, MemoryStream>`, and
error messages quote request values with `JsonValueToDebugString` (a `PrettyWriter` in
`kFormatSingleLineArray` mode, cut at 256 bytes). What follows from rapidjson's `reader.h`,
`writer.h`, `prettywriter.h`, `internal/strtod.h` and `internal/dtoa.h`:

- bytes after the root value are ignored (StopWhenDone); a NUL byte ends the input; 0xEF, 0xBB and
  0xBF are each skipped at the start (the BOM); offsets count from the body's first byte;
- strings are not checked for valid UTF-8; control characters in them are an invalid escape;
  `\\uD800` without a low surrogate after it is an invalid surrogate pair;
- duplicate keys are all kept: lookups find the first (`Object`), counts and walks see every one;
- `NaN`, `Inf`, `Infinity` (and negated) are numbers; numbers are integers up to 64 bits, doubles
  beyond, computed as `StrtodNormalPrecision` does (not always the correctly rounded double);
- error texts are `GetParseError_En`'s, at the offsets the iterative parser reports.

Valid documents take Python's C parser (same grammar, checked results): at its speed when every
number has at most 15 digits and no exponent (then Python's float() is StrtodNormalPrecision's
value), with a Python step per other number (Python's repr of a float64 has 16-17 digits: about 4x
json.loads for such bodies). Anything it refuses, or where rapidjson could answer differently, is
parsed again by the iterative parser here.
"""

import json
import math
import re
import struct
from typing import Any

DEBUG_LIMIT = 256  # json_tensor.cc: kMaxJsonDebugStringBytes

_MESSAGES = {
    "empty": "The document is empty.",
    "singular": "The document root must not be followed by other values.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "comma_curly": "Missing a comma or '}' after an object member.",
    "comma_square": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "encoding": "Invalid encoding in string.",
    "too_big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
}


class ParseError(Exception):
    """A rapidjson parse error: `GetParseError_En` text and `GetErrorOffset`."""

    def __init__(self, kind: str, offset: int) -> None:
        super().__init__(f"{_MESSAGES[kind]} at offset: {offset}")
        self.message = _MESSAGES[kind]
        self.offset = offset


class Object(dict):
    """A JSON object with duplicate keys: lookups give the first value, `members` has them all."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        for key, value in pairs:
            if key not in self:
                self[key] = value
        self.members = pairs


def members(value: dict) -> list[tuple[str, Any]]:
    """Every member of a JSON object in document order (`GetObject()`), duplicates included."""
    return value.members if isinstance(value, Object) else list(value.items())


def _object(pairs: list[tuple[str, Any]]) -> dict:
    plain = dict(pairs)
    return plain if len(plain) == len(pairs) else Object(pairs)


# --- numbers: GenericReader::ParseNumber without kParseFullPrecisionFlag -------------------------

_POW10 = [float(f"1e{n}") for n in range(309)]  # internal/pow10.h: exact decimal literals


def _fast_path(significand: float, exp: int) -> float:
    if exp < -308:
        return 0.0
    if exp >= 0:
        return significand * _POW10[exp]
    return significand / _POW10[-exp]


def _strtod_normal(d: float, p: int) -> float:
    if p < -308:
        return _fast_path(_fast_path(d, -308), p + 308)
    return _fast_path(d, p)


def _consume(buf: bytes, pos: int, word: bytes) -> tuple[bool, int]:
    for ch in word:
        if pos < len(buf) and buf[pos] == ch:
            pos += 1
        else:
            return False, pos
    return True, pos


def _number(buf: bytes, pos: int) -> tuple[int | float, int]:
    """`ParseNumber` from `pos`: (value, end) or ParseError."""
    n = len(buf)

    def digit(at: int) -> int:
        return buf[at] - 48 if at < n and 48 <= buf[at] <= 57 else -1

    start = pos
    minus = pos < n and buf[pos] == 0x2D
    pos += minus
    i = i64 = 0
    use64 = use_double = nan_inf = False
    significant = 0
    d = 0.0
    first = digit(pos)
    if first == 0:
        pos += 1
    elif first > 0:
        i = first
        pos += 1
        limit, last = (214748364, 8) if minus else (429496729, 5)
        while (c := digit(pos)) >= 0:
            if i >= limit and (i != limit or c > last):
                i64, use64 = i, True
                break
            i = i * 10 + c
            pos += 1
            significant += 1
    elif pos < n and buf[pos] in b"IN":
        nan_inf = True
        ok, pos = _consume(buf, pos, b"NaN")
        if ok:
            d = math.nan
        else:
            ok, pos = _consume(buf, pos, b"Inf")
            if not ok:
                raise ParseError("value", pos)
            d = -math.inf if minus else math.inf
            if pos < n and buf[pos] == 0x69:  # 'i'
                ok, pos = _consume(buf, pos, b"inity")
                if not ok:
                    raise ParseError("value", pos)
    else:
        raise ParseError("value", pos)
    if use64:
        limit, last = (0x0CCCCCCCCCCCCCCC, 8) if minus else (0x1999999999999999, 5)
        while (c := digit(pos)) >= 0:
            if i64 >= limit and (i64 != limit or c > last):
                d, use_double = float(i64), True
                break
            i64 = i64 * 10 + c
            pos += 1
            significant += 1
    if use_double:
        while (c := digit(pos)) >= 0:
            if d >= 1.7976931348623157e307:
                raise ParseError("too_big", start)
            d = d * 10 + c
            pos += 1
    exp_frac = 0
    if pos < n and buf[pos] == 0x2E:  # '.'
        pos += 1
        if digit(pos) < 0:
            raise ParseError("fraction", pos)
        if not use_double:
            if not use64:
                i64 = i
            while (c := digit(pos)) >= 0:
                if i64 > 0x1FFFFFFFFFFFFF:
                    break
                i64 = i64 * 10 + c
                pos += 1
                exp_frac -= 1
                if i64 != 0:
                    significant += 1
            d, use_double = float(i64), True
        while (c := digit(pos)) >= 0:
            pos += 1
            if significant < 17:
                d = d * 10.0 + c
                exp_frac -= 1
                if d > 0.0:
                    significant += 1
    exp = 0
    if pos < n and buf[pos] in b"eE":
        pos += 1
        if not use_double:
            d, use_double = float(i64 if use64 else i), True
        exp_minus = False
        if pos < n and buf[pos] == 0x2B:
            pos += 1
        elif pos < n and buf[pos] == 0x2D:
            pos, exp_minus = pos + 1, True
        if digit(pos) < 0:
            raise ParseError("exponent", pos)
        exp = digit(pos)
        pos += 1
        max_exp = 308 - exp_frac
        while (c := digit(pos)) >= 0:
            exp = exp * 10 + c
            pos += 1
            if exp_minus:
                if exp >= 214748364:
                    while digit(pos) >= 0:
                        pos += 1
            elif exp > max_exp:
                raise ParseError("too_big", start)
        if exp_minus:
            exp = -exp
    if use_double:
        d = _strtod_normal(d, exp + exp_frac)
        return (-d if minus else d), pos
    if nan_inf:
        return d, pos
    value = i64 if use64 else i
    return (-value if minus else value), pos


class _Retry(Exception):
    """Python's parser accepted something rapidjson may read differently: take the exact path."""


def _hook_number(text: str) -> int | float:
    data = text.encode()
    try:
        value, end = _number(data, 0)
    except ParseError:
        raise _Retry from None
    if end != len(data):
        raise _Retry
    return value


_FAST_LIMIT = 0x1FFFFFFFFFFFFF  # 2^53 - 1: ParseNumber's exact fraction loop stops above it


def _plain_decimal(text: str) -> float | None:
    """`ParseNumber` for `-?int.frac` with an int part below 2^53 (the common long case, such as
    Python's repr of a float64), without a Python step per digit; None for other shapes."""
    negative = text.startswith("-")
    whole, _, frac = text[negative:].partition(".")
    if len(whole) > 15:
        return None
    i64 = int(whole)
    significant = len(whole) - 1 if i64 else 0  # the integer loop counts every digit after the first
    digits = whole + frac
    taken = len(whole)
    if i64 <= _FAST_LIMIT:
        # the exact loop appends digits while the value so far is <= 2^53 - 1, counting each one
        # from the first non-zero digit on
        nonzero = len(digits) - len(digits.lstrip("0"))
        stop = nonzero + 16 if int(digits[nonzero : nonzero + 16] or "0") > _FAST_LIMIT else nonzero + 17
        taken = min(len(digits), max(len(whole) + 1, stop))
        consumed = digits[len(whole) : taken]
        significant += len(consumed) if i64 else len(consumed.lstrip("0"))
        i64 = int(digits[:taken])
    exp_frac = len(whole) - taken
    d = float(i64)
    for ch in digits[taken:]:
        if significant >= 17:
            break
        d = d * 10.0 + (ord(ch) - 48)
        exp_frac -= 1
        if d > 0.0:
            significant += 1
    d = _strtod_normal(d, exp_frac)
    return -d if negative else d


def _hook_float(text: str) -> float | int:
    if "e" in text or "E" in text:
        return _hook_number(text)
    if len(text) <= 16:
        return float(text)  # <= 15 significant digits, |exponent| <= 15: StrtodNormalPrecision is exact
    value = _plain_decimal(text)
    return _hook_number(text) if value is None else value


def _hook_int(text: str) -> int | float:
    return int(text) if len(text) <= 9 else _hook_number(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_float=_hook_float,
    parse_int=_hook_int,
    parse_constant={"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.__getitem__,
)
_PLAIN = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_DECODER.parse_constant)
# Numbers Python's float() and int() read exactly as rapidjson does: no exponent, at most 15 digits.
# Bodies with any other number (or text that looks like one) take the hooks. Checked on a copy of
# the body with digits and '.' as "0", 'e'/'E' as "e" and everything else as " " (C speed).
_NUMBER_SHAPE = bytes(48 if c in b"0123456789." else 101 if c in b"eE" else 32 for c in range(256))


def _risky_numbers(body: bytes) -> bool:
    shape = body.translate(_NUMBER_SHAPE)
    return b"0e" in shape or b"0" * 16 in shape


_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB]")
_WS = b" \t\n\r"


# --- strings -------------------------------------------------------------------------------------

_ESCAPES = {0x22: b'"', 0x5C: b"\\", 0x2F: b"/", 0x62: b"\b", 0x66: b"\f", 0x6E: b"\n", 0x72: b"\r", 0x74: b"\t"}


def _hex4(buf: bytes, pos: int, escape_at: int) -> tuple[int, int]:
    chunk = buf[pos : pos + 4]
    if len(chunk) < 4 or any(c not in b"0123456789abcdefABCDEF" for c in chunk):
        raise ParseError("hex", escape_at)
    return int(chunk, 16), pos + 4


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    """`ParseStringToStream` from the opening quote: (text, end); invalid UTF-8 kept as escapes."""
    pos += 1
    out = bytearray()
    n = len(buf)
    while True:
        c = buf[pos] if pos < n else 0
        if c == 0x5C:
            escape_at = pos
            pos += 1
            e = buf[pos] if pos < n else 0
            if e in _ESCAPES:
                out += _ESCAPES[e]
                pos += 1
            elif e == 0x75:  # 'u'
                code, pos = _hex4(buf, pos + 1, escape_at)
                if 0xD800 <= code <= 0xDBFF:
                    if buf[pos : pos + 2] != b"\\u":
                        raise ParseError("surrogate", escape_at)
                    low, pos = _hex4(buf, pos + 2, escape_at)
                    if not 0xDC00 <= low <= 0xDFFF:
                        raise ParseError("surrogate", escape_at)
                    code = ((code - 0xD800) << 10 | (low - 0xDC00)) + 0x10000
                out += chr(code).encode("utf-8", "surrogatepass")
            else:
                raise ParseError("escape", escape_at)
        elif c == 0x22:
            return out.decode("utf-8", "surrogateescape"), pos + 1
        elif c < 0x20:
            raise ParseError("quote" if c == 0 else "escape", pos)
        else:
            out.append(c)
            pos += 1


def _literal(buf: bytes, pos: int) -> tuple[Any, int]:
    for word, value in ((b"null", None), (b"true", True), (b"false", False)):
        if buf[pos] == word[0]:
            ok, end = _consume(buf, pos + 1, word[1:])
            if not ok:
                raise ParseError("value", end)
            return value, end
    raise AssertionError("not a literal")


def _value(buf: bytes, pos: int) -> tuple[Any, int]:
    """`ParseValue` for a non-compound value."""
    c = buf[pos]
    if c == 0x22:
        return _string(buf, pos)
    if c in b"ntf":
        return _literal(buf, pos)
    return _number(buf, pos)


# --- the iterative parser ------------------------------------------------------------------------

# states of GenericReader::IterativeParse
_START, _FINISH, _OBJ_INIT, _KEY, _KV_DELIM, _MEMBER, _MEMBER_DELIM, _ARR_INIT, _ELEMENT, _ELEM_DELIM = range(10)
_ERRORS = {
    _START: "empty",
    _FINISH: "singular",
    _OBJ_INIT: "name",
    _MEMBER_DELIM: "name",
    _KEY: "colon",
    _MEMBER: "comma_curly",
    _KV_DELIM: "value",
    _ARR_INIT: "value",
    _ELEM_DELIM: "value",
    _ELEMENT: "comma_square",
}


def _skip_ws(buf: bytes, pos: int) -> int:
    n = len(buf)
    while pos < n and buf[pos] in _WS:
        pos += 1
    return pos


def _iterative(buf: bytes, pos: int) -> Any:
    """`IterativeParse` with StopWhenDone: the root value, or ParseError."""
    state = _START
    stack: list[tuple[int, Any]] = []  # (state to return to, container being built)
    root: Any = None
    key: str | None = None
    n = len(buf)

    def add(value: Any) -> None:
        nonlocal root
        if not stack:
            root = value
        elif isinstance(stack[-1][1], list):
            stack[-1][1].append(value)
        else:
            stack[-1][1][1].append((key, value))

    pos = _skip_ws(buf, pos)
    while pos < n:
        c = buf[pos]
        if c in b"[{":
            if state not in (_START, _KV_DELIM, _ARR_INIT, _ELEM_DELIM):
                raise ParseError(_ERRORS[state], pos)
            back = {_START: _START, _KV_DELIM: _MEMBER}.get(state, _ELEMENT)
            stack.append((back, [] if c == 0x5B else ("obj", [], key)))
            state = _ARR_INIT if c == 0x5B else _OBJ_INIT
            pos += 1
        elif c == 0x7D:  # '}'
            if state == _MEMBER_DELIM or state not in (_OBJ_INIT, _MEMBER):
                raise ParseError(_ERRORS[state], pos)
            back, (_, pairs, key) = stack.pop()
            add(_object(pairs))
            state = _FINISH if back == _START else back
            pos += 1
        elif c == 0x5D:  # ']'
            if state == _ELEM_DELIM or state not in (_ARR_INIT, _ELEMENT):
                raise ParseError(_ERRORS[state], pos)
            back, items = stack.pop()
            add(items)
            state = _FINISH if back == _START else back
            pos += 1
        elif c == 0x2C:  # ','
            if state not in (_MEMBER, _ELEMENT):
                raise ParseError(_ERRORS[state], pos)
            state = _MEMBER_DELIM if state == _MEMBER else _ELEM_DELIM
            pos += 1
        elif c == 0x3A:  # ':'
            if state != _KEY:
                raise ParseError(_ERRORS[state], pos)
            state = _KV_DELIM
            pos += 1
        elif state in (_OBJ_INIT, _MEMBER_DELIM):
            if c != 0x22:
                raise ParseError(_ERRORS[state], pos)
            key, pos = _string(buf, pos)
            state = _KEY
        elif state in (_START, _KV_DELIM, _ARR_INIT, _ELEM_DELIM):
            value, pos = _value(buf, pos)
            add(value)
            state = {_START: _FINISH, _KV_DELIM: _MEMBER}.get(state, _ELEMENT)
        else:
            raise ParseError(_ERRORS[state], pos)
        if state == _FINISH:
            return root
        pos = _skip_ws(buf, pos)
    raise ParseError(_ERRORS[state], pos)


def parse(body: bytes) -> Any:
    """`ParseJson`'s rapidjson parse of a non-empty body: the root value, or ParseError."""
    nul = body.find(b"\0")
    if nul >= 0:
        body = body[:nul]
    start = 0
    for mark in (0xEF, 0xBB, 0xBF):
        if start < len(body) and body[start] == mark:
            start += 1
    try:
        if _HIGH_SURROGATE.search(body) is None:
            text = body[start:].decode("utf-8")
            decoder = _DECODER if _risky_numbers(body) else _PLAIN
            doc, _ = decoder.raw_decode(text, len(text) - len(text.lstrip(" \t\n\r")))
            if isinstance(doc, dict | list):
                return doc
    except (ValueError, RecursionError, _Retry):
        pass
    return _iterative(body, start)


# --- writing: Writer::String and JsonValueToDebugString ------------------------------------------

_NAMED = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _NAMED.get(ch) or f"\\u{ord(ch):04X}"


def write_string(text: str) -> str:
    """`Writer::String`: quoted, `\\" \\\\ \\b \\f \\n \\r \\t`, other controls `\\u00XX` (upper case)."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def utf8(text: str) -> bytes:
    """The bytes rapidjson would write for `text` (invalid UTF-8 read from a request comes back as is)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return b"".join(
            ch.encode("utf-8", "surrogateescape" if "\udc80" <= ch <= "\udcff" else "surrogatepass") for ch in text
        )


# --- Writer::Double: Grisu2 (internal/dtoa.h, internal/diyfp.h) ---------------------------------
# Grisu2 does not always find the shortest digits (Python's repr does): rapidjson prints, say,
# 370515.98592907379 for the double Python writes as 370515.98592907377. So it is done the same way.

_U64 = (1 << 64) - 1
_HIDDEN = 1 << 52


def _cached_power(index: int) -> tuple[int, int]:
    """10^(-348 + 8 * index) as a normalized 64-bit significand and binary exponent, rounded."""
    k = -348 + 8 * index
    num, den = (10**k, 1) if k >= 0 else (1, 10**-k)
    e = num.bit_length() - den.bit_length() - 64
    while True:
        top, bottom = (num, den << e) if e >= 0 else (num << -e, den)
        f, rest = divmod(top, bottom)
        f += 2 * rest >= bottom
        if f >= 1 << 64:
            e += 1
        elif f < 1 << 63:
            e -= 1
        else:
            return f, e


_CACHED_POWERS = [_cached_power(i) for i in range(87)]


def _mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    product = a[0] * b[0]
    return (product >> 64) + ((product >> 63) & 1), a[1] + b[1] + 64


def _grisu2(value: float) -> tuple[str, int]:
    """Digits and decimal exponent of a positive finite double, as rapidjson's Grisu2 finds them."""
    bits = int.from_bytes(struct.pack(">d", value), "big")
    biased, significand = (bits >> 52) & 0x7FF, bits & (_HIDDEN - 1)
    f, e = (significand + _HIDDEN, biased - 1075) if biased else (significand, -1074)
    pf, pe = (f << 1) + 1, e - 1  # upper boundary, NormalizeBoundary
    while not pf & (_HIDDEN << 1):
        pf, pe = pf << 1, pe - 1
    pf, pe = pf << 10, pe - 10
    mf, me = ((f << 2) - 1, e - 2) if f == _HIDDEN else ((f << 1) - 1, e - 1)
    mf <<= me - pe
    shift = 64 - f.bit_length()  # Normalize
    dk = (-61 - pe) * 0.30102999566398114 + 347
    k = int(dk) + (dk - int(dk) > 0.0)
    index = (k >> 3) + 1
    big_k = -(-348 + index * 8)
    c = _CACHED_POWERS[index]
    w = _mul((f << shift, e - shift), c)
    wp = _mul((pf, pe), c)
    wm = _mul((mf, pe), c)
    wp_f, wm_f = wp[0] - 1, wm[0] + 1
    delta = (wp_f - wm_f) & _U64
    # DigitGen
    one_e = wp[1]
    one_f = 1 << -one_e
    wp_w = (wp_f - w[0]) & _U64
    p1 = wp_f >> -one_e
    p2 = wp_f & (one_f - 1)
    kappa = len(str(p1)) if p1 >= 10 else 1
    buffer: list[int] = []

    def grisu_round(rest: int, ten_kappa: int, wp_w: int) -> None:
        while (
            rest < wp_w
            and delta - rest >= ten_kappa
            and (rest + ten_kappa < wp_w or wp_w - rest > rest + ten_kappa - wp_w)
        ):
            buffer[-1] -= 1
            rest += ten_kappa

    while kappa > 0:
        power = 10 ** (kappa - 1)
        d, p1 = divmod(p1, power)
        if d or buffer:
            buffer.append(d)
        kappa -= 1
        tmp = (p1 << -one_e) + p2
        if tmp <= delta:
            big_k += kappa
            grisu_round(tmp, (10**kappa) << -one_e, wp_w)
            return "".join(map(str, buffer)), big_k
    while True:
        p2 *= 10
        delta = (delta * 10) & _U64
        d = p2 >> -one_e
        if d or buffer:
            buffer.append(d)
        p2 &= one_f - 1
        kappa -= 1
        if p2 < delta:
            big_k += kappa
            grisu_round(p2, one_f, (wp_w * (10**-kappa if -kappa < 9 else 0)) & _U64)
            return "".join(map(str, buffer)), big_k


def write_double(value: float) -> str | None:
    """`Writer::Double`: Grisu2 digits laid out by `Prettify`; None for NaN/Inf, which it refuses."""
    if not math.isfinite(value):
        return None
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    digits, k = _grisu2(abs(value))
    length = len(digits)
    kk = length + k
    if k >= 0 and kk <= 21:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        out = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        out = "0." + "0" * -kk + digits
    elif length == 1:
        out = f"{digits}e{kk - 1}"
    else:
        out = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + out


class _LimitedPrettyWriter:
    """PrettyWriter (4-space indent, kFormatSingleLineArray) behind `JsonWriterWithLimit`."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.levels: list[list[Any]] = []  # [in_array, value_count]

    def _put(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(utf8(text))

    def _prefix(self) -> None:
        if not self.levels:
            return
        level = self.levels[-1]
        if level[0]:
            if level[1] > 0:
                self._put(", ")
        else:
            if level[1] > 0:
                self._put(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self._put("\n")
            if level[1] % 2 == 0:
                self._put("    " * len(self.levels))
        level[1] += 1

    def _scalar(self, value: Any) -> bool:
        self._prefix()
        if value is None:
            self._put("null")
        elif value is True or value is False:
            self._put("true" if value else "false")
        elif isinstance(value, str):
            self._put(write_string(value))
        elif isinstance(value, int):
            self._put(str(value))
        else:
            text = write_double(float(value))
            if text is None:
                return False
            self._put(text)
        return True

    def write(self, value: Any) -> None:
        """`Value::Accept` (without recursion): stops at the first event once the limit is reached,
        or at a NaN/Inf double, which the Writer refuses."""
        # each frame: (iterator over members or items, is_object)
        frames: list[tuple[Any, bool]] = []
        pending: list[Any] = [value]
        while True:
            if pending:
                item = pending.pop()
                if self.size >= self.limit:
                    return
                if isinstance(item, dict):
                    self._prefix()
                    self._put("{")
                    self.levels.append([False, 0])
                    frames.append((iter(members(item)), True))
                elif isinstance(item, list):
                    self._prefix()
                    self._put("[")
                    self.levels.append([True, 0])
                    frames.append((iter(item), False))
                elif not self._scalar(item):
                    return
            if not frames:
                return
            iterator, is_object = frames[-1]
            nxt: Any = next(iterator, _END)
            if self.size >= self.limit:
                return
            if nxt is _END:
                frames.pop()
                count = self.levels.pop()[1]
                if is_object and count:
                    self._put("\n" + "    " * len(self.levels))
                self._put("}" if is_object else "]")
                if not frames:
                    return
            elif is_object:
                self._prefix()
                self._put(write_string(nxt[0]))
                pending.append(nxt[1])
            else:
                pending.append(nxt)


_END = object()


def debug_string(value: Any, limit: int = DEBUG_LIMIT) -> str:
    """`JsonValueToDebugString`: how TF Serving quotes a request value in an error message."""
    writer = _LimitedPrettyWriter(limit)
    writer.write(value)
    return "".join(writer.parts)
