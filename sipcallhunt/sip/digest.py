"""HTTP digest authentication as a SIP client (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760).

Theory of operation
-------------------
A 401 or 407 carries one or more challenges in ``WWW-Authenticate`` / ``Proxy-Authenticate``
(several header fields, or several challenges in one field).  :func:`parse_challenges` reads
them; :func:`choose_challenge` keeps, per realm, the strongest one we support (SHA-512-256,
SHA-256, then MD5; the ``-sess`` variants after their plain forms).  :func:`authorization`
computes the answer for one request: the ``response`` over the Request-URI and method
(``qop=auth``, or ``auth-int`` over the body when only that is offered), with ``nc`` and
``cnonce`` supplied by the caller.

:class:`DigestSession` is the small piece of state a user agent keeps per account: the last
challenge of every realm and how many times its nonce was used, so that later requests
(re-REGISTER, BYE...) carry credentials pre-emptively with ``nc`` counting up.  The client
nonce comes from an injected source (the shell passes ``secrets.token_hex``): this module
reads no randomness and no clock of its own.

Unparseable challenge headers raise :class:`~sipcallhunt.errors.SipParseError`.
"""

from __future__ import annotations

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "ChallengeOutcome",
    "DigestSession",
    "authorization",
    "challenges_of",
    "choose_challenge",
    "digest_response",
    "parse_challenges",
]

import enum
import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from sipcallhunt.errors import SipParseError
from sipcallhunt.sip.message import SipRequest, SipResponse
from sipcallhunt.sip.uri import quote, unquote


def _hasher(name: str) -> Callable[[bytes], str]:
    def digest(data: bytes) -> str:
        return hashlib.new(name, data).hexdigest()

    return digest


def _available(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


_HASHES: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": _hasher("md5"),
    "SHA-256": _hasher("sha256"),
    **({"SHA-512-256": _hasher("sha512_256")} if _available("sha512_256") else {}),
}

ALGORITHMS: Final[tuple[str, ...]] = tuple(
    name
    for name in ("SHA-512-256", "SHA-512-256-sess", "SHA-256", "SHA-256-sess", "MD5", "MD5-sess")
    if name.removesuffix("-sess") in _HASHES
)
"""Supported algorithms (RFC 7616 §6.1), strongest first; the order :func:`choose_challenge` prefers."""

_TOKEN_RE: Final = re.compile(r"[a-zA-Z0-9\-.!%*_+`'~]+")
_TOKEN68_RE: Final = re.compile(r"[a-zA-Z0-9\-._~+/]+=*")


@attrs.frozen(kw_only=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` or ``Proxy-Authenticate`` field (RFC 7616 §3.3)."""

    scheme: str
    realm: str = ""
    nonce: str = ""
    algorithm: str = "MD5"
    """As written by the server, canonical case for the known ones (``MD5``, ``SHA-256-sess``...)."""
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    domain: str | None = None
    proxy: bool = False
    """True for ``Proxy-Authenticate`` (answered with ``Proxy-Authorization``)."""
    params: tuple[tuple[str, str], ...] = ()
    """Every parameter as read (names lower-cased, values unquoted)."""

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def supported(self) -> bool:
        """A digest challenge we can answer: known algorithm, nonce present, usable qop (or none)."""
        if not self.is_digest or not self.nonce or self.algorithm not in ALGORITHMS:
            return False
        if self.qop and not ({"auth", "auth-int"} & set(self.qop)):
            return False
        # RFC 2069 compatibility (no qop) is defined for MD5 only.
        return bool(self.qop) or self.algorithm == "MD5"

    @property
    def header_name(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


class ChallengeOutcome(enum.Enum):
    """What :meth:`DigestSession.on_challenge` concluded from a 401/407."""

    RETRY = "retry"
    """New challenges were recorded: send the request again (it will carry credentials)."""
    STALE = "stale"
    """Our credentials were right but the nonce expired (``stale=true``): retry, not a failure."""
    REJECTED = "rejected"
    """The server refused the credentials we sent for that nonce: a real failure."""
    UNSUPPORTED = "unsupported"
    """No challenge we can answer (unknown scheme or algorithm)."""


_CANONICAL_ALGORITHMS: Final = {name.lower(): name for name in ALGORITHMS}


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _read_token(text: str, i: int) -> tuple[str, int]:
    m = _TOKEN_RE.match(text, i)
    if not m:
        raise SipParseError(f"invalid authentication challenge near {text[i : i + 40]!r}")
    return m.group(), m.end()


def _read_value(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] == '"':
        j = i + 1
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                return unquote(text[i : j + 1]), j + 1
            j += 1
        raise SipParseError(f"unterminated quoted string in challenge: {text[i : i + 60]!r}")
    return _read_token(text, i)


def _raw_challenges(value: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Split a header value into (scheme, params) pairs (RFC 7235 §4.1 challenge list)."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    i = _skip_ws(value, 0)
    n = len(value)
    while i < n:
        if value[i] == ",":  # empty list elements are allowed (RFC 7230 §7)
            i = _skip_ws(value, i + 1)
            continue
        scheme, i = _read_token(value, i)
        params: list[tuple[str, str]] = []
        out.append((scheme, params))
        i = _skip_ws(value, i)
        expect_param = True
        while i < n:
            if value[i] == ",":
                i = _skip_ws(value, i + 1)
                expect_param = True
                continue
            if not expect_param:
                raise SipParseError(f"expected ',' in challenge near {value[i : i + 40]!r}")
            if not params and scheme.lower() != "digest" and (t68 := _TOKEN68_RE.match(value, i)):
                after = _skip_ws(value, t68.end())
                if (after == n or value[after] == ",") and not _TOKEN_RE.fullmatch(t68.group()):
                    params.append(("token68", t68.group()))  # e.g. Basic/Negotiate credentials
                    i = after
                    expect_param = False
                    continue
            # A token followed by '=' is a parameter; a token followed by space+token is the next scheme.
            m = _TOKEN_RE.match(value, i)
            if m is None:
                raise SipParseError(f"invalid authentication challenge near {value[i : i + 40]!r}")
            j = _skip_ws(value, m.end())
            if j < n and value[j] == "=":
                name = m.group().lower()
                param_value, i = _read_value(value, _skip_ws(value, j + 1))
                params.append((name, param_value))
                i = _skip_ws(value, i)
                expect_param = False
                continue
            break  # the next challenge's scheme
    if not out:
        raise SipParseError("empty authentication challenge")
    return out


def parse_challenges(value: str, *, proxy: bool = False) -> list[Challenge]:
    """Every challenge in one ``WWW-Authenticate`` (or, with ``proxy=True``, ``Proxy-Authenticate``) value."""
    challenges = []
    for scheme, params in _raw_challenges(value):
        get = dict(params).get
        algorithm = get("algorithm", "MD5")
        qop = tuple(q.strip().lower() for q in get("qop", "").split(",") if q.strip())
        challenges.append(
            Challenge(
                scheme=scheme,
                realm=get("realm", ""),
                nonce=get("nonce", ""),
                algorithm=_CANONICAL_ALGORITHMS.get(algorithm.lower(), algorithm),
                qop=qop,
                opaque=get("opaque"),
                stale=get("stale", "").lower() == "true",
                userhash=get("userhash", "").lower() == "true",
                domain=get("domain"),
                proxy=proxy,
                params=tuple(params),
            )
        )
    return challenges


def challenges_of(response: SipResponse) -> list[Challenge]:
    """All challenges of a 401/407, from every WWW-Authenticate and Proxy-Authenticate field."""
    out: list[Challenge] = []
    for value in response.headers.get_all("WWW-Authenticate"):
        out.extend(parse_challenges(value))
    for value in response.headers.get_all("Proxy-Authenticate"):
        out.extend(parse_challenges(value, proxy=True))
    return out


def choose_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The strongest supported challenge (first in ``ALGORITHMS``; the server's order breaks ties)."""
    best: Challenge | None = None
    for challenge in challenges:
        if not challenge.supported:
            continue
        if best is None or ALGORITHMS.index(challenge.algorithm) < ALGORITHMS.index(best.algorithm):
            best = challenge
    return best


def _h(algorithm: str, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return _HASHES[algorithm.removesuffix("-sess")](data)


def _qop_for(challenge: Challenge) -> str | None:
    if not challenge.qop:
        return None
    return "auth" if "auth" in challenge.qop else "auth-int"


def digest_response(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    body: bytes = b"",
    cnonce: str,
    nc: int,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2 when the server offered no qop)."""
    algorithm = challenge.algorithm
    ha1 = _h(algorithm, f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _h(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    qop = _qop_for(challenge)
    a2 = f"{method}:{uri}" if qop != "auth-int" else f"{method}:{uri}:{_h(algorithm, body)}"
    ha2 = _h(algorithm, a2)
    if qop is None:
        return _h(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")
    return _h(algorithm, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    body: bytes = b"",
    cnonce: str,
    nc: int = 1,
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge`` for one request.

    ``uri`` is the Request-URI of the request being authorised (RFC 3261 §22.4).
    """
    if not challenge.supported:
        raise ValueError(f"cannot answer a {challenge.scheme} challenge with algorithm {challenge.algorithm}")
    if not 0 < nc < 2**32:
        raise ValueError(f"nc out of range: {nc}")
    response = digest_response(
        challenge, username=username, password=password, method=method, uri=uri, body=body, cnonce=cnonce, nc=nc
    )
    user = _h(challenge.algorithm, f"{username}:{challenge.realm}") if challenge.userhash else username
    parts = [
        f"username={quote(user)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    qop = _qop_for(challenge)
    if qop is not None:
        parts += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nc:08x}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


@attrs.define
class _Realm:
    challenge: Challenge
    nc: int = 0
    answered: bool = False
    """A request carrying credentials for this nonce was sent."""


@attrs.define(eq=False)
class DigestSession:
    """Credentials of one account and the challenges seen, per realm.

    ``cnonce_source`` returns a fresh client nonce for every authorised request; ``realm``
    (when set) limits the realms the password is given to.
    """

    username: str
    password: str
    cnonce_source: Callable[[], str]
    realm: str | None = None
    _realms: dict[tuple[bool, str], _Realm] = attrs.field(factory=dict)

    def on_challenge(self, response: SipResponse) -> ChallengeOutcome:
        """Record the challenges of a 401/407 and say whether a retry makes sense."""
        by_realm: dict[tuple[bool, str], list[Challenge]] = {}
        for challenge in challenges_of(response):
            if self.realm is None or challenge.realm == self.realm:
                by_realm.setdefault((challenge.proxy, challenge.realm), []).append(challenge)
        outcome = ChallengeOutcome.UNSUPPORTED
        for key, candidates in by_realm.items():
            best = choose_challenge(candidates)
            if best is None:
                continue
            previous = self._realms.get(key)
            self._realms[key] = _Realm(best)
            if previous is not None and previous.answered and not best.stale:
                # RFC 3261 §22.2: a second challenge for credentials we just sent means they are wrong.
                return ChallengeOutcome.REJECTED
            if previous is not None and previous.answered and best.stale:
                outcome = ChallengeOutcome.STALE
            elif outcome is ChallengeOutcome.UNSUPPORTED:
                outcome = ChallengeOutcome.RETRY
        return outcome

    def header_values(self, method: str, uri: str, body: bytes = b"") -> list[tuple[str, str]]:
        """``(header name, value)`` for every realm seen, each with its nonce count incremented."""
        out = []
        for state in self._realms.values():
            state.nc += 1
            state.answered = True
            value = authorization(
                state.challenge,
                username=self.username,
                password=self.password,
                method=method,
                uri=uri,
                body=body,
                cnonce=self.cnonce_source(),
                nc=state.nc,
            )
            out.append((state.challenge.header_name, value))
        return out

    def authorize(self, request: SipRequest) -> SipRequest:
        """``request`` with Authorization/Proxy-Authorization for every known realm (pre-emptive)."""
        pairs = self.header_values(request.method, request.uri, request.body)
        if not pairs:
            return request
        headers = request.headers.without("Authorization", "Proxy-Authorization")
        for name, value in pairs:
            headers = headers.appended(name, value)
        return attrs.evolve(request, headers=headers)

    def forget(self) -> None:
        """Drop every recorded challenge (e.g. after the registration was removed)."""
        self._realms.clear()

    @property
    def realms(self) -> list[str]:
        return [realm for (_, realm) in self._realms]
