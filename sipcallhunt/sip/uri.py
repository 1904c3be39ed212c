"""SIP URIs and the structured header values built on them (RFC 3261 §19, §20, §25).

Every ``parse`` here takes a header value that has already been unfolded (the message parser
turns folded lines into single spaces) and raises :class:`~sipcallhunt.errors.SipParseError`
and nothing else.  ``str()`` of every value is its wire form, and ``parse(str(v)) == v``.
"""

from __future__ import annotations

__all__ = [
    "CSeq",
    "NameAddr",
    "Params",
    "SipUri",
    "Via",
    "format_params",
    "generic_params",
    "get_param",
    "has_param",
    "quote",
    "set_param",
    "split_comma_list",
    "unquote",
]

import ipaddress
import re
from collections.abc import Iterator
from typing import Final
from urllib.parse import quote as _pct_quote
from urllib.parse import unquote as _pct_unquote

import attrs

from sipcallhunt.errors import LocalProtocolError, SipParseError

Params = tuple[tuple[str, str | None], ...]
"""Parameters in wire order: ``(name, value)``; ``value`` is None for a flag such as ``lr``."""

# RFC 3261 §25.1 character classes.
_ALPHANUM = "a-zA-Z0-9"
_MARK = r"\-_.!~*'()"
_UNRESERVED = _ALPHANUM + _MARK
_TOKEN_CHARS = _ALPHANUM + r"\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
_ESCAPED = "%[0-9a-fA-F]{2}"
_USER_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_PARAMCHAR = f"(?:[{_UNRESERVED}\\[\\]/:&+$]|{_ESCAPED})"
_URI_PARAM_RE = re.compile(f"{_PARAMCHAR}+(?:={_PARAMCHAR}+)?")
_HNVCHAR = f"(?:[{_UNRESERVED}\\[\\]/?:+$]|{_ESCAPED})"
_URI_HEADER_RE = re.compile(f"{_HNVCHAR}+={_HNVCHAR}*")
_IPV4_RE = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_HOSTNAME_RE = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.?")
_IPV6_RE = re.compile(r"\[[0-9a-fA-F:.]+\]")
_IPV6_CHARS_RE = re.compile(r"[0-9a-fA-F:.]+")
_SCHEME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+\-.]*")
_TEL_RE = re.compile(r"\+?[0-9a-fA-F*#\-.()]+")

_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_WHITESPACE_RE = re.compile(r"\s")


def _unescape(text: str) -> str:
    """Resolve %HH escapes; octets that are not UTF-8 survive as surrogate escapes (PEP 383)."""
    return _pct_unquote(text, errors="surrogateescape") if "%" in text else text


def _escape(text: str, safe: str) -> str:
    """Inverse of :func:`_unescape`: escape everything outside ``safe`` and the unreserved set."""
    return _pct_quote(text, safe=safe, errors="surrogateescape")


def _error(what: str, value: str) -> SipParseError:
    return SipParseError(f"invalid {what}: {value[:200]!r}")


_QUOTE_ESCAPES: Final = {
    **{chr(c): "\\" + chr(c) for c in (*range(0x00, 0x09 + 1), 0x0B, 0x0C, *range(0x0E, 0x1F + 1), 0x7F)},
    "\\": "\\\\",
    '"': '\\"',
}
_QUOTE_TABLE: Final = str.maketrans(_QUOTE_ESCAPES)


def quote(text: str) -> str:
    """Return ``text`` as an RFC 3261 quoted-string (§25.1).

    Backslash, double quote and the control characters that qdtext excludes become
    quoted-pairs.  CR and LF cannot be carried at all (not even as quoted-pairs) and are
    refused with :class:`~sipcallhunt.errors.LocalProtocolError`.
    """
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(f"CR or LF cannot appear in a quoted-string: {text[:100]!r}")
    return '"' + text.translate(_QUOTE_TABLE) + '"'


def unquote(quoted: str) -> str:
    """The text of a quoted-string (with its quotes) with quoted-pairs resolved."""
    return _QUOTED_PAIR_RE.sub(r"\1", quoted[1:-1])


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _valid_ipv6(text: str) -> bool:
    if ":" not in text or not _IPV6_CHARS_RE.fullmatch(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        return bool(_IPV6_RE.fullmatch(host)) and _valid_ipv6(host[1:-1])
    return bool(_IPV4_RE.fullmatch(host) or _HOSTNAME_RE.fullmatch(host))


def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _error(what, text)
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, sep, port_text = text.partition(":")
        rest = ":" + port_text if sep else ""
    port: int | None = None
    if rest:
        # isascii: str.isdigit() is also true of '²' and other digits int() rejects.
        if not rest.startswith(":") or not rest[1:].isdigit() or not rest.isascii() or len(rest) > 6:
            raise _error(what, text)
        port = int(rest[1:])
        if port > 65535:
            raise _error(what, text)
    if not _valid_host(host):
        raise _error(what, text)
    return host, port


def format_params(params: Params) -> str:
    """Render header parameters as ``;name=value;flag`` (values are written as stored)."""
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def _format_uri_params(params: Params) -> str:
    """Render URI parameters, escaping what uri-parameter does not allow unescaped (§19.1.2)."""
    out = []
    for name, value in params:
        out.append(";" + _escape(name, _PARAM_SAFE))
        if value is not None:
            out.append("=" + _escape(value, _PARAM_SAFE))
    return "".join(out)


def get_param(params: Params, name: str) -> str | None:
    """The value of the first parameter called ``name`` (case-insensitive); '' for a flag."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(key.lower() == lname for key, _ in params)


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Return ``params`` with ``name`` replaced (or appended)."""
    lname = name.lower()
    out = [(k, v) for k, v in params if k.lower() != lname]
    out.append((name, value))
    return tuple(out)


def _scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string starting at ``text[start] == '"'``."""
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise _error("quoted string (unterminated)", text)


def split_comma_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quoted strings and ``<>``."""
    if '"' not in value and "<" not in value:
        return [item.strip() for item in value.split(",")]
    items: list[str] = []
    depth = 0
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == '"':
            i = _scan_quoted(value, i)
            continue
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
        i += 1
    items.append(value[start:].strip())
    return items


def _split_semicolons(text: str) -> Iterator[str]:
    """Split at ';' outside quoted strings."""
    if '"' not in text:
        yield from text.split(";")
        return
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i = _scan_quoted(text, i)
            continue
        if ch == ";":
            yield text[start:i]
            start = i + 1
        i += 1
    yield text[start:]


def generic_params(text: str, what: str) -> Params:
    """Parse header parameters ``;a=b;c;d="q s"`` (RFC 3261 generic-param)."""
    text = text.strip()
    if not text:
        return ()
    if not text.startswith(";"):
        raise _error(what, text)
    out: list[tuple[str, str | None]] = []
    for part in list(_split_semicolons(text))[1:]:
        name, eq, value = part.partition("=")
        name = name.strip()
        value = value.strip()
        if not _is_token(name):
            raise _error(what, text)
        if not eq:
            out.append((name, None))
            continue
        if value.startswith('"'):
            if _scan_quoted(value, 0) != len(value):
                raise _error(what, text)
        elif not (_is_token(value) or _valid_host(value) or _valid_ipv6(value)):
            # gen-value = token / host / quoted-string; Via received= may be a bare IPv6 address (§20.42).
            raise _error(what, text)
        out.append((name, value))
    return tuple(out)


@attrs.frozen(kw_only=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI (RFC 3261 §19.1, RFC 3966).

    Other schemes are kept whole in ``opaque`` so that a Request-URI with an unknown scheme can
    be parsed and answered 416.  ``user`` and ``password`` are stored unescaped.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.fullmatch(scheme) or not rest:
            raise _error("URI", text)
        scheme = scheme.lower()
        if _WHITESPACE_RE.search(rest):
            raise _error("URI (contains whitespace)", text)
        if scheme == "tel":
            number, *param_parts = rest.split(";")
            if not _TEL_RE.fullmatch(number):
                raise _error("tel URI", text)
            return cls(scheme="tel", user=number, params=_uri_params(param_parts, text))
        if scheme not in ("sip", "sips"):
            return cls(scheme=scheme, opaque=rest)
        # '@' never appears unescaped after the userinfo, while the user part may hold
        # ';' and '?' (user-unreserved, §25.1): cut the userinfo off first.
        user = password = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user_text, pcolon, password_text = userinfo.partition(":")
            if not _USER_RE.fullmatch(user_text):
                raise _error("URI user", text)
            if pcolon and not _PASSWORD_RE.fullmatch(password_text):
                raise _error("URI password", text)
            user = _unescape(user_text)
            password = _unescape(password_text) if pcolon else None
        rest, qmark, header_text = rest.partition("?")
        headers: list[tuple[str, str]] = []
        if qmark:
            for part in header_text.split("&"):
                if not _URI_HEADER_RE.fullmatch(part):
                    raise _error("URI headers", text)
                hname, _, hvalue = part.partition("=")
                headers.append((_unescape(hname), _unescape(hvalue)))
        hostport, *param_parts = rest.split(";")
        host, port = _split_hostport(hostport, "URI host")
        return cls(
            scheme=scheme,
            user=user,
            password=password,
            host=host,
            port=port,
            params=_uri_params(param_parts, text),
            headers=tuple(headers),
        )

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_uri_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                out.append(":" + _escape(self.password, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_format_uri_params(self.params))
        if self.headers:
            out.append(
                "?" + "&".join(f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for k, v in self.headers)
            )
        return "".join(out)

    # -- convenience -------------------------------------------------------------------------
    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        return attrs.evolve(self, params=set_param(self.params, name, value))

    def without_params(self, *names: str) -> SipUri:
        lnames = {n.lower() for n in names}
        return attrs.evolve(self, params=tuple((k, v) for k, v in self.params if k.lower() not in lnames))

    @property
    def transport(self) -> str:
        """The transport this URI asks for: ``udp`` unless ``;transport=`` says otherwise."""
        value = self.param("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets (what a socket wants)."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def default_port(self) -> int:
        if self.port is not None:
            return self.port
        return 5061 if self.scheme == "sips" or self.transport == "tls" else 5060


def _uri_params(parts: list[str], text: str) -> Params:
    out: list[tuple[str, str | None]] = []
    for part in parts:
        if not _URI_PARAM_RE.fullmatch(part):
            raise _error("URI parameter", text)
        name, eq, value = part.partition("=")
        if "%" in part:
            name, value = _unescape(name), _unescape(value)
        out.append((name, value if eq else None))
    return tuple(out)


_DISPLAY_TOKENS_RE = re.compile(f"[{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*")


@attrs.frozen(kw_only=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters (``tag``...).

    ``uri`` is None only for the wildcard ``Contact: *``.
    """

    uri: SipUri | None
    display_name: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(uri=None)
        display: str | None = None
        if text.startswith('"'):
            end = _scan_quoted(text, 0)
            display = unquote(text[:end])
            rest = text[end:].lstrip()
            if not rest.startswith("<"):
                raise _error("name-addr", text)
        else:
            lt = text.find("<")
            if lt >= 0:
                name_text = text[:lt].strip()
                if name_text:
                    if not _DISPLAY_TOKENS_RE.fullmatch(name_text):
                        raise _error("display name", text)
                    display = re.sub(r"[ \t]+", " ", name_text)
                rest = text[lt:]
            else:
                rest = ""
        if rest:
            gt = rest.find(">")
            if gt < 0:
                raise _error("name-addr (missing '>')", text)
            uri_text = rest[1:gt]
            # LAQUOT = SWS "<" and RAQUOT = ">" SWS: no whitespace inside the brackets (RFC 4475 §3.1.2.14).
            if not uri_text or uri_text[0] in " \t" or uri_text[-1] in " \t":
                raise _error("name-addr (whitespace inside <>)", text)
            uri = SipUri.parse(uri_text)
            params = generic_params(rest[gt + 1 :], "header parameters")
            return cls(uri=uri, display_name=display, params=params)
        # addr-spec form: the URI has no parameters, everything after ';' belongs to the header
        # (RFC 3261 §20.10); it must not contain ',', '?' or ';' of its own (RFC 4475 §3.1.2.13).
        uri_text, semi, param_text = text.partition(";")
        uri_text = uri_text.rstrip(" \t")
        if any(ch in uri_text for ch in " \t,?"):
            raise _error("addr-spec", text)
        uri = SipUri.parse(uri_text)
        return cls(uri=uri, params=generic_params(semi + param_text, "header parameters"))

    def __str__(self) -> str:
        if self.uri is None:
            return "*"
        name = f"{quote(self.display_name)} " if self.display_name is not None else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        return attrs.evolve(self, params=set_param(self.params, "tag", tag))

    def with_param(self, name: str, value: str | None) -> NameAddr:
        return attrs.evolve(self, params=set_param(self.params, name, value))


_VIA_RE = re.compile(
    r"(?P<proto>[^/\s]+)\s*/\s*(?P<version>[^/\s]+)\s*/\s*(?P<transport>[^\s;]+)\s+(?P<sentby>[^;]+?)\s*(?P<params>;.*)?",
    re.DOTALL,
)


@attrs.frozen(kw_only=True)
class Via:
    """One Via header value (RFC 3261 §20.42) with ``rport`` (RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA_RE.fullmatch(text.strip())
        if not m:
            raise _error("Via", text)
        proto, version, transport = m.group("proto"), m.group("version"), m.group("transport")
        if not (_is_token(proto) and _is_token(version) and _is_token(transport)):
            raise _error("Via", text)
        sentby = re.sub(r"\s*:\s*", ":", m.group("sentby"))
        host, port = _split_hostport(sentby, "Via sent-by")
        params = generic_params(m.group("params") or "", "Via parameters")
        for name, value in params:
            if name.lower() in ("branch", "received", "maddr", "ttl") and value in (None, ""):
                raise _error("Via parameter", text)
        return cls(
            transport=transport.upper(),
            host=host,
            port=port,
            params=params,
            protocol=f"{proto.upper()}/{version}",
        )

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        return attrs.evolve(self, params=set_param(self.params, name, value))

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port if self.port is not None else 5060


@attrs.frozen
class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number below 2**31 and the method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii() or not _is_token(parts[1]):
            raise _error("CSeq", text)
        if len(parts[0]) > 10:  # checked before int(): it refuses more than 4300 digits
            raise _error("CSeq (number too large)", text)
        seq = int(parts[0])
        if seq >= 2**31:
            raise _error("CSeq (number too large)", text)
        return cls(seq, parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
