"""SIP messages: parse, build and serialize requests and responses (RFC 3261 §7, §18.3, §25).

Theory of operation
-------------------
A message is a frozen value: start line, an ordered tuple of ``(name, value)`` header fields
and a body.  ``parse_message(data)`` turns one datagram (or one framed TCP message) into a
:class:`SipRequest` or :class:`SipResponse`; ``bytes(msg)`` turns it back.  Header names are
stored in their canonical long form (``v`` → ``Via``), folded lines are unfolded, and the
comma-separated list headers (Via, Contact, Route, ...) are split into one field per value,
so ``msg.headers.get_all("Via")`` is the Via stack.  ``Content-Length`` is framing, not
content: the parser consumes it and the serializer always writes the right one.

Anything unparseable raises :class:`~sipcallhunt.errors.SipParseError` and nothing else; when
start line and headers were readable, the error carries them in ``partial`` so that a request
can still be answered (400, 505...).

:class:`StreamFramer` cuts a TCP byte stream into messages using Content-Length (§18.3) and
reports CRLF keep-alives (RFC 5626 §3.5.1).
"""

from __future__ import annotations

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "MAX_MESSAGE_SIZE",
    "Headers",
    "KeepAlive",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "canonical_name",
    "parse_message",
    "reason_phrase",
]

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Final

import attrs

from sipcallhunt.errors import LocalProtocolError, SipParseError
from sipcallhunt.sip.uri import CSeq, NameAddr, SipUri, Via, split_comma_list

MAX_MESSAGE_SIZE: Final = 65536
"""Largest message accepted (datagram or framed stream message)."""

COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: Final[dict[str, str]] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "Identity",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Remote-Party-ID",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

LIST_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "in-reply-to",
        "p-asserted-identity",
        "proxy-require",
        "record-route",
        "require",
        "route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)
"""Headers whose comma-separated values are split into one field each (RFC 3261 §7.3.1)."""

_TOKEN_RE = re.compile(r"[a-zA-Z0-9\-.!%*_+`'~]+")
# RFC 3261 §7.3.1: field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS.
# A CR is only part of a line end: one anywhere else makes the line malformed.
_HEADER_LINE_RE = re.compile(r"([a-zA-Z0-9\-.!%*_+`'~]+)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*")
# RFC 3261 §25.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF (one SP each, RFC 4475 §3.1.2.9).
_REQUEST_LINE_RE = re.compile(r"([a-zA-Z0-9\-.!%*_+`'~]+) ([^\s]+) ([sS][iI][pP]/\d+\.\d+)")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; a missing final SP is tolerated.
_STATUS_LINE_RE = re.compile(r"([sS][iI][pP]/\d+\.\d+) ([1-6]\d\d)(?: ([^\r\n]*))?")

_REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The RFC reason phrase for ``status`` (a generic one for unknown codes)."""
    return _REASONS.get(status) or _REASONS.get(status // 100 * 100, "Unknown")


_NAME_LOOKUP: Final[dict[str, str]] = {**_CANONICAL, **COMPACT_FORMS}
_NAME_CACHE: dict[str, str] = {}  # raw spelling → canonical name; bounded below
_NAME_CACHE_LIMIT: Final = 4096


def canonical_name(name: str) -> str:
    """Long, canonically capitalised form of a header name (``v`` → ``Via``, ``call-id`` → ``Call-ID``)."""
    cached = _NAME_CACHE.get(name)
    if cached is not None:
        return cached
    canonical = _NAME_LOOKUP.get(name.lower(), name)
    if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
        _NAME_CACHE[name] = canonical
    return canonical


_KEY_CACHE: dict[str, str] = {}
_NAME_INFO: dict[str, tuple[str, str]] = {}  # raw spelling → (canonical name, lookup key)


def _name_info(name: str) -> tuple[str, str]:
    canonical = canonical_name(name)
    info = (canonical, canonical.lower())
    if len(_NAME_INFO) < _NAME_CACHE_LIMIT:
        _NAME_INFO[name] = info
    return info


def _key(name: str) -> str:
    """The case-insensitive lookup key of a header name (its canonical form, lower-cased)."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = canonical_name(name).lower()
        if len(_KEY_CACHE) < _NAME_CACHE_LIMIT:
            _KEY_CACHE[name] = key
    return key


@attrs.frozen
class Headers:
    """Ordered header fields with case-insensitive lookup.

    ``items`` holds ``(canonical name, value)`` pairs in wire order.  Methods that change
    something return a new :class:`Headers`.  Lookups use an index built on first use.
    """

    items: tuple[tuple[str, str], ...] = ()
    _index: dict[str, list[str]] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        return cls(tuple((canonical_name(k), v) for k, v in pairs))

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self.items:
                lkey = _key(key)
                values = index.get(lkey)
                if values is None:
                    index[lkey] = [value]
                else:
                    values.append(value)
            object.__setattr__(self, "_index", index)
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._lookup().get(_key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._lookup().get(_key(name), ()))

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        return len(self._lookup().get(_key(name), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def without(self, *names: str) -> Headers:
        lnames = {canonical_name(n).lower() for n in names}
        return Headers(tuple((k, v) for k, v in self.items if k.lower() not in lnames))

    def with_(self, name: str, value: str | Iterable[str]) -> Headers:
        """Replace every field called ``name`` by ``value`` (one field per item), in place of the first."""
        name = canonical_name(name)
        lname = name.lower()
        values = [value] if isinstance(value, str) else list(value)
        out: list[tuple[str, str]] = []
        placed = False
        for key, old in self.items:
            if key.lower() == lname:
                if not placed:
                    out.extend((name, v) for v in values)
                    placed = True
                continue
            out.append((key, old))
        if not placed:
            out.extend((name, v) for v in values)
        return Headers(tuple(out))

    def appended(self, name: str, value: str) -> Headers:
        return Headers((*self.items, (canonical_name(name), value)))

    def prepended(self, name: str, value: str) -> Headers:
        """Insert ``name: value`` before the first field of that name (a new top Via)."""
        name = canonical_name(name)
        lname = name.lower()
        for index, (key, _) in enumerate(self.items):
            if key.lower() == lname:
                return Headers((*self.items[:index], (name, value), *self.items[index:]))
        return Headers(((name, value), *self.items))


# Structured values are frozen, so parses of the same header text can be shared: the same
# From/To/Via/CSeq strings come back in every retransmission, response and in-dialog request,
# and each accessor is called several times per message.  Long values are not cached, which
# bounds the memory an attacker can pin.
_CACHE_SIZE: Final = 2048
_CACHE_MAX_VALUE: Final = 512
_name_addr_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(NameAddr.parse)
_via_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(Via.parse)
_cseq_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(CSeq.parse)
_uri_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(SipUri.parse)


def _name_addr(value: str) -> NameAddr:
    return _name_addr_cached(value) if len(value) <= _CACHE_MAX_VALUE else NameAddr.parse(value)


def _via(value: str) -> Via:
    return _via_cached(value) if len(value) <= _CACHE_MAX_VALUE else Via.parse(value)


class _MessageMixin:
    """Typed accessors shared by requests and responses."""

    headers: Headers
    body: bytes

    # Single-valued headers, parsed on demand; each raises SipParseError if missing or bad.
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("missing CSeq")
        return _cseq_cached(value) if len(value) <= _CACHE_MAX_VALUE else CSeq.parse(value)

    @property
    def from_(self) -> NameAddr:
        value = self.headers.get("From")
        if value is None:
            raise SipParseError("missing From")
        return _name_addr(value)

    @property
    def to(self) -> NameAddr:
        value = self.headers.get("To")
        if value is None:
            raise SipParseError("missing To")
        return _name_addr(value)

    @property
    def vias(self) -> list[Via]:
        return [_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise SipParseError("missing Via")
        return _via(value)

    @property
    def contacts(self) -> list[NameAddr]:
        return [_name_addr(v) for v in self.headers.get_all("Contact")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [_name_addr(v) for v in self.headers.get_all("Record-Route")]

    @property
    def content_type(self) -> str | None:
        """Media type in lower case without parameters (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def header_tokens(self, name: str) -> set[str]:
        """Lower-cased tokens of a list header such as Supported, Require or Allow."""
        return {v.strip().lower() for v in self.headers.get_all(name) if v.strip()}

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for key, value in self.headers.items:
            if key != "Content-Length":
                lines.append(f"{key}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines)
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            # A CR or LF inside a start line or value would smuggle in header lines of its own.
            raise LocalProtocolError(f"line break inside a start line or header value: {head[:200]!r}")
        return (head + "\r\n\r\n").encode() + self.body


@attrs.frozen
class SipRequest(_MessageMixin):
    """A SIP request.  ``uri`` is the Request-URI as it appeared on the wire."""

    method: str
    uri: str
    headers: Headers = Headers()
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def request_uri(self) -> SipUri:
        return _uri_cached(self.uri) if len(self.uri) <= _CACHE_MAX_VALUE else SipUri.parse(self.uri)

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {self.version}")

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"


@attrs.frozen
class SipResponse(_MessageMixin):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = Headers()
    body: bytes = b""
    version: str = "SIP/2.0"

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.version} {self.status} {self.reason}")

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    @property
    def is_provisional(self) -> bool:
        return self.status < 200


SipMessage = SipRequest | SipResponse


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split at the blank line; also accept bare-LF line ends, which some peers send."""
    index = data.find(b"\r\n\r\n")
    if index >= 0:
        return data[:index], data[index + 4 :]
    index = data.find(b"\n\n")
    if index >= 0:
        return data[:index], data[index + 2 :]
    # A message without a body may lack the final blank line on UDP.
    return data.rstrip(b"\r\n"), b""


def _parse_content_length(value: str) -> int:
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 9:
        raise SipParseError(f"invalid Content-Length: {value[:40]!r}")
    return int(value)


_MANDATORY: Final = ("Via", "From", "To", "Call-ID", "CSeq")

_SINGLE_VALUED: Final = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-type", "expires", "min-expires", "date"}
)
"""Headers that must not appear more than once (RFC 3261 §7.3.1; RFC 4475 §3.3.8)."""

# Call-ID = word ["@" word] (RFC 3261 §25.1); we only insist on no whitespace, since real user
# agents put other characters ('=' of base64, for one) in their Call-IDs.
_CALL_ID_RE: Final = re.compile(r"\S+")
_SIP_DATE_RE: Final = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT"
)
_VERSION_RE: Final = re.compile(r"SIP/\d+\.\d+", re.IGNORECASE)
MAX_FORWARDS_LIMIT: Final = 255
"""Largest Max-Forwards value (RFC 3261 §20.22)."""
DELTA_SECONDS_LIMIT: Final = 2**32 - 1
"""Largest delta-seconds value (RFC 3261 §20.19)."""


def _unfold(head: str) -> list[str]:
    """Header lines with continuation lines joined by one space (RFC 3261 §7.3.1)."""
    if "\n " not in head and "\n\t" not in head and head.count("\n") == head.count("\r\n"):
        return head.split("\r\n")  # the common case: CRLF line ends, nothing folded
    raw = head.split("\n")
    lines: list[str] = []
    for line in raw:
        if line.endswith("\r"):
            line = line[:-1]
        if line[:1] in (" ", "\t") and len(lines) > 1:
            lines[-1] = lines[-1].rstrip(" \t") + " " + line.lstrip(" \t")
        else:
            lines.append(line)
    return lines


def _start_line_partial(start: str, headers: Headers) -> SipRequest | None:
    """Best-effort request from a malformed request line, so that it can still be answered 400."""
    parts = start.split()
    if len(parts) >= 3 and _TOKEN_RE.fullmatch(parts[0]) and _VERSION_RE.fullmatch(parts[-1]):
        return SipRequest(parts[0], " ".join(parts[1:-1]), headers, b"", parts[-1])
    return None


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one SIP message.

    On a datagram (``stream=False``) a Content-Length shorter than the rest truncates the body and
    a longer one is an error (RFC 3261 §18.3); without Content-Length the body is the rest.  With
    ``stream=True`` (one message already cut by :class:`StreamFramer`) a missing Content-Length
    means an empty body.

    Raises :class:`SipParseError` and nothing else.  When the message is a request whose start
    line and headers could be read, the error's ``partial`` holds them (with an empty body) and
    its ``status`` says how to answer: 400, 505 for an unknown SIP version, 513 when too large.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError(f"message too large ({len(data)} bytes)", status=513, reason="Message Too Large")
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    head_bytes, rest = _split_head(data)
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not UTF-8: {exc}") from None
    lines = _unfold(head)
    start = lines[0]

    pairs: list[tuple[str, str]] = []
    content_lengths: list[str] = []
    problem: str | None = None
    index: dict[str, list[str]] = {}
    for line in lines[1:]:
        m = _HEADER_LINE_RE.fullmatch(line)
        if m is None:
            problem = problem or f"malformed header line: {line[:100]!r}"
            continue
        cname, lkey = _NAME_INFO.get(m[1]) or _name_info(m[1])
        value = m[2]
        if lkey == "content-length":
            content_lengths.append(value)
            continue
        if "," in value and lkey in LIST_HEADERS:
            try:
                items = split_comma_list(value)
            except SipParseError as exc:
                problem = problem or str(exc)
                items = [value]
        else:
            items = [value]
        for item in items:
            pairs.append((cname, item))
            values = index.get(lkey)
            if values is None:
                index[lkey] = [item]
            else:
                values.append(item)
    headers = Headers(tuple(pairs))
    object.__setattr__(headers, "_index", index)  # built alongside, saves a second pass

    is_response = start[:4].upper() == "SIP/"
    request_match = None if is_response else _REQUEST_LINE_RE.fullmatch(start)
    partial: SipRequest | None = None
    if request_match:
        partial = SipRequest(request_match[1], request_match[2], headers, b"", request_match[3])
    elif not is_response:
        partial = _start_line_partial(start, headers)

    def fail(message: str, status: int | None = None, reason: str | None = None) -> SipParseError:
        return SipParseError(message, status=status, reason=reason, partial=partial)

    if not is_response and request_match is None:
        raise fail(f"malformed request line: {start[:100]!r}")
    if problem is not None:
        raise fail(problem)

    content_length: int | None = None
    for text in content_lengths:
        try:
            length = _parse_content_length(text)
        except SipParseError as exc:
            raise fail(str(exc)) from None
        if content_length is not None and content_length != length:
            raise fail("conflicting Content-Length headers")  # RFC 4475 §3.3.9
        content_length = length

    if content_length is None:
        body = b"" if stream else rest
    elif content_length > len(rest):
        raise fail(f"Content-Length {content_length} exceeds the {len(rest)} bytes received")  # §18.3
    else:
        body = rest[:content_length]

    message: SipMessage
    if is_response:
        m = _STATUS_LINE_RE.fullmatch(start)
        if not m:
            raise SipParseError(f"malformed status line: {start[:100]!r}")
        version, code, reason = m[1].upper(), m[2], m[3] or ""
        if version != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version[:20]}")
        message = SipResponse(int(code), reason, headers, body, version)
    else:
        assert request_match is not None
        method, uri, version = request_match[1], request_match[2], request_match[3].upper()
        message = SipRequest(method, uri, headers, body, version)
        partial = attrs.evolve(message, body=b"")
        if version != "SIP/2.0":
            raise fail(f"unsupported SIP version {version[:20]}", status=505, reason="Version Not Supported")
    _validate(message, partial)
    return message


def _check_number(message: SipMessage, name: str, limit: int) -> None:
    number = message.headers.get(name)
    if number is None:
        return
    number = number.strip()
    if not (number.isdigit() and number.isascii()) or len(number) > 12 or int(number) > limit:
        raise SipParseError(f"invalid {name}: {number[:40]!r}")


def _validate(message: SipMessage, partial: SipRequest | None = None) -> None:
    """Check the mandatory headers (RFC 3261 §8.1.1) and the syntax of those we rely on."""
    try:
        index = message.headers._lookup()
        for key in _SINGLE_VALUED:
            if len(index.get(key, ())) > 1:
                raise SipParseError(f"more than one {canonical_name(key)} header")
        for name in _MANDATORY:
            if name.lower() not in index:
                raise SipParseError(f"missing mandatory header {name}")
        message.vias  # noqa: B018 - parse to validate
        cseq = message.cseq
        message.from_  # noqa: B018
        message.to  # noqa: B018
        if not _CALL_ID_RE.fullmatch(message.call_id):
            raise SipParseError(f"invalid Call-ID: {message.call_id[:100]!r}")
        for name in ("Contact", "Route", "Record-Route"):
            for value in message.headers.get_all(name):
                _name_addr(value)
        _check_number(message, "Max-Forwards", MAX_FORWARDS_LIMIT)
        _check_number(message, "Expires", DELTA_SECONDS_LIMIT)
        _check_number(message, "Min-Expires", DELTA_SECONDS_LIMIT)
        date = message.headers.get("Date")
        if date is not None and not _SIP_DATE_RE.fullmatch(date):
            raise SipParseError(f"invalid Date: {date[:60]!r}")  # RFC 3261 §20.17, RFC 4475 §3.1.2.12
        if isinstance(message, SipRequest):
            if cseq.method != message.method:
                raise SipParseError(f"CSeq method {cseq.method} does not match request method {message.method}")
            uri = message.request_uri
            if uri.headers:
                raise SipParseError("headers are not allowed in a Request-URI")  # §19.1.1, RFC 4475 §3.1.2.11
    except SipParseError as exc:
        raise SipParseError(str(exc), status=exc.status, reason=exc.reason, partial=partial) from None


@attrs.frozen
class KeepAlive:
    """A CRLF keep-alive ping seen on a stream (RFC 5626 §3.5.1): answer with one CRLF."""


@attrs.define
class StreamFramer:
    """Cut a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3).

    ``feed(data)`` returns complete items in order: :class:`SipRequest`/:class:`SipResponse`,
    and :class:`KeepAlive` for each double CRLF between messages (RFC 5626 §3.5.1; a single
    CRLF, the pong, is skipped).  The result does not depend on how the stream was chunked.
    A message that cannot be parsed raises :class:`SipParseError` (with ``partial`` when it
    was a request that can be answered); the stream cannot be resynchronised after that and
    the shell closes the connection.  Anything larger than ``max_size`` raises it with status
    513 as soon as that is known, so memory stays bounded.  When the same ``feed`` completed
    good messages before the bad one, it returns those and keeps the error in ``error``, which
    every later ``feed`` raises: the messages a peer sent before its garbage are not lost.
    """

    max_size: int = MAX_MESSAGE_SIZE
    _buffer: bytearray = attrs.field(factory=bytearray)
    _scanned: int = 0  # bytes of the buffer known not to contain the end of the header section
    error: SipParseError | None = attrs.field(default=None, init=False)
    """The error that ended the stream, once there was one."""

    def feed(self, data: bytes) -> list[SipMessage | KeepAlive]:
        if self.error is not None:
            raise self.error
        out: list[SipMessage | KeepAlive] = []
        try:
            self._feed(data, out)
        except SipParseError as exc:
            self.error = exc
            if not out:
                raise
        return out

    def _feed(self, data: bytes, out: list[SipMessage | KeepAlive]) -> None:
        self._buffer += data
        buffer = self._buffer
        while buffer:
            if buffer[0] in b"\r\n" and self._scanned == 0:
                # Between messages: "\r\n\r\n" is a ping, a lone "\r\n" a pong.
                if buffer.startswith(b"\r\n\r\n"):
                    del buffer[:4]
                    out.append(KeepAlive())
                    continue
                if b"\r\n\r\n".startswith(bytes(buffer[:4])):
                    return  # could still become a ping: wait for more
                if buffer.startswith(b"\r\n"):
                    del buffer[:2]
                else:
                    del buffer[:1]  # a stray CR or LF
                continue
            end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(buffer)
                if len(buffer) > self.max_size:
                    raise SipParseError(
                        f"header section larger than {self.max_size} bytes on stream",
                        status=513,
                        reason="Message Too Large",
                    )
                return
            head = bytes(buffer[:end])
            length = self._content_length(head)
            total = end + 4 + length
            if total > self.max_size:
                raise SipParseError(
                    f"message too large ({total} bytes) on stream", status=513, reason="Message Too Large"
                )
            if len(buffer) < total:
                self._scanned = end  # the end of the head is known; keep finding it cheaply
                return
            chunk = bytes(buffer[:total])
            del buffer[:total]
            self._scanned = 0
            out.append(parse_message(chunk, stream=True))

    @staticmethod
    def _content_length(head: bytes) -> int:
        length = 0
        for line in _unfold(head.decode("utf-8", "replace"))[1:]:
            name, _, value = line.partition(":")
            if canonical_name(name.strip()) == "Content-Length":
                try:
                    length = _parse_content_length(value)
                except SipParseError:
                    parse_message(head + b"\r\n\r\n", stream=True)  # raises, with ``partial``
                    raise
        return length

    @property
    def pending(self) -> int:
        """Bytes buffered for an incomplete message."""
        return len(self._buffer)
