"""Coverage-guided fuzzing of the parsers with atheris (libFuzzer for Python), for long runs outside CI.

atheris is not a dependency of sipcallhunt (CI never needs it).  Install it into the venv with
``pip install atheris`` (a manylinux wheel exists for CPython 3.11 on x86-64), then::

    python -m benchmarks.fuzz_atheris --target sdp -max_total_time=300
    python -m benchmarks.fuzz_atheris --target rtp -runs=1000000

Every target of ``benchmarks/fuzz.py`` is available (``--target`` takes the same names) and runs
the same function, with the same checks: any exception other than the parser's own error, or a
broken round trip, is a crash.  Options after ``--target`` go to libFuzzer.  The run starts from
the fuzzer's seeds plus ``tests/fuzz/corpus/<target>``, copied to a scratch folder (libFuzzer
adds the inputs it finds interesting to its first corpus folder); crash inputs are written as
``crash-*`` files under ``--artifacts`` (default: a scratch folder, printed at the start).  A
crash found this way belongs in ``tests/fuzz/corpus/<target>/`` once fixed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["sipcallhunt"]):
    from benchmarks import fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=sorted(fuzz.TARGETS))
    parser.add_argument("--artifacts", type=Path, default=None, help="where crash inputs are written")
    args, libfuzzer_args = parser.parse_known_args()
    target = fuzz.TARGETS[args.target]

    scratch = Path(tempfile.mkdtemp(prefix=f"atheris-{target.name}-"))
    corpus = scratch / "corpus"
    corpus.mkdir()
    for data in target.seeds() + [p.read_bytes() for p in fuzz.corpus_files(target.name)]:
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    artifacts = args.artifacts or scratch / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"# atheris {target.name}: corpus {corpus}, crashes under {artifacts}", flush=True)

    run, own = target.run, target.own

    def one_input(data: bytes) -> None:
        with contextlib.suppress(own):
            run(data)

    argv = [sys.argv[0], *libfuzzer_args, f"-artifact_prefix={artifacts}/", str(corpus)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
