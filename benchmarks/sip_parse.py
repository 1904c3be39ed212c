"""SIP parser speed, ours against ``sipmessage`` (PyPI), and the evaluation behind docs/sip-parser.md.

    python -m benchmarks.sip_parse             # messages parsed and serialized per second
    python -m benchmarks.sip_parse --smoke     # the same, about a second in all
    python -m benchmarks.sip_parse --evaluate  # RFC 4475 verdicts and fuzz census of both parsers

``sipmessage`` is optional (it is not a dependency of sipcallhunt); without it only our figures
are printed.  Both parsers get the same bytes.  "parse" is ``parse_message`` for us (which
checks Via, From, To, Call-ID, CSeq, Contact, Route and the Request-URI as it goes) and
``Message.parse`` for sipmessage (which parses the start line only and the headers lazily);
"parse+fields" additionally reads Via, From, To, CSeq, Call-ID and Contact through each
library's typed accessors, which is what a user agent does with every message.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.machine import print_header
from sipcallhunt.errors import SipParseError
from sipcallhunt.sip.message import SipMessage, parse_message

try:
    import sipmessage
except ImportError:  # pragma: no cover - optional
    sipmessage = None

TORTURE = Path(__file__).resolve().parents[1] / "tests" / "sip" / "torture"

SDP = (
    b"v=0\r\n"
    b"o=- 1785286476 1785286476 IN IP4 192.0.2.10\r\n"
    b"s=Asterisk\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 17014 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=maxptime:150\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:hotline@192.0.2.20:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKPj6a1e0c2f-2d8e-4b7e-9d3a-41c0e4c1a7f1\r\n"
    b'From: "Front Desk" <sip:201@pbx.example.com>;tag=8f1c7b3a-3e5d-4a8e-b0c2-9e1d4f6a7b8c\r\n'
    b"To: <sip:hotline@pbx.example.com>\r\n"
    b"Contact: <sip:201@192.0.2.10:5060>\r\n"
    b"Call-ID: 5d7e2b1a-9c4f-4e3d-8a6b-1f0e2d3c4b5a\r\n"
    b"CSeq: 27611 INVITE\r\n"
    b"Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, INFO, MESSAGE\r\n"
    b"Supported: 100rel, timer, replaces, norefersub\r\n"
    b"Session-Expires: 1800\r\n"
    b"Min-SE: 90\r\n"
    b'P-Asserted-Identity: "Front Desk" <sip:201@pbx.example.com>\r\n'
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Asterisk PBX 20.5.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;rport=5060;received=192.0.2.20;branch=z9hG4bK.b2a4c6e8\r\n"
    b"Record-Route: <sip:192.0.2.1;lr>\r\n"
    b"From: <sip:hotline@pbx.example.com>;tag=a1b2c3d4\r\n"
    b'To: "Agent 7" <sip:207@pbx.example.com>;tag=as5f6e7d8c\r\n'
    b"Call-ID: 0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c@192.0.2.20\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Server: FreeSWITCH-mod_sofia/1.10.11\r\n"
    b"Contact: <sip:207@192.0.2.30:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY\r\n"
    b"Supported: timer, path, replaces\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

INPUTS = {"INVITE+SDP": INVITE, "200 OK+SDP": OK_200}


def _ours_fields(m: SipMessage) -> None:
    m.vias  # noqa: B018
    m.from_  # noqa: B018
    m.to  # noqa: B018
    m.cseq  # noqa: B018
    m.call_id  # noqa: B018
    m.contacts  # noqa: B018


def _theirs_fields(m: Any) -> None:
    m.via  # noqa: B018
    m.from_address  # noqa: B018
    m.to_address  # noqa: B018
    m.cseq  # noqa: B018
    m.call_id  # noqa: B018
    m.contact  # noqa: B018


def _variants(data: bytes, count: int) -> list[bytes]:
    """``count`` copies of ``data`` with distinct branch, tags and Call-ID, as real traffic has."""
    out = []
    for i in range(count):
        out.append(
            data.replace(b"branch=z9hG4bK", b"branch=z9hG4bK%06d" % i)
            .replace(b";tag=", b";tag=%06d" % i)
            .replace(b"Call-ID: ", b"Call-ID: %06d" % i)
        )
    return out


def _rate(fn: Callable[[bytes], object], inputs: list[bytes], seconds: float) -> float:
    """Calls per second of ``fn`` cycling through ``inputs`` until ``seconds`` have passed."""
    fn(inputs[0])
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    count = len(inputs)
    while True:
        for data in inputs[calls % count : calls % count + 64]:
            fn(data)
        calls += min(64, count - calls % count)
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def bench(seconds: float) -> None:
    print_header("SIP message parse/serialize: sipcallhunt vs sipmessage")
    version = getattr(sipmessage, "__version__", None)
    print(f"# sipmessage: {version or 'not installed'}; {seconds:.2f} s per figure")
    print("# distinct = 4096 different messages in turn (no value repeats: cold caches);")
    print("# repeated = the same message again (retransmissions, in-dialog headers: our parse caches hit)")
    print(f"{'message':<12} {'operation':<24} {'sipcallhunt/s':>14} {'sipmessage/s':>14} {'ratio':>7}")
    ours_ops: dict[str, Callable[[bytes], object]] = {
        "parse": parse_message,
        "parse+fields": lambda d: _ours_fields(parse_message(d)),
    }
    theirs_ops: dict[str, Callable[[bytes], object]] = {}
    if sipmessage is not None:
        theirs_ops = {
            "parse": sipmessage.Message.parse,
            "parse+fields": lambda d: _theirs_fields(sipmessage.Message.parse(d)),
        }
    for name, data in INPUTS.items():
        distinct = _variants(data, 4096)
        rows: list[tuple[str, Callable[[bytes], object], Callable[[bytes], object] | None, list[bytes]]] = []
        for op in ("parse", "parse+fields"):
            rows.append((f"{op} (distinct)", ours_ops[op], theirs_ops.get(op), distinct))
            rows.append((f"{op} (repeated)", ours_ops[op], theirs_ops.get(op), [data]))
        ours_msgs = {d: parse_message(d) for d in distinct[:256]}
        rows.append(("serialize", lambda d, msgs=ours_msgs: bytes(msgs[d]), None, distinct[:256]))
        if sipmessage is not None:
            theirs_msgs = {d: sipmessage.Message.parse(d) for d in distinct[:256]}
            rows[-1] = ("serialize", rows[-1][1], lambda d, msgs=theirs_msgs: bytes(msgs[d]), distinct[:256])
        for operation, ours, theirs, inputs in rows:
            ours_rate = _rate(ours, inputs, seconds)
            theirs_rate = _rate(theirs, inputs, seconds) if theirs is not None else None
            ratio = f"{ours_rate / theirs_rate:6.2f}x" if theirs_rate else "    -"
            theirs_text = f"{theirs_rate:14,.0f}" if theirs_rate else f"{'-':>14}"
            print(f"{name:<12} {operation:<24} {ours_rate:14,.0f} {theirs_text} {ratio:>7}")


# -- evaluation ------------------------------------------------------------------------------

VALID = {
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri", "transports",
    "mpart01", "unreason", "noreason", "badbranch", "unkscm", "novelsc", "unksm2", "bext01", "invut",
    "regaut01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01", "inv2543",
}  # fmt: skip
"""RFC 4475 messages a parser must accept (the others must be refused); see tests/sip/test_torture.py."""


def _ours_verdict(data: bytes) -> str:
    try:
        parse_message(data)
    except SipParseError as exc:
        return f"reject {exc.status}"
    except Exception as exc:  # noqa: BLE001 - the census counts anything else as a crash
        return f"CRASH {type(exc).__name__}"
    return "accept"


def _theirs_verdict(data: bytes) -> str:
    assert sipmessage is not None
    try:
        _theirs_fields(sipmessage.Message.parse(data))
    except ValueError as exc:
        return f"reject {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - the census counts anything else as a crash
        return f"CRASH {type(exc).__name__}"
    return "accept"


def _extra_checks() -> list[str]:
    """Behaviours that the torture table does not show directly."""
    assert sipmessage is not None
    notes = []
    dbl = sipmessage.Message.parse((TORTURE / "dblreq.dat").read_bytes())
    notes.append(f"dblreq: sipmessage body is {len(dbl.body)} bytes (Content-Length says 0)")
    folded = _theirs_verdict((TORTURE / "wsinv.dat").read_bytes()) == "accept"
    notes.append(f"wsinv: sipmessage {'parses' if folded else 'cannot parse'} the folded header lines")
    try:
        sipmessage.Message.parse(INVITE.replace(b"\r\n", b"\n"))
        notes.append("bare LF line ends: accepted")
    except ValueError as exc:
        notes.append(f"bare LF line ends: rejected ({exc})")
    return notes


def _census(samples: int, seed: int) -> None:
    rng = random.Random(seed)
    corpus = [p.read_bytes() for p in sorted(TORTURE.glob("*.dat"))] + list(INPUTS.values())
    ours: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    for _ in range(samples):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            kind = rng.randrange(4)
            if kind == 0:
                data[pos] = rng.randrange(256)
            elif kind == 1:
                data[pos:pos] = rng.choice([b"\r\n", b" ", b":", b";", b",", b"<", b'"', b"\x00", b"\xff", b"%"])
            elif kind == 2:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                del data[pos:]
            if not data:
                data = bytearray(b"x")
        mutated = bytes(data)
        ours[_ours_verdict(mutated).split()[0]] += 1
        if sipmessage is not None:
            verdict = _theirs_verdict(mutated)
            theirs[verdict if verdict.startswith("CRASH") else verdict.split()[0]] += 1
    print(f"\nmutated-message census ({samples} samples, seed {seed}):")
    print(f"  sipcallhunt: {dict(ours)}")
    if sipmessage is not None:
        print(f"  sipmessage:  {dict(theirs)}")


def evaluate(samples: int) -> None:
    print_header("RFC 4475 verdicts: sipcallhunt vs sipmessage")
    print(f"{'message':<12} {'RFC':<8} {'sipcallhunt':<14} {'sipmessage':<28}")
    ok_ours = ok_theirs = 0
    names = sorted(p.stem for p in TORTURE.glob("*.dat"))
    for name in names:
        data = (TORTURE / f"{name}.dat").read_bytes()
        expected = "accept" if name in VALID else "reject"
        mine = _ours_verdict(data)
        other = _theirs_verdict(data) if sipmessage is not None else "-"
        ok_ours += mine.startswith(expected)
        ok_theirs += other.startswith(expected)
        print(f"{name:<12} {expected:<8} {mine:<14} {other:<28}")
    print(f"\nas the RFC expects: sipcallhunt {ok_ours}/{len(names)}, sipmessage {ok_theirs}/{len(names)}")
    if sipmessage is not None:
        for note in _extra_checks():
            print(f"  {note}")
    _census(samples, seed=4475)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="run about a second in all")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per figure (default 1)")
    parser.add_argument("--evaluate", action="store_true", help="RFC 4475 verdicts and fuzz census")
    parser.add_argument("--samples", type=int, default=20000, help="mutated messages in the census")
    args = parser.parse_args(argv)
    if args.evaluate:
        evaluate(200 if args.smoke else args.samples)
        return 0
    bench(0.05 if args.smoke else args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
