"""The abseil string functions TF Serving's REST layer depends on, where Python's differ.

`absl::Base64Unescape` (`absl/strings/escaping.cc:Base64UnescapeInternal`), which
`util/json_tensor.cc:JsonDecodeBase64Object` uses for `{"b64": ...}` values, is more lenient than
`base64.b64decode(validate=True)`:

- padding is optional; `=` and `.` both pad; after the first pad only pads and whitespace may
  follow, and if pads are given there must be exactly as many as the length needs (none after a
  full 4-character group);
- ASCII whitespace (space, \\t, \\n, \\v, \\f, \\r) anywhere is skipped;
- a lone leftover character is an error; non-zero bits left over in the last character are not.
"""

import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9+/]*")
_SPACE = re.compile(r"[ \t\n\v\f\r]")


def base64_unescape(text: str) -> bytes | None:
    """`absl::Base64Unescape`: the decoded bytes, or None where it returns false."""
    cut = min((i for i in (text.find("="), text.find(".")) if i >= 0), default=len(text))
    data = _SPACE.sub("", text[:cut])
    pads = _SPACE.sub("", text[cut:])
    if not _ALPHABET.fullmatch(data) or pads.strip("=.") != "":
        return None
    leftover = len(data) % 4
    if leftover == 1:
        return None
    needed = {0: 0, 2: 2, 3: 1}[leftover]
    if pads and len(pads) != needed:
        return None
    return binascii.a2b_base64(data + "=" * needed)
