"""pytest fixtures of the end-to-end test bed (see tests/e2e/harness/README.md).

* ``testbed`` — a :class:`~tests.e2e.harness.TestBed` for this test: its own loopback addresses,
  a Kamailio started on first use, factories for sipp, baresip, RTP endpoints and the daemon;
  everything is stopped when the test ends, and a failed test's report gets the peers' log tails.
* ``loopback`` — just the address lease, for tests that need addresses and nothing else.

Addresses come from ``$SIPCALLHUNT_E2E_NETWORK`` (default 127.0.3.0/24), locked per address
across processes, so concurrent test runs on one machine do not collide.  A missing program
(kamailio, sipp, baresip) fails the test with the name of the install script; it never skips.
Every test in this folder is marked ``e2e``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness._proc import missing_binaries_message
from tests.e2e.harness.ports import AddressLease, LoopbackPool
from tests.e2e.harness.testbed import TestBed

NETWORK = os.environ.get("SIPCALLHUNT_E2E_NETWORK", "127.0.3.0/24")
PROGRAMS = ("kamailio", "sipp", "baresip", "timeout")
_HERE = Path(__file__).resolve().parent
_FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and report.when in ("setup", "call"):  # type: ignore[attr-defined]
        item.stash[_FAILED] = True
    return report


@pytest.fixture(scope="session")
def loopback_pool() -> LoopbackPool:
    return LoopbackPool(NETWORK)


@pytest.fixture
def loopback(loopback_pool: LoopbackPool) -> Iterator[AddressLease]:
    with loopback_pool.lease() as lease:
        yield lease


@pytest.fixture
def testbed(request: pytest.FixtureRequest, loopback: AddressLease, tmp_path: Path) -> Iterator[TestBed]:
    problem = missing_binaries_message(PROGRAMS)
    if problem:
        pytest.fail(problem, pytrace=False)
    bed = TestBed(tmp_path, loopback)
    try:
        yield bed
    finally:
        if request.node.stash.get(_FAILED, False):
            print(f"test bed files: {tmp_path}\n{bed.logs()}")
        bed.close()
