"""The daemon: configuration in, a running hotline out, until SIGTERM.

:class:`Daemon` builds everything from a :class:`~sipcallhunt.config.Config` — prompts (loaded and
encoded once, before any call is taken), the call log, the media engine, the SIP user agent and
the hotline service — and tears it down in the right order: refuse new calls, end running calls
with BYE, flush the call log, withdraw the registrations, close the sockets.

SIGTERM/SIGINT stop it; SIGHUP reloads the configuration file: hotline settings, agents and
prompts apply to new calls at once, running calls keep theirs; a broken new file is reported and
the old configuration stays in force.
"""

from __future__ import annotations

__all__ = ["Daemon", "load_prompt_sets", "run"]

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from sipcallhunt.calllog import AsyncCallLog, CallLog, open_call_log
from sipcallhunt.config import Config, HotlineConfig, file_warnings, load_config
from sipcallhunt.errors import AudioFileError, CallLogError, ConfigError, ConfigProblem, SipCallHuntError
from sipcallhunt.media.prompt import PromptCache
from sipcallhunt.prompts import BUNDLED_NAMES, bundled_music, bundled_prompt
from sipcallhunt.runtime.hotline import HotlineService, PromptSet
from sipcallhunt.runtime.media import MediaEngine
from sipcallhunt.runtime.metrics import MetricsServer, daemon_families
from sipcallhunt.runtime.sip import SipEndpoint, is_ip
from sipcallhunt.sip.registration import RegState
from sipcallhunt.sip.useragent import UaSettings, UserAgent

log = logging.getLogger("sipcallhunt.daemon")

UNREGISTER_TIMEOUT = 4.0
CALL_END_TIMEOUT = 5.0
INTERRUPTED = "interrupted: the daemon stopped during the call (closed when it started again)"
"""The end reason of calls a killed daemon left without an end."""


def _address_towards(host: str) -> str:
    """The local address the kernel would use to reach ``host`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 5060))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


async def resolve_trusted(hosts: frozenset[str]) -> frozenset[str]:
    """The trusted peers with every address of each host name added.

    An INVITE is trusted by its source address, compared as text: a name in the set (a registrar
    given as ``sip:pbx.example.org``) would match no packet and every call would get 403.  Names
    are resolved once, at start; one that does not resolve is logged and matches nothing.
    """
    loop = asyncio.get_running_loop()
    addresses = set(hosts)
    for host in sorted(hosts):
        if is_ip(host):
            continue
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("trusted peer %s does not resolve (%s): INVITEs from it will get 403", host, exc)
            continue
        found = sorted({str(info[4][0]) for info in infos})
        log.info("trusted peer %s is %s", host, ", ".join(found))
        addresses.update(found)
    return frozenset(addresses)


def advertised_host(config: Config) -> str:
    """What we put in Via, Contact and SDP: the public address, the listen address, or the route's."""
    if config.sip.public_address:
        return config.sip.public_address
    if config.sip.listen_host not in ("0.0.0.0", "::"):
        return config.sip.listen_host
    return _address_towards(config.accounts[0].registrar.host_bare)


def _synthesize_name(name: str, language: str, folder: Path) -> Path | None:
    """Speak the hotline's name with espeak-ng, if it is installed (for the agent's whisper)."""
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    if espeak is None:
        return None
    target = folder / f"hotline_name_{abs(hash((name, language)))}.wav"
    try:
        subprocess.run(
            [espeak, "-v", language, "-s", "150", "-w", str(target), name],
            check=True,
            timeout=20,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("could not speak the hotline name %r with espeak-ng: %s", name, exc)
        return None
    return target


def load_prompt_sets(config: Config, *, synth_folder: Path | None = None) -> dict[str, PromptSet]:
    """Load (and encode) every prompt of every hotline; a bad file raises ConfigError naming its key."""
    cache = PromptCache()
    problems: list[ConfigProblem] = []
    sets: dict[str, PromptSet] = {}
    for index, hotline in enumerate(config.hotlines):
        prompts = {}
        files: dict[str, Path] = {name: bundled_prompt(hotline.language, name) for name in BUNDLED_NAMES}
        files["hold_music"] = bundled_music()
        files.update(hotline.prompts)
        if "hotline_name" not in files and synth_folder is not None:
            spoken = _synthesize_name(hotline.name, hotline.language, synth_folder)
            if spoken is not None:
                files["hotline_name"] = spoken
        for name, path in files.items():
            try:
                prompts[name] = cache.get(path, name=name)
            except AudioFileError as exc:
                key = f"hotline[{index}].{name}" if name in hotline.prompts else f"(bundled prompt {name})"
                problems.append(ConfigProblem(str(config.path), key, str(exc)))
        sets[hotline.name] = PromptSet(prompts)
    if problems:
        raise ConfigError(problems)
    return sets


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopped = asyncio.Event()
        self.host = advertised_host(config)
        self._synth_dir = tempfile.TemporaryDirectory(prefix="sipcallhunt-")
        self.engine: MediaEngine | None = None
        self.calllog: AsyncCallLog | None = None
        self.ua: UserAgent | None = None
        self.sip: SipEndpoint | None = None
        self.service: HotlineService | None = None
        self.metrics: MetricsServer | None = None

    async def start(self) -> None:
        config = self.config
        prompts = load_prompt_sets(config, synth_folder=Path(self._synth_dir.name))
        try:
            store = open_call_log(config.calllog.path)
        except CallLogError as exc:
            raise ConfigError(ConfigProblem(str(config.path), "calllog.path", str(exc))) from None
        self._close_interrupted_calls(store, config.calllog.node_name)
        self.calllog = AsyncCallLog(store)
        bind_host = config.sip.listen_host
        self.engine = MediaEngine(
            bind_host,
            self.host,
            config.sip.rtp_port_min,
            config.sip.rtp_port_max,
            config.sip.media_timeout,
            self._on_media_event,
        )
        await self.engine.start()
        self.service = HotlineService(
            hotlines=config.hotlines,
            accounts=config.accounts,
            prompts=prompts,
            engine=self.engine,
            calllog=self.calllog,
            media_host=self.host,
            node=config.calllog.node_name,
        )
        self.ua = UserAgent(
            UaSettings(
                host=self.host,
                port=config.sip.listen_port,
                transports=config.sip.transports,
                user_agent=config.sip.user_agent,
                trusted_hosts=await resolve_trusted(config.trusted_hosts()),
                keepalive_interval=config.sip.keepalive_interval,
            ),
            config.accounts,
            token=secrets.token_hex,
        )
        self.sip = SipEndpoint(
            self.ua,
            host=config.sip.listen_host,
            port=config.sip.listen_port,
            transports=config.sip.transports,
            on_event=self.service.on_sip_event,
        )
        self.service.sip = self.sip
        await self.sip.start()
        self.sip.call(self.ua.start)
        if config.metrics.listen_host is not None:
            self.metrics = MetricsServer(lambda: daemon_families(self), self._registered)
            try:
                await self.metrics.start(config.metrics.listen_host, config.metrics.listen_port)
            except OSError as exc:
                where = f"{config.metrics.listen_host}:{config.metrics.listen_port}"
                raise ConfigError(
                    ConfigProblem(str(config.path), "metrics.listen", f"cannot listen on {where}: {exc}")
                ) from None
            log.info("metrics on http://%s:%d/metrics", config.metrics.listen_host, self.metrics.port)
        for hotline in config.hotlines:
            log.info(
                "hotline %s on account %s: %d agent(s), %d round(s), PIN %s",
                hotline.name,
                hotline.account,
                len(hotline.agents),
                hotline.rounds,
                "required" if hotline.pins else "not required",
            )

    def registrations(self) -> dict[str, bool]:
        """Each account that registers, and whether it is registered now."""
        ua = self.ua
        if ua is None:
            return {}
        accounts = [a.name for a in self.config.accounts if a.register]
        return {name: ua.registration_state(name) is RegState.REGISTERED for name in accounts}

    def _registered(self) -> bool:
        """Health: every account that registers is registered."""
        return self.ua is not None and all(self.registrations().values())

    @staticmethod
    def _close_interrupted_calls(store: CallLog, node: str) -> None:
        """Calls an earlier run of this node left without an end (it was killed) are closed as failed."""
        try:
            closed = store.close_unfinished(node, INTERRUPTED)
        except CallLogError as exc:
            log.error("call log: cannot close the calls an earlier run left unfinished: %s", exc)
            return
        for call in closed:
            log.warning(
                "call log: call %s (%s, from %s) had no end: the daemon had stopped during it; marked failed",
                call.call_id,
                call.hotline,
                call.caller,
            )

    def _on_media_event(self, event: object) -> None:
        if self.service is not None:
            self.service.on_media_event(event)  # type: ignore[arg-type]

    def reload(self) -> None:
        """SIGHUP: apply a new configuration to new calls; keep the old one if the new one is broken."""
        path = self.config.path
        try:
            new = load_config(path)
            prompts = load_prompt_sets(new, synth_folder=Path(self._synth_dir.name))
        except SipCallHuntError as exc:
            log.error("reload of %s failed; the running configuration stays in force:\n%s", path, exc)
            return
        if (
            new.sip != self.config.sip
            or new.accounts != self.config.accounts
            or new.calllog != self.config.calllog
            or new.metrics != self.config.metrics
        ):
            log.warning(
                "reload: changes to [sip], [[account]], [calllog] or [metrics] take effect only after a restart"
            )
        assert self.service is not None
        self.service.configure(new.hotlines, self.config.accounts, prompts)
        self.config = Config(
            path=path,
            sip=self.config.sip,
            accounts=self.config.accounts,
            hotlines=new.hotlines,
            calllog=self.config.calllog,
            log_level=new.log_level,
            metrics=self.config.metrics,
        )
        logging.getLogger("sipcallhunt").setLevel(5 if new.log_level == "TRACE" else new.log_level)
        log.info("configuration reloaded from %s: %d hotline(s)", path, len(new.hotlines))

    async def stop(self) -> None:
        """End calls, withdraw registrations, close everything (in that order)."""
        if self.service is not None:
            await self.service.shutdown(CALL_END_TIMEOUT)
        if self.sip is not None and self.ua is not None:
            self.sip.call(self.ua.shutdown)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + UNREGISTER_TIMEOUT
            while not self.ua.unregistered and loop.time() < deadline:
                await asyncio.sleep(0.05)
            # Let final BYE/CANCEL transactions get their answers.
            while self.ua.active_legs and loop.time() < deadline:
                await asyncio.sleep(0.05)
            await self.sip.close()
        if self.engine is not None:
            await self.engine.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.calllog is not None:
            await self.calllog.close()
        self._synth_dir.cleanup()
        log.info("stopped")

    def hotline(self, name: str) -> HotlineConfig:
        return next(h for h in self.config.hotlines if h.name == name)


async def run(config: Config) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    for warning in file_warnings(config.path):
        log.warning("%s", warning)
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    try:
        await daemon.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await daemon.stop()
        raise
    log.info(
        "sipcallhunt running (SIP %s:%d, media address %s)", config.sip.listen_host, config.sip.listen_port, daemon.host
    )
    await stop.wait()
    log.info("stopping")
    await daemon.stop()
    return 0
