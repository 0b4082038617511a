"""A release's app ELF, read with pyelftools: function names, file:line, and the DWARF
call frame information that unwinds a RISC-V stack.

Built once per ELF (a few ms for an ESP-IDF app's tables); lookups are bisections.
"""

from __future__ import annotations

import bisect
import io
import typing as t
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE
from elftools.dwarf.callframe import RegisterRule
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection


class NotAnElf(ValueError):
    """The bytes are not an ELF file pyelftools can read."""


@dataclass(frozen=True)
class Location:
    function: str | None
    file: str | None
    line: int | None


@dataclass(frozen=True)
class UnwindRule:
    """At one pc: the CFA is `cfa_reg` + `cfa_offset`; each saved register is at CFA +
    its offset (registers not listed still hold the caller's value)."""

    cfa_reg: int
    cfa_offset: int
    saved: dict[int, int]


class Symbols:
    def __init__(self, data: bytes) -> None:
        try:
            elf = ELFFile(io.BytesIO(data))
            self.machine = str(elf["e_machine"])
            self._functions = _functions(elf)
            self._lines = _lines(elf) if elf.has_dwarf_info() else []
            self._fdes = _fdes(elf) if elf.has_dwarf_info() else []
        except (ELFError, KeyError, ValueError, IndexError, AttributeError, TypeError) as exc:
            raise NotAnElf(str(exc)) from None
        self._function_starts = [start for start, _, _ in self._functions]
        self._line_starts = [row[0] for row in self._lines]
        self._fde_starts = [start for start, _, _ in self._fdes]

    def locate(self, address: int) -> Location:
        """The function, file and line of an instruction's address."""
        return Location(self.function(address), *self._line(address))

    def function(self, address: int) -> str | None:
        i = bisect.bisect_right(self._function_starts, address) - 1
        if i >= 0:
            start, size, name = self._functions[i]
            if start <= address < start + max(size, 1):
                return name
        return None

    def _line(self, address: int) -> tuple[str | None, int | None]:
        i = bisect.bisect_right(self._line_starts, address) - 1
        if i < 0:
            return None, None
        _, file, line, end = self._lines[i]
        if end:
            return None, None
        return file, line

    def unwind_rule(self, pc: int) -> UnwindRule | None:
        i = bisect.bisect_right(self._fde_starts, pc) - 1
        if i < 0:
            return None
        start, end, fde = self._fdes[i]
        if not start <= pc < end:
            return None
        decoded = fde.get_decoded()
        row: dict[t.Any, t.Any] | None = None
        for candidate in decoded.table:
            if candidate["pc"] <= pc:
                row = candidate
        if row is None or row["cfa"].reg is None:
            return None
        saved = {
            reg: int(t.cast(int, rule.arg))
            for reg, rule in row.items()
            if isinstance(reg, int)
            and isinstance(rule, RegisterRule)
            and rule.type == RegisterRule.OFFSET
        }
        return UnwindRule(row["cfa"].reg, row["cfa"].offset, saved)


def _functions(elf: ELFFile) -> list[tuple[int, int, str]]:
    found: dict[int, tuple[int, int, str]] = {}
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for symbol in section.iter_symbols():
            if symbol["st_info"]["type"] != "STT_FUNC" or not symbol.name:
                continue
            start = symbol["st_value"] & ~1
            found.setdefault(start, (start, symbol["st_size"], symbol.name))
    return sorted(found.values())


def _lines(elf: ELFFile) -> list[tuple[int, str | None, int, bool]]:
    """Every row of every line program: (address, file, line, end of sequence)."""
    rows: list[tuple[int, str | None, int, bool]] = []
    dwarf = elf.get_dwarf_info()
    for unit in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(unit)
        if program is None:
            continue
        files = program["file_entry"]
        base = 0 if program["version"] >= 5 else 1
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            index = state.file - base
            name = files[index].name.decode("utf-8", "replace") if 0 <= index < len(files) else None
            rows.append((state.address, name, state.line, bool(state.end_sequence)))
    # At one address, an end of sequence goes before the next sequence's first row.
    rows.sort(key=lambda row: (row[0], not row[3]))
    return rows


def _fdes(elf: ELFFile) -> list[tuple[int, int, FDE]]:
    dwarf = elf.get_dwarf_info()
    entries: list[t.Any] = []
    if dwarf.has_CFI():
        entries += dwarf.CFI_entries()
    if dwarf.has_EH_CFI():
        entries += dwarf.EH_CFI_entries()
    fdes = [
        (entry["initial_location"], entry["initial_location"] + entry["address_range"], entry)
        for entry in entries
        if isinstance(entry, FDE)
    ]
    return sorted(fdes, key=lambda item: item[0])
