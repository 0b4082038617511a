"""Benchmark decoding a core dump: CPU ms per dump of 64 KiB, with symbols.

Builds the test fixtures' real RISC-V app ELF (needs riscv64-unknown-elf-gcc) and a
core dump of it padded to --size bytes (the crashed task, an idle task and dumped
RAM), then decodes it the way the background decoder does (esp-coredump reads the
partition, the ELF's CFI unwinds the stack, DWARF names file:line). The ELF is parsed
once, as the decoder's cache does; `--cold` parses it for every dump as well.

    .venv/bin/python bench/coredump.py            # --help for the knobs

Prints the machine's load average before and after: the figures mean little on a
busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from coredump_fixtures import app_elf  # noqa: E402
from coredump_fixtures import riscv_dump  # noqa: E402

from iotsupport.crashes.decode import decode  # noqa: E402
from iotsupport.crashes.symbols import Symbols  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64 * 1024, help="dump bytes (default 64 KiB)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cold", action="store_true", help="parse the ELF for each dump too")
    args = parser.parse_args()
    elf = app_elf()
    raw, _ = riscv_dump(elf)
    raw, _ = riscv_dump(elf, padding=max(0, args.size - len(raw)))
    print(f"load average before: {os.getloadavg()}")
    print(f"dump: {len(raw)} bytes; ELF: {len(elf.data)} bytes; runs: {args.runs}")
    symbols = Symbols(elf.data)
    decode(raw, symbols)  # imports esp-coredump once, as a running decoder has
    samples = []
    for _ in range(args.runs):
        start = time.process_time()
        decoded = decode(raw, Symbols(elf.data) if args.cold else symbols)
        samples.append((time.process_time() - start) * 1000)
    assert decoded.symbolized and decoded.frames[0].function == "store_value"
    samples.sort()
    print(
        f"CPU ms per dump: median {statistics.median(samples):.2f}, "
        f"p90 {samples[int(len(samples) * 0.9) - 1]:.2f}, min {samples[0]:.2f}"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
