"""Every file of the fuzz corpus (``tests/fuzz/corpus/<target>/``) is handled: a result or the parser's own error.

The corpus holds the inputs that once crashed a parser or broke a round trip (named after the
failure: ``valueerror-...``, ``roundtrip-...``), plus a few other edge cases; ``benchmarks/fuzz.py``
adds what it finds there.  Each file runs through the same target as in the fuzzer, with the same
checks (serialize → parse round trips, chunking independence, duplicate telephone-events).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fuzz import CORPUS, TARGETS, classify, corpus_files

FILES = [(target, path) for target in TARGETS for path in corpus_files(target)]


@pytest.mark.parametrize(("target", "path"), FILES, ids=[f"{t}/{p.name}" for t, p in FILES])
def test_corpus_file_is_handled(target: str, path: Path) -> None:
    assert classify(TARGETS[target], path.read_bytes()) is None


def test_corpus_folders_are_targets() -> None:
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert folders <= set(TARGETS), folders - set(TARGETS)
    assert len(FILES) >= 20


def test_classify_reports_a_foreign_exception() -> None:
    """The check above can fail: an exception other than the target's own error is a finding."""

    def crash(data: bytes) -> None:
        int(data.decode())

    target = TARGETS["sip-info"]
    import attrs

    crashing = attrs.evolve(target, run=crash)
    assert classify(crashing, b"12") is None
    assert classify(crashing, "\u00b2".encode()) == "ValueError at ?"
