"""The configuration file: TOML in, frozen values out, every problem reported at once.

``load_config(path)`` reads and validates the file and returns a :class:`Config`; it raises
:class:`~sipcallhunt.errors.ConfigError` listing each problem as ``file: key: what is wrong``.
Prompt and music files are checked for existence here; whether their audio is usable is
checked when the media engine loads them at start-up (also before any call is taken).

This module reads the file it is given and nothing else (no clock, no sockets).
"""

from __future__ import annotations

__all__ = [
    "PROMPT_NAMES",
    "AccountConfig",
    "AgentConfig",
    "CallLogConfig",
    "Config",
    "MetricsConfig",
    "HotlineConfig",
    "SipConfig",
    "load_config",
    "parse_config",
]

import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from sipcallhunt.errors import ConfigError, ConfigProblem, SipParseError
from sipcallhunt.sip.uri import SipUri

PROMPT_NAMES: Final = (
    "intro",
    "enter_pin",
    "wrong_pin",
    "pin_locked",
    "goodbye",
    "please_hold",
    "hold_music",
    "whisper",
    "no_agent",
    "forwarding",
    "hotline_name",
)
"""Prompts a hotline can replace with its own audio file (``intro = "our-intro.wav"``)."""

DTMF_KEYS: Final = frozenset("0123456789*#ABCD")
_NUMBER_RE: Final = re.compile(r"\+?[0-9A-Za-z*#._\-]+")


@attrs.frozen(kw_only=True)
class SipConfig:
    listen_host: str = "0.0.0.0"
    listen_port: int = 5060
    public_address: str | None = None
    rtp_port_min: int = 40000
    rtp_port_max: int = 40999
    trusted_peers: tuple[str, ...] | None = None  # None: the accounts' registrar/proxy addresses
    user_agent: str = "sipcallhunt"
    transports: tuple[str, ...] = ("udp", "tcp")
    media_timeout: float = 30.0  # seconds without RTP from a leg before the call ends
    keepalive_interval: float = 30.0  # OPTIONS ping to each registrar; 0 turns it off


@attrs.frozen(kw_only=True)
class AccountConfig:
    name: str
    registrar: SipUri
    username: str
    password: str
    auth_username: str | None = None
    domain: str | None = None  # default: the registrar's host
    outbound_proxy: SipUri | None = None
    expires: int = 300
    reregister_interval: float = 25.0  # refresh the binding at least this often (0: as expiry requires)
    register: bool = True
    display_name: str | None = None

    @property
    def aor_domain(self) -> str:
        return self.domain or self.registrar.host


@attrs.frozen(kw_only=True)
class AgentConfig:
    name: str
    number: str
    ring_timeout: float = 20.0


@attrs.frozen(kw_only=True)
class HotlineConfig:
    name: str
    account: str
    language: str = "en"
    pins: tuple[str, ...] = ()
    pin_attempts: int = 3
    pin_timeout: float = 10.0
    pin_lockout_failures: int = 3  # failed calls from one number before it is locked out
    pin_lockout_time: float = 900.0
    pin_rate_limit: int = 10  # failed PIN calls per minute from all numbers together; 0: no limit
    pin_type_ahead: bool = True  # keys during the intro start the PIN entry
    intro_timeout: float = 60.0
    rounds: int = 2
    confirm_key: str = "1"
    decline_key: str = "2"
    confirm_timeout: float = 10.0
    on_no_agent: str = "announce"  # or "forward:<number>"
    caller_id: str = "caller"  # or "hotline"
    inband_dtmf: bool = True  # run the in-band detector where digits are expected
    max_call_time: float = 4 * 3600.0
    prompts: Mapping[str, Path] = attrs.field(factory=dict)  # replaced prompts, by PROMPT_NAMES
    agents: tuple[AgentConfig, ...] = ()

    @property
    def forward_number(self) -> str | None:
        if self.on_no_agent.startswith("forward:"):
            return self.on_no_agent.removeprefix("forward:")
        return None


@attrs.frozen(kw_only=True)
class CallLogConfig:
    path: Path = Path("calls.sqlite3")
    node: str | None = None  # this daemon's name in a shared call log; None: the host name

    @property
    def node_name(self) -> str:
        return self.node or socket.gethostname()


@attrs.frozen(kw_only=True)
class MetricsConfig:
    """``[metrics]``: the HTTP endpoint for Prometheus (``GET /metrics``); off unless ``listen`` is set."""

    listen_host: str | None = None
    listen_port: int = 9464


@attrs.frozen(kw_only=True)
class Config:
    path: Path
    sip: SipConfig
    accounts: tuple[AccountConfig, ...]
    hotlines: tuple[HotlineConfig, ...] = ()
    calllog: CallLogConfig = CallLogConfig()
    log_level: str = "INFO"
    metrics: MetricsConfig = MetricsConfig()

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    def trusted_hosts(self) -> frozenset[str]:
        """Addresses allowed to start calls: explicit list, or every account's registrar and proxy."""
        if self.sip.trusted_peers is not None:
            return frozenset(self.sip.trusted_peers)
        hosts = set()
        for account in self.accounts:
            hosts.add(account.registrar.host_bare)
            if account.outbound_proxy is not None:
                hosts.add(account.outbound_proxy.host_bare)
        return frozenset(hosts)


T = TypeVar("T")


class _Reader:
    """Walks the TOML tables, collecting problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, text))

    def table(self, data: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        for name in data:
            if name not in allowed:
                hint = _closest(name, allowed)
                self.problem(
                    f"{key}.{name}" if key else name, "unknown key" + (f" (did you mean {hint!r}?)" if hint else "")
                )

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        full = f"{key}.{name}" if key else name
        if name not in data:
            if required:
                self.problem(full, "missing (required)")
            return default
        value = data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(full, f"expected {_kind_name(kinds)}, got a boolean")
            return default
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            self.problem(full, f"expected {_kind_name(kinds)}, got {type(value).__name__} {value!r}")
            return default
        if check is not None:
            message = check(value)
            if message:
                self.problem(full, message)
                return default
        return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _closest(name: str, allowed: set[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.7)
    return matches[0] if matches else None


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be a port number 1-65535"


def _hostport(text: str, default_port: int | None = 5060) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) parsed; without a port, ``default_port`` (None: a port is required)."""
    host, port = text, "" if default_port is None else str(default_port)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host or _ip_or_host(host) is not None:
        return None
    return host, int(port)


def _dialable(number: str) -> str | None:
    if number.startswith(("sip:", "sips:", "tel:")):
        try:
            uri = SipUri.parse(number)
        except SipParseError as exc:
            return f"not a valid URI: {exc}"
        if uri.opaque is not None:
            return "unsupported URI scheme"
        return None
    if not _NUMBER_RE.fullmatch(number):
        return f"{number!r} is not a dialable number or extension (digits, letters, + * # . - _ only)"
    return None


def _ip_or_host(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+", text):
            return f"{text!r} is not an IP address or host name"
    return None


def parse_config(text: str, path: Path) -> Config:
    """Validate TOML ``text`` read from ``path``; relative file names are relative to the file."""
    file = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(ConfigProblem(file, "(syntax)", f"not valid TOML: {exc}")) from None
    r = _Reader(file)
    base = path.parent
    r.table(data, "", {"sip", "account", "hotline", "calllog", "logging", "metrics"})

    # [sip]
    sip_data = r.get(data, "", "sip", dict, {})
    r.table(
        sip_data,
        "sip",
        {
            "listen",
            "public_address",
            "rtp_ports",
            "trusted_peers",
            "user_agent",
            "transports",
            "media_timeout",
            "keepalive_interval",
        },
    )
    listen_host, listen_port = "0.0.0.0", 5060
    listen = r.get(sip_data, "sip", "listen", str, "0.0.0.0:5060")
    parsed = _hostport(listen)
    if parsed is None:
        r.problem("sip.listen", f"{listen!r} is not host:port")
    else:
        listen_host, listen_port = parsed
    public = r.get(sip_data, "sip", "public_address", str, None, check=_ip_or_host)
    rtp_min, rtp_max = 40000, 40999
    rtp = r.get(sip_data, "sip", "rtp_ports", list, None)
    if rtp is not None:
        if len(rtp) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in rtp):
            r.problem("sip.rtp_ports", "expected [first, last], two port numbers")
        elif not (1024 <= rtp[0] < rtp[1] <= 65535) or rtp[1] - rtp[0] < 3:
            r.problem("sip.rtp_ports", "expected 1024 <= first < last <= 65535 with room for two calls")
        else:
            rtp_min, rtp_max = rtp
    trusted = r.get(sip_data, "sip", "trusted_peers", list, None)
    trusted_peers: tuple[str, ...] | None = None
    if trusted is not None:
        good = []
        for i, peer in enumerate(trusted):
            message = _ip_or_host(peer) if isinstance(peer, str) else "expected a string"
            if message:
                r.problem(f"sip.trusted_peers[{i}]", message)
            else:
                good.append(peer)
        trusted_peers = tuple(good)
    transports = r.get(sip_data, "sip", "transports", list, ["udp", "tcp"])
    bad = [t for t in transports if t not in ("udp", "tcp")]
    if bad or not transports:
        r.problem("sip.transports", 'expected a non-empty list of "udp" and "tcp"')
        transports = ["udp", "tcp"]
    sip = SipConfig(
        listen_host=listen_host,
        listen_port=listen_port,
        public_address=public,
        rtp_port_min=rtp_min,
        rtp_port_max=rtp_max,
        trusted_peers=trusted_peers,
        user_agent=r.get(sip_data, "sip", "user_agent", str, "sipcallhunt"),
        transports=tuple(transports),
        media_timeout=r.get(sip_data, "sip", "media_timeout", float, 30.0, check=_positive),
        keepalive_interval=r.get(
            sip_data,
            "sip",
            "keepalive_interval",
            float,
            30.0,
            check=lambda v: None if v >= 0 else "must be 0 (off) or more",
        ),
    )

    # [[account]]
    accounts: list[AccountConfig] = []
    account_list = r.get(data, "", "account", list, [])
    if not account_list:
        r.problem("account", "at least one [[account]] is required")
    for index, item in enumerate(account_list):
        key = f"account[{index}]"
        if not isinstance(item, dict):
            r.problem(key, "expected a table")
            continue
        r.table(
            item,
            key,
            {
                "name",
                "registrar",
                "username",
                "password",
                "auth_username",
                "domain",
                "outbound_proxy",
                "expires",
                "reregister_interval",
                "register",
                "display_name",
            },
        )
        name = r.get(item, key, "name", str, f"account{index + 1}", required=True)
        registrar = _uri_field(r, item, key, "registrar", required=True)
        proxy = _uri_field(r, item, key, "outbound_proxy", required=False)
        username = r.get(item, key, "username", str, "", required=True)
        password = r.get(item, key, "password", str, "", required=True)
        if registrar is None:
            continue
        if any(a.name == name for a in accounts):
            r.problem(f"{key}.name", f"duplicate account name {name!r}")
        accounts.append(
            AccountConfig(
                name=name,
                registrar=registrar,
                username=username,
                password=password,
                auth_username=r.get(item, key, "auth_username", str, None),
                domain=r.get(item, key, "domain", str, None),
                outbound_proxy=proxy,
                expires=r.get(
                    item,
                    key,
                    "expires",
                    int,
                    300,
                    check=lambda v: None if 10 <= v <= 86400 else "must be 10-86400 seconds",
                ),
                reregister_interval=r.get(
                    item,
                    key,
                    "reregister_interval",
                    float,
                    25.0,
                    check=lambda v: None if v == 0 or 5 <= v <= 86400 else "must be 0 (off) or 5-86400 seconds",
                ),
                register=r.get(item, key, "register", bool, True),
                display_name=r.get(item, key, "display_name", str, None),
            )
        )

    # [[hotline]]
    hotlines: list[HotlineConfig] = []
    for index, item in enumerate(r.get(data, "", "hotline", list, [])):
        key = f"hotline[{index}]"
        if not isinstance(item, dict):
            r.problem(key, "expected a table")
            continue
        hotline = _hotline(r, item, key, base, accounts)
        if hotline is None:
            continue
        if any(h.name == hotline.name for h in hotlines):
            r.problem(f"{key}.name", f"duplicate hotline name {hotline.name!r}")
        if any(h.account == hotline.account for h in hotlines):
            r.problem(f"{key}.account", f"account {hotline.account!r} already answers another hotline")
        hotlines.append(hotline)

    # [calllog]
    calllog_data = r.get(data, "", "calllog", dict, {})
    r.table(calllog_data, "calllog", {"path", "node"})
    calllog = CallLogConfig(
        path=_resolve(base, r.get(calllog_data, "calllog", "path", str, "calls.sqlite3")),
        node=r.get(
            calllog_data,
            "calllog",
            "node",
            str,
            None,
            check=lambda v: None if 0 < len(v) <= 64 and v.isprintable() else "expected 1-64 printable characters",
        ),
    )

    # [metrics]
    metrics_data = r.get(data, "", "metrics", dict, {})
    r.table(metrics_data, "metrics", {"listen"})
    metrics = MetricsConfig()
    metrics_listen = r.get(metrics_data, "metrics", "listen", str, None)
    if metrics_listen is not None:
        parsed_metrics = _hostport(metrics_listen, default_port=None)
        if parsed_metrics is None:
            r.problem("metrics.listen", f'{metrics_listen!r} is not host:port (e.g. "127.0.0.1:9464")')
        else:
            metrics = MetricsConfig(listen_host=parsed_metrics[0], listen_port=parsed_metrics[1])

    # [logging]
    logging_data = r.get(data, "", "logging", dict, {})
    r.table(logging_data, "logging", {"level"})
    level = r.get(
        logging_data,
        "logging",
        "level",
        str,
        "INFO",
        check=lambda v: (
            None
            if v.upper() in ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
            else "expected TRACE, DEBUG, INFO, WARNING or ERROR"
        ),
    ).upper()

    if r.problems:
        raise ConfigError(r.problems)
    return Config(
        path=path,
        sip=sip,
        accounts=tuple(accounts),
        hotlines=tuple(hotlines),
        calllog=calllog,
        log_level=level,
        metrics=metrics,
    )


def _resolve(base: Path, name: str) -> Path:
    p = Path(name).expanduser()
    return p if p.is_absolute() else base / p


def _uri_field(r: _Reader, item: Mapping[str, Any], key: str, name: str, *, required: bool) -> SipUri | None:
    text = r.get(item, key, name, str, None, required=required)
    if text is None:
        return None
    if not text.startswith(("sip:", "sips:")):
        text = "sip:" + text
    try:
        uri = SipUri.parse(text)
    except SipParseError as exc:
        r.problem(f"{key}.{name}", f"not a SIP URI: {exc}")
        return None
    if uri.opaque is not None or uri.scheme == "tel":
        r.problem(f"{key}.{name}", "expected a sip: URI")
        return None
    if uri.transport not in ("udp", "tcp"):
        r.problem(f"{key}.{name}", f"transport {uri.transport!r} is not supported (udp or tcp)")
        return None
    return uri


def _key(value: str) -> str | None:
    return None if len(value) == 1 and value in DTMF_KEYS else "must be one DTMF key: 0-9, *, #, A-D"


def _hotline(
    r: _Reader, item: Mapping[str, Any], key: str, base: Path, accounts: list[AccountConfig]
) -> HotlineConfig | None:
    allowed = {
        "name",
        "account",
        "language",
        "pins",
        "pin_attempts",
        "pin_timeout",
        "pin_lockout_failures",
        "pin_lockout_time",
        "pin_rate_limit",
        "pin_type_ahead",
        "intro_timeout",
        "rounds",
        "confirm_key",
        "decline_key",
        "confirm_timeout",
        "on_no_agent",
        "caller_id",
        "inband_dtmf",
        "max_call_time",
        "agent",
        *PROMPT_NAMES,
    }
    r.table(item, key, allowed)
    name = r.get(item, key, "name", str, "", required=True)
    account = r.get(item, key, "account", str, "", required=True)
    if account and not any(a.name == account for a in accounts):
        known = ", ".join(repr(a.name) for a in accounts) or "none"
        r.problem(f"{key}.account", f"no [[account]] named {account!r} (known: {known})")
    pins_raw = r.get(item, key, "pins", list, [])
    pins: list[str] = []
    for i, pin in enumerate(pins_raw):
        if isinstance(pin, int) and not isinstance(pin, bool):
            r.problem(f"{key}.pins[{i}]", 'write PINs as strings ("0815"), or leading zeros are lost')
        elif not isinstance(pin, str) or not pin or not all(ch in "0123456789*ABCD" for ch in pin):
            r.problem(f"{key}.pins[{i}]", "a PIN is a non-empty string of the keys 0-9, *, A-D ('#' ends the entry)")
        elif not 3 <= len(pin) <= 16:
            r.problem(f"{key}.pins[{i}]", "a PIN has 3 to 16 digits")
        else:
            pins.append(pin)
    confirm_key = r.get(item, key, "confirm_key", str, "1", check=_key)
    decline_key = r.get(item, key, "decline_key", str, "2", check=_key)
    if confirm_key == decline_key:
        r.problem(f"{key}.decline_key", "must differ from confirm_key")
    on_no_agent = r.get(item, key, "on_no_agent", str, "announce")
    if on_no_agent != "announce":
        if not on_no_agent.startswith("forward:"):
            r.problem(f"{key}.on_no_agent", 'expected "announce" or "forward:<number>"')
            on_no_agent = "announce"
        else:
            message = _dialable(on_no_agent.removeprefix("forward:"))
            if message:
                r.problem(f"{key}.on_no_agent", message)
    prompts: dict[str, Path] = {}
    for prompt in PROMPT_NAMES:
        file = r.get(item, key, prompt, str, None)
        if file is None:
            continue
        path = _resolve(base, file)
        if path.is_dir():
            r.problem(f"{key}.{prompt}", f"{str(path)!r} is a folder, not an audio file")
        elif not path.is_file():
            r.problem(f"{key}.{prompt}", f"audio file {str(path)!r} does not exist")
        else:
            prompts[prompt] = path
    agents: list[AgentConfig] = []
    for index, agent in enumerate(r.get(item, key, "agent", list, [])):
        akey = f"{key}.agent[{index}]"
        if not isinstance(agent, dict):
            r.problem(akey, "expected a table")
            continue
        r.table(agent, akey, {"name", "number", "ring_timeout"})
        number = r.get(agent, akey, "number", str, "", required=True, check=_dialable)
        agents.append(
            AgentConfig(
                name=r.get(agent, akey, "name", str, number or f"agent{index + 1}"),
                number=number,
                ring_timeout=r.get(agent, akey, "ring_timeout", float, 20.0, check=_positive),
            )
        )
    if not agents:
        r.problem(f"{key}.agent", "at least one [[hotline.agent]] is required")
    return HotlineConfig(
        name=name,
        account=account,
        language=r.get(
            item, key, "language", str, "en", check=lambda v: None if v in ("en", "de") else 'expected "en" or "de"'
        ),
        pins=tuple(pins),
        pin_attempts=r.get(item, key, "pin_attempts", int, 3, check=lambda v: None if 1 <= v <= 10 else "must be 1-10"),
        pin_timeout=r.get(item, key, "pin_timeout", float, 10.0, check=_positive),
        pin_lockout_failures=r.get(
            item, key, "pin_lockout_failures", int, 3, check=lambda v: None if v >= 1 else "must be 1 or more"
        ),
        pin_lockout_time=r.get(item, key, "pin_lockout_time", float, 900.0, check=_positive),
        pin_rate_limit=r.get(
            item, key, "pin_rate_limit", int, 10, check=lambda v: None if 0 <= v <= 10_000 else "must be 0-10000"
        ),
        pin_type_ahead=r.get(item, key, "pin_type_ahead", bool, True),
        intro_timeout=r.get(item, key, "intro_timeout", float, 60.0, check=_positive),
        rounds=r.get(item, key, "rounds", int, 2, check=lambda v: None if 1 <= v <= 20 else "must be 1-20"),
        confirm_key=confirm_key,
        decline_key=decline_key,
        confirm_timeout=r.get(item, key, "confirm_timeout", float, 10.0, check=_positive),
        on_no_agent=on_no_agent,
        caller_id=r.get(
            item,
            key,
            "caller_id",
            str,
            "caller",
            check=lambda v: None if v in ("caller", "hotline") else 'expected "caller" or "hotline"',
        ),
        inband_dtmf=r.get(item, key, "inband_dtmf", bool, True),
        max_call_time=r.get(item, key, "max_call_time", float, 4 * 3600.0, check=_positive),
        prompts=prompts,
        agents=tuple(agents),
    )


def file_warnings(path: Path) -> list[str]:
    """What is unsafe about the configuration file itself (it holds SIP passwords and PINs)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & 0o004:
        return [
            f"{path}: readable by every user of this machine (mode {mode & 0o777:04o}), "
            "yet it holds SIP passwords and PINs: chmod 640 (owner root, group of the service user)"
        ]
    return []


def load_config(path: str | Path) -> Config:
    """Read and validate the configuration file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(ConfigProblem(str(path), "(file)", f"cannot read: {exc.strerror or exc}")) from None
    except UnicodeDecodeError:
        raise ConfigError(ConfigProblem(str(path), "(file)", "not UTF-8 text")) from None
    return parse_config(text, path)
