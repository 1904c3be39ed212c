"""The ``sipcallhunt`` command: run the daemon, check a configuration, read the call log, decode DTMF, demo.

sipcallhunt run -c FILE        the daemon (until SIGTERM); exit 2 on a bad configuration
sipcallhunt check -c FILE      validate configuration and prompts; print what would run
sipcallhunt calls [...]        recent calls from the call log (table, --json, --csv, --follow)
sipcallhunt dtmf FILE...       the DTMF digits in recordings, one per line
sipcallhunt demo               the whole product on loopback, in about 20 seconds
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from sipcallhunt import __version__

# The in-band DTMF detector does many small matrix products per tick: one BLAS thread is several
# times faster than a pool fighting the event loop for the cores.  Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run the daemon on uvloop when it is installed, on asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def _cmd_run(args: argparse.Namespace) -> int:
    from sipcallhunt.config import load_config
    from sipcallhunt.errors import ConfigError
    from sipcallhunt.logsetup import configure_logging
    from sipcallhunt.runtime.daemon import run

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"sipcallhunt: configuration error:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or config.log_level)
    try:
        return _run_loop(run(config))
    except ConfigError as exc:
        print(f"sipcallhunt: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sipcallhunt: cannot start: {exc}", file=sys.stderr)
        return 1


def _cmd_check(args: argparse.Namespace) -> int:
    from sipcallhunt.config import file_warnings, load_config
    from sipcallhunt.errors import ConfigError
    from sipcallhunt.runtime.daemon import advertised_host, load_prompt_sets

    try:
        config = load_config(args.config)
        prompts = load_prompt_sets(config)
    except ConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        print(f"sipcallhunt check: {len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 2
    sip = config.sip
    print(f"configuration {config.path}: OK")
    for warning in file_warnings(config.path):
        print(f"warning: {warning}")
    print(
        f"SIP: listen {sip.listen_host}:{sip.listen_port} ({'+'.join(sip.transports)}), "
        f"advertised as {advertised_host(config)}, RTP ports {sip.rtp_port_min}-{sip.rtp_port_max}"
    )
    print(f"trusted peers (may start calls): {', '.join(sorted(config.trusted_hosts()))}")
    for account in config.accounts:
        proxy = f", outbound proxy {account.outbound_proxy}" if account.outbound_proxy else ""
        action = f"registers every {account.expires} s" if account.register else "does not register"
        print(
            f"account {account.name}: {account.username}@{account.aor_domain} via {account.registrar}{proxy}; {action}"
        )
    for hotline in config.hotlines:
        print(f"hotline {hotline.name} (account {hotline.account}, language {hotline.language}):")
        pin = f"{len(hotline.pins)} PIN(s), {hotline.pin_attempts} attempts" if hotline.pins else "none"
        print(f"  PIN: {pin}")
        print(
            f"  hunt: {hotline.rounds} round(s); agent presses {hotline.confirm_key} to accept, "
            f"{hotline.decline_key} to decline, within {hotline.confirm_timeout:g} s"
        )
        for agent in hotline.agents:
            print(f"    {agent.name}: {agent.number} (rings {agent.ring_timeout:g} s)")
        print(f"  nobody accepts: {hotline.on_no_agent}")
        own = ", ".join(f"{k}={v}" for k, v in sorted(hotline.prompts.items())) or "none"
        print(f"  own prompts: {own}; {len(prompts[hotline.name].prompts)} prompts loaded")
    print(f"call log: {config.calllog.path}")
    return 0


def _cmd_calls(args: argparse.Namespace, rest: list[str]) -> int:
    from sipcallhunt.calls_cli import main as calls_main

    return calls_main(rest)


def _cmd_dtmf(args: argparse.Namespace, rest: list[str]) -> int:
    from sipcallhunt.media.dtmf_file import main as dtmf_main

    status: int = dtmf_main(rest)
    return status


def _cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    from sipcallhunt.demo import main as demo_main

    return demo_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="sipcallhunt", description="A SIP call-hunting hotline that registers with your PBX as an extension."
    )
    parser.add_argument("--version", action="version", version=f"sipcallhunt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_run = sub.add_parser("run", help="run the daemon")
    p_run.add_argument("-c", "--config", required=True, help="the configuration file (TOML)")
    p_run.add_argument("--log-level", help="override [logging] level: TRACE, DEBUG, INFO, WARNING, ERROR")
    p_check = sub.add_parser("check", help="validate the configuration and prompts")
    p_check.add_argument("-c", "--config", required=True, help="the configuration file (TOML)")
    # These hand their own arguments to their own parsers.
    sub.add_parser("calls", help="show the call log (sipcallhunt calls --help)", add_help=False)
    sub.add_parser("dtmf", help="decode DTMF digits in audio files", add_help=False)
    sub.add_parser("demo", help="the whole product on loopback, without a PBX", add_help=False)

    if argv and argv[0] in ("calls", "dtmf", "demo"):
        command, rest = argv[0], argv[1:]
        handler = {"calls": _cmd_calls, "dtmf": _cmd_dtmf, "demo": _cmd_demo}[command]
        return handler(argparse.Namespace(command=command), rest)
    args = parser.parse_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "check":
        return _cmd_check(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
