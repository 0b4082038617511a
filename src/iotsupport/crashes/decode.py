"""A core dump partition decoded: chip, the app ELF's SHA-256, the crashed task, the
exception, registers and the backtrace (symbolized when the release's ELF is known).

Espressif's esp-coredump reads the partition (its header and checksum, ELF or binary
format, which it turns into an ELF core) and the notes and segments of the core; the
rest is done here: the crashed task's registers and exception, a RISC-V stack unwound
with the app ELF's DWARF call frame information (as gdb does), an Xtensa stack walked
through the windowed ABI's base save areas (as ESP-IDF's own backtrace does).
"""

from __future__ import annotations

import os
import struct
import tempfile
import typing as t
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field

from iotsupport.crashes.causes import RISCV_ADDRESS_CAUSES
from iotsupport.crashes.causes import riscv_cause_name
from iotsupport.crashes.causes import xtensa_cause_name
from iotsupport.crashes.frames import MAX_FRAMES
from iotsupport.crashes.frames import Frame
from iotsupport.crashes.frames import symbolize
from iotsupport.crashes.symbols import Symbols

_NT_PRSTATUS = 1
_NOTE_ESP_INFO = 8266
_NOTE_TASK_INFO = 678
_NOTE_EXTRA_INFO = 677
_PRSTATUS_REGS = 72  # offset of pr_reg in elf_prstatus (32-bit)
_TCB_NAME = 52  # pcTaskName in FreeRTOS's TCB (32-bit, no MPU)
_RISCV_NAMES = (
    ["pc", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1"]
    + [f"a{i}" for i in range(8)]
    + [f"s{i}" for i in range(2, 12)]
    + [f"t{i}" for i in range(3, 7)]
)
_RISCV_CSRS = ("mstatus", "mtvec", "mcause", "mtval", "mhartid")
_XTENSA_EXCCAUSE, _XTENSA_EXCVADDR = 0, 1


class DumpUnreadable(ValueError):
    """Not a core dump esp-coredump can read (bad header, checksum, format)."""


@dataclass
class Decoded:
    chip: str
    chip_rev: int | None
    app_elf_sha256: str | None  # as much of it as the device recorded (hex)
    task: str | None
    task_tcb: int | None
    cause: int | None
    cause_name: str | None
    fault_address: int | None
    isr_context: bool | None
    registers: dict[str, int]
    frames: list[Frame] = field(default_factory=list)
    symbolized: bool = False

    def as_json(self) -> dict[str, t.Any]:
        return asdict(self)


class Memory:
    def __init__(self, segments: list[tuple[int, bytes]]) -> None:
        self.segments = segments

    def word(self, address: int) -> int | None:
        for start, data in self.segments:
            if start <= address and address + 4 <= start + len(data):
                value: int = struct.unpack_from("<I", data, address - start)[0]
                return value
        return None


@dataclass
class Core:
    chip: str
    chip_rev: int | None
    riscv: bool
    memory: Memory
    notes: list[tuple[bytes, int, bytes]]  # name, type, desc

    def notes_of(self, kind: int) -> list[bytes]:
        return [desc for _, note_type, desc in self.notes if note_type == kind]


def read_core(raw: bytes) -> Core:
    """The core in the partition, read by esp-coredump (it wants files: temp ones)."""
    from esp_coredump.corefile import XTENSA_TARGETS
    from esp_coredump.corefile.elf import ESPCoreDumpElfFile
    from esp_coredump.corefile.loader import ESPCoreDumpFileLoader

    handle, path = tempfile.mkstemp(prefix="coredump-")
    loader: t.Any = None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(raw)
        try:
            loader = ESPCoreDumpFileLoader(path)
            riscv = loader.target not in XTENSA_TARGETS
            machine = ESPCoreDumpElfFile.EM_RISCV if riscv else ESPCoreDumpElfFile.EM_XTENSA
            loader.create_corefile(e_machine=machine)
            core = ESPCoreDumpElfFile(loader.core_elf_file)
        except Exception as exc:  # construct, esp-coredump and OS errors alike
            raise DumpUnreadable(_reason(exc)) from None
        segments = [(segment.addr, bytes(segment.data)) for segment in core.load_segments]
        notes = [
            (bytes(note.name), int(note.type), bytes(note.desc))
            for segment in core.note_segments
            for note in segment.note_secs
        ]
        return Core(str(loader.target), loader.chip_rev, riscv, Memory(segments), notes)
    finally:
        for temp in [path, *(loader.temp_files if loader is not None else [])]:
            try:
                os.unlink(temp)
            except OSError:
                pass


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def decode(raw: bytes, symbols: Symbols | None) -> Decoded:
    core = read_core(raw)
    info = core.notes_of(_NOTE_ESP_INFO)
    sha = None
    for desc in info:
        if len(desc) >= 68:  # version, then the SHA-256 in hex (maybe cut, NUL-padded)
            sha = desc[4:68].rstrip(b"\0").decode("ascii", "replace").lower() or None
    extra = core.notes_of(_NOTE_EXTRA_INFO)
    words = list(struct.unpack_from(f"<{len(extra[0]) // 4}I", extra[0])) if extra else []
    tcb = words[0] if words else None
    registers = _task_registers(core, tcb)
    decoded = Decoded(
        chip=core.chip,
        chip_rev=core.chip_rev,
        app_elf_sha256=sha,
        task=_task_name(core, tcb),
        task_tcb=tcb,
        cause=None,
        cause_name=None,
        fault_address=None,
        isr_context=None,
        registers={},
    )
    if core.riscv:
        _riscv(core, decoded, registers, words, symbols)
    else:
        _xtensa(core, decoded, registers, words, symbols)
    return decoded


def _task_registers(core: Core, tcb: int | None) -> list[int]:
    for desc in core.notes_of(_NT_PRSTATUS):
        if len(desc) < _PRSTATUS_REGS + 4:
            continue
        pid = struct.unpack_from("<I", desc, 24)[0]
        if tcb is None or pid == tcb:
            count = (len(desc) - _PRSTATUS_REGS) // 4
            return list(struct.unpack_from(f"<{count}I", desc, _PRSTATUS_REGS))
    return []


def _task_info(core: Core, tcb: int | None) -> tuple[int, bytes] | None:
    for desc in core.notes_of(_NOTE_TASK_INFO):
        if len(desc) >= 36:
            _, _, task_tcb, stack_start, _ = struct.unpack_from("<5I", desc)
            if task_tcb == tcb:
                return stack_start, desc[20:36]
    return None


def _task_name(core: Core, tcb: int | None) -> str | None:
    info = _task_info(core, tcb)
    raw = info[1] if info is not None else b""
    if not raw.strip(b"\0") and tcb is not None:
        words = [core.memory.word(tcb + _TCB_NAME + i) for i in range(0, 16, 4)]
        if all(word is not None for word in words):
            raw = struct.pack("<4I", *t.cast(list[int], words))
    name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return name or None


def _riscv(
    core: Core, decoded: Decoded, regs: list[int], extra: list[int], symbols: Symbols | None
) -> None:
    regs = (regs + [0] * 32)[:32]
    decoded.registers = dict(zip(_RISCV_NAMES, regs, strict=True))
    if len(extra) > 1:
        decoded.isr_context = bool(extra[1])
    # The panic handler saved the exception frame (the registers, then mstatus, mtvec,
    # mcause, mtval, mhartid) where the crashed task's dumped stack begins.
    info = _task_info(core, decoded.task_tcb)
    if info is not None:
        start = info[0]
        frame = [core.memory.word(start + 4 * i) for i in range(32 + len(_RISCV_CSRS))]
        if frame[:32] == regs and None not in frame:
            csrs = dict(zip(_RISCV_CSRS, t.cast(list[int], frame[32:]), strict=True))
            decoded.registers.update(csrs)
            decoded.cause = csrs["mcause"]
            decoded.cause_name = riscv_cause_name(decoded.cause)
            if decoded.cause in RISCV_ADDRESS_CAUSES:
                decoded.fault_address = csrs["mtval"]
    addresses = _riscv_unwind(core.memory, regs, symbols)
    decoded.frames = symbolize(addresses, symbols)
    decoded.symbolized = symbols is not None


def _riscv_unwind(memory: Memory, regs: list[int], symbols: Symbols | None) -> list[int]:
    """Return addresses by the ELF's CFI; without the ELF only the faulting pc is known."""
    state = {number: regs[number] for number in range(1, 32)}
    pc = regs[0]
    addresses = [pc]
    if symbols is None:
        return addresses
    while len(addresses) < MAX_FRAMES:
        # A caller's pc is a return address: look up the call before it.
        rule = symbols.unwind_rule(pc if len(addresses) == 1 else pc - 1)
        if rule is None or rule.cfa_reg not in state:
            break
        cfa = (state[rule.cfa_reg] + rule.cfa_offset) & 0xFFFFFFFF
        restored = dict(state)
        for number, offset in rule.saved.items():
            value = memory.word(cfa + offset)
            if value is None:
                return addresses
            restored[number] = value
        restored[2] = cfa
        ret = restored.get(1, 0)
        if ret == 0 or cfa < state[2] or (cfa == state[2] and ret == pc):
            break
        state, pc = restored, ret
        addresses.append(pc)
    return addresses


def _xtensa(
    core: Core, decoded: Decoded, regs: list[int], extra: list[int], symbols: Symbols | None
) -> None:
    if len(regs) >= 80:
        names = {"pc": regs[0], "ps": regs[1], "lbeg": regs[2], "lend": regs[3]}
        names.update({"lcount": regs[4], "sar": regs[5]})
        names.update({f"a{i}": regs[64 + i] for i in range(16)})
        decoded.registers = names
    pairs = dict(zip(extra[1::2], extra[2::2], strict=False))
    if _XTENSA_EXCCAUSE in pairs:
        decoded.cause = pairs[_XTENSA_EXCCAUSE]
        decoded.cause_name = xtensa_cause_name(decoded.cause)
    if _XTENSA_EXCVADDR in pairs:
        decoded.fault_address = pairs[_XTENSA_EXCVADDR]
    if len(extra) > 37:
        decoded.isr_context = bool(extra[37])
    if decoded.registers:
        addresses = _xtensa_walk(core.memory, decoded.registers)
        decoded.frames = symbolize(addresses, symbols)
        decoded.symbolized = symbols is not None


def _xtensa_walk(memory: Memory, regs: dict[str, int]) -> list[int]:
    """The windowed ABI's chain: a caller's pc in a0's low 30 bits, its sp and the next
    pc in the 4-word base save area below each sp (as esp_backtrace walks it)."""
    pc, sp, next_pc = regs["pc"], regs["a1"], regs["a0"]
    addresses = [pc]
    while next_pc and len(addresses) < MAX_FRAMES:
        pc = (next_pc & 0x3FFFFFFF) | 0x40000000
        addresses.append(pc - 3)  # the call instruction, not the return address
        following, caller_sp = memory.word(sp - 16), memory.word(sp - 12)
        if following is None or caller_sp is None or caller_sp <= sp:
            break
        next_pc, sp = following, caller_sp
    return addresses
