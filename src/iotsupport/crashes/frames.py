"""Backtrace frames: addresses symbolized against a release's ELF; the pcs of a panic's
`Backtrace:` console line."""

from __future__ import annotations

from dataclasses import dataclass

from iotsupport.crashes.symbols import Symbols

MAX_FRAMES = 32


@dataclass
class Frame:
    address: int
    function: str | None = None
    file: str | None = None
    line: int | None = None


def symbolize(addresses: list[int], symbols: Symbols | None) -> list[Frame]:
    frames = []
    for index, address in enumerate(addresses):
        frame = Frame(address)
        if symbols is not None:
            # A return address may be the first byte after a function that never returns.
            location = symbols.locate(address if index == 0 else address - 1)
            frame.function, frame.file, frame.line = location.function, location.file, location.line
        frames.append(frame)
    return frames


def backtrace_addresses(line: str) -> list[int]:
    """The pcs of a panic handler's `Backtrace: 0xPC:0xSP 0xPC:0xSP ...` line (already
    pointing at the call instructions, as ESP-IDF prints them); stops at |<-CORRUPTED."""
    _, _, rest = line.partition("Backtrace:")
    addresses = []
    for pair in rest.split():
        if pair.startswith("|<-"):
            break
        pc, _, _ = pair.partition(":")
        try:
            address = int(pc, 16)
        except ValueError:
            break
        if address == 0:
            break
        addresses.append(address)
    return addresses[:MAX_FRAMES]
