"""``make fuzz``: run each target of ``fuzz/targets.py`` under atheris for a bounded time.

    python -m fuzz.run [--seconds 30] [--out .fuzz] [target ...]

Each target runs in its own process (libFuzzer exits the process when it stops) with the
committed seeds ``fuzz/corpus/<target>/`` read-only and ``<out>/corpus/<target>/`` as the
growing working corpus; a crash is written to ``<out>/crashes/<target>/`` and fails the run.
A crash becomes a regression test under tests/unit/ and, once fixed, its input a seed (which
tests/unit/fuzzing/ replays).
The last line per target gives total executions and executions per second.

    python -m fuzz.run --one <target> [libFuzzer flags and corpus dirs]

is the child: it instruments wagerwire for coverage and hands ``sys.argv`` to libFuzzer.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+).*?exec/s: (\d+)")


def _final(text: str, name: str) -> int:
    """A number from libFuzzer's closing ``stat::<name>: N`` lines (-print_final_stats=1)."""
    found = re.search(rf"stat::{name}:\s+(\d+)", text)
    return int(found[1]) if found else 0


def _child(target: str, argv: list[str]) -> None:
    import atheris  # the `fuzz` extra; only the child needs it

    with atheris.instrument_imports(include=["wagerwire"]):
        from fuzz.targets import TARGETS
    atheris.Setup([sys.argv[0], *argv], TARGETS[target])
    atheris.Fuzz()


def _run(target: str, seconds: int, out: Path) -> tuple[bool, str]:
    work = out / "corpus" / target
    crashes = out / "crashes" / target
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    log = out / f"{target}.log"
    cmd = [
        sys.executable, "-m", "fuzz.run", "--one", target,
        f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=1024", "-max_len=4096",
        "-print_final_stats=1", f"-artifact_prefix={crashes}/",
        str(work), str(ROOT / "fuzz" / "corpus" / target),
    ]
    started = time.monotonic()
    with log.open("wb") as fh:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    text = log.read_text("utf-8", "replace")
    stats = _STATS.findall(text)
    runs = _final(text, "number_of_executed_units") or (int(stats[-1][0]) if stats else 0)
    rate = _final(text, "average_exec_per_sec")
    cov = f"cov {stats[-1][1]} ft {stats[-1][2]}" if stats else "cov ?"
    line = f"{target:12} {runs:>9} execs  {rate:>6}/s  {cov}  ({elapsed:.0f} s)"
    if rc != 0:
        found = sorted(p.name for p in crashes.iterdir())
        line += f"  CRASH rc={rc} {found[-1:] or ''} (see {log})"
    return rc == 0, line


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--one"]:
        _child(args[1], args[2:])
        return 0
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz.run")
    parser.add_argument("--seconds", type=int, default=30, help="time per target")
    parser.add_argument("--out", type=Path, default=ROOT / ".fuzz", help="working dir")
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    opts = parser.parse_args(args)
    unknown = set(opts.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    ok = True
    for target in opts.targets or list(TARGETS):
        passed, line = _run(target, opts.seconds, opts.out)
        print(line, flush=True)
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
