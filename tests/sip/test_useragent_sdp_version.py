"""RFC 3264 §8: the o= version of our answers goes up by one exactly when our description changes.

A hold re-INVITE (sendonly) changes our answer (recvonly); before the fix the answer kept the old
version while the leg counted it as new, so a peer that compares versions (as RFC 3264 tells it
to) would have ignored the change.  Fake clock, hand-written messages.
"""

from __future__ import annotations

from sipcallhunt.sip.message import SipResponse
from tests.sip.test_useragent import OFFER, Harness, ack_for, answered_call, in_dialog


def origin_version(response: SipResponse) -> int:
    line = next(line for line in response.body.split(b"\r\n") if line.startswith(b"o="))
    return int(line.split()[2])


def test_answer_version_follows_changes_of_our_description() -> None:
    h = Harness()
    _, ok = answered_call(h)
    h.deliver(ack_for(ok))
    versions = [origin_version(ok)]
    offers = [
        (OFFER.replace(b"a=sendrecv", b"a=sendonly"), b"a=recvonly"),  # hold: changes our answer
        (OFFER.replace(b"a=sendrecv", b"a=sendonly"), b"a=recvonly"),  # the same again: no change
        (OFFER, b"a=sendrecv"),  # resume: changes it back
        (OFFER.replace(b"a=sendrecv", b"a=inactive"), b"a=inactive"),
    ]
    for index, (offer, expected) in enumerate(offers):
        seq = 11 + index
        request = in_dialog(ok, "INVITE", seq, branch=f"z9hG4bKre{seq}", body=offer, ctype="application/sdp")
        h.deliver(request)
        answer = h.responses("INVITE")[-1]
        assert answer.status == 200 and answer.cseq.seq == seq and expected in answer.body
        h.deliver(ack_for(answer, branch=f"z9hG4bKack{seq}"))
        versions.append(origin_version(answer))
    assert versions == [versions[0], versions[0] + 1, versions[0] + 1, versions[0] + 2, versions[0] + 3]


def test_update_answer_version_goes_up_too() -> None:
    h = Harness()
    _, ok = answered_call(h)
    h.deliver(ack_for(ok))
    hold = OFFER.replace(b"a=sendrecv", b"a=sendonly")
    h.deliver(in_dialog(ok, "UPDATE", 11, branch="z9hG4bKupd1", body=hold, ctype="application/sdp"))
    answer = h.responses("UPDATE")[-1]
    assert answer.status == 200 and b"a=recvonly" in answer.body
    assert origin_version(answer) == origin_version(ok) + 1
