"""Real RISC-V app ELFs and ESP-IDF core dumps of them, built here for the tests.

The ELF is a tiny C program compiled by Debian's `riscv64-unknown-elf-gcc` for the
ESP32-C3's ISA (rv32imc, ilp32, -Og -g as ESP-IDF builds), with DWARF line info and
call frame information. The core dump is written in ESP-IDF's ELF core format, from
ESP-IDF's description of it (espcoredump's core_dump_elf.c / esp_core_dump_priv.h, as
Espressif's esp-coredump package reads it): the partition header (total length,
version = chip << 16 | 0x0104, chip revision), an ELF core file whose PT_LOAD segments
hold the tasks' TCBs and stacks and whose PT_NOTE segments hold one CORE (prstatus)
note per task, the ESP_CORE_DUMP_INFO note (version and the app ELF's SHA-256 in
hex), EXTRA_INFO (the crashed task's TCB, ISR context) and TASK_INFO notes; then the
SHA-256 of all that.

The crashed task's stack is laid out from the compiled code itself, read with objdump
(each function's `add sp,sp,-N`, its `sw ra,M(sp)` and its call sites), not from the
DWARF the decoder under test reads: its registers begin the stack as ESP-IDF's RISC-V
exception frame (pc, x1..x31, mstatus, mtvec, mcause, mtval, mhartid).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CC = "riscv64-unknown-elf-gcc"
OBJDUMP = "riscv64-unknown-elf-objdump"
CHIP_IDS = {"esp32c3": 5, "esp32c6": 13}

PROGRAM = """\
typedef unsigned char u8;
struct reading { int id; int value; };
static struct reading *table[4];
int total;

__attribute__((noinline)) void store_value(struct reading *slot, int value)
{
    slot->value = value;
}

__attribute__((noinline)) int parse_packet(const u8 *packet, int len)
{
    int value = 0;
    for (int i = 0; i < len; i++) value = value * 31 + packet[i];
    store_value(table[packet[0] & 3], value);
    return value;
}

__attribute__((noinline)) void process_reading(int channel)
{
    u8 packet[8];
    for (int i = 0; i < 8; i++) packet[i] = (u8)(channel + i);
    total += parse_packet(packet, 8);
}

void sensor_task(void *arg)
{
    for (int channel = 0;; channel++) process_reading(channel);
}

void _start(void) { sensor_task(0); }
"""
LINKER_SCRIPT = """\
ENTRY(_start)
SECTIONS {
  . = 0x42000020;
  .text : { *(.text .text.*) }
  . = 0x3C010020;
  .rodata : { *(.rodata .rodata.*) }
  . = 0x3FC8A000;
  .data : { *(.data .data.*) }
  .bss : { *(.bss .bss.* COMMON) }
}
"""
# The call chain at the crash, outermost first; the last one faults on its first store.
CHAIN = ("sensor_task", "process_reading", "parse_packet", "store_value")
SOURCE_NAME = "sensor.c"
STACK_END = 0x3FC98000  # the crashed task's stack (grows down from here)
TCB_ADDR = 0x3FC97000
XTENSA_TCB = 0x3FFB0000
IDLE_TCB = 0x3FC96000
IDLE_STACK = 0x3FC95000
MCAUSE_STORE_ACCESS_FAULT = 7

EM_RISCV = 0xF3
PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS = 1
NOTE_ESP_INFO, NOTE_TASK_INFO, NOTE_EXTRA_INFO = 8266, 678, 677


class CompilerMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Function:
    name: str
    start: int
    frame: int  # bytes the prologue takes off sp (0: no frame)
    ra_slot: int | None  # offset from the lowered sp where ra is saved
    calls: dict[str, int]  # callee -> the return address after the call


@dataclass(frozen=True)
class AppElf:
    path: Path
    data: bytes
    functions: dict[str, Function]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Crash:
    """What the dump says, as the generator put it there (to check the decoder against)."""

    pc: int
    sp: int
    fault_address: int
    mcause: int
    return_addresses: tuple[int, ...]  # innermost caller first


@functools.cache
def app_elf(variant: str = "") -> AppElf:
    """The compiled program (once per test process); `variant` changes the bytes (and so
    the ELF's SHA-256) but not the functions: another release of the same code."""
    if shutil.which(CC) is None or shutil.which(OBJDUMP) is None:
        raise CompilerMissing(
            f"{CC} is not installed (apt-get install gcc-riscv64-unknown-elf): the core dump "
            "tests build their RISC-V ELF with it"
        )
    folder = Path(tempfile.mkdtemp(prefix="coredump-fixture-"))
    (folder / SOURCE_NAME).write_text(PROGRAM + f'const char build_tag[] = "{variant}";\n')
    (folder / "link.ld").write_text(LINKER_SCRIPT)
    out = folder / "app.elf"
    subprocess.run(
        [CC, "-march=rv32imc", "-mabi=ilp32", "-Og", "-g", "-ffreestanding", "-nostdlib"]
        + ["-fno-optimize-sibling-calls", "-T", "link.ld", "-o", str(out), SOURCE_NAME],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [OBJDUMP, "-d", str(out)], check=True, capture_output=True, text=True
    ).stdout
    return AppElf(out, out.read_bytes(), _functions(listing))


_FUNC = re.compile(r"^([0-9a-f]+) <(\w+)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]+)\s+(\S+)\s*(.*)$")


def _functions(listing: str) -> dict[str, Function]:
    found: dict[str, Function] = {}
    name, start, frame = "", 0, 0
    ra_slot: int | None = None
    calls: dict[str, int] = {}
    for line in listing.splitlines() + [""]:
        head = _FUNC.match(line)
        if head or not line.strip():
            if name:
                found[name] = Function(name, start, frame, ra_slot, calls)
                name = ""
            if head:
                name, start, frame, ra_slot, calls = head[2], int(head[1], 16), 0, None, {}
            continue
        insn = _INSN.match(line)
        if insn is None or not name:
            continue
        address, size = int(insn[1], 16), len(insn[2]) // 2
        op, args = insn[3], insn[4].replace(" ", "")
        if op in ("add", "addi") and args.startswith("sp,sp,-"):
            frame = int(args.split(",")[2][1:])
        elif op == "sw" and args.startswith("ra,") and args.endswith("(sp)"):
            ra_slot = int(args[3:-4])
        elif op in ("jal", "call"):
            target = re.search(r"<(\w+)>", args)
            if target:
                calls[target[1]] = address + size
    return found


def riscv_dump(
    elf: AppElf,
    *,
    chip: str = "esp32c3",
    sha_chars: int = 64,
    value: int = 0x1234,
    padding: int = 0,
) -> tuple[bytes, Crash]:
    """The core dump partition's bytes of the program crashing in `store_value`, and
    what the crash was. `sha_chars`: how much of the ELF's SHA-256 the dump records
    (CONFIG_APP_RETRIEVE_LEN_ELF_SHA); `padding`: extra bytes of RAM dumped (size)."""
    functions = [elf.functions[name] for name in CHAIN]
    stack = bytearray()  # grows down: built from the top (outermost frame) downwards
    sp = STACK_END - 16
    regs = [0] * 32  # x0 is the pc slot, as in the exception frame
    outer_ra = 0  # the task entry returns nowhere: unwinding stops there
    for caller, function in zip((None, *functions), functions, strict=False):
        ret = outer_ra if caller is None else caller.calls[function.name]
        if function.frame:
            sp -= function.frame
            assert function.ra_slot is not None
            frame = bytearray(function.frame)
            struct.pack_into("<I", frame, function.ra_slot, ret)
            stack[0:0] = frame
        else:
            regs[1] = ret  # a leaf: the return address is still in ra
    crashed = functions[-1]
    regs[0] = crashed.start  # its first instruction is the faulting store
    regs[2] = sp
    regs[10] = 0  # a0: the NULL slot
    regs[11] = value  # a1
    regs[8] = value  # s0 holds the value in parse_packet
    exception = struct.pack("<32I5I", *regs, 0x1880, 0x40380000, MCAUSE_STORE_ACCESS_FAULT, 4, 0)
    exception += bytes(-len(exception) % 16)  # the panic handler keeps sp 16-byte aligned
    # The exception frame sits below the interrupted sp, as the panic handler saved it.
    frame_sp = sp - len(exception)
    stack[0:0] = exception
    stack += bytes(16)  # up to STACK_END
    stack_start = frame_sp
    assert stack_start + len(stack) == STACK_END
    crash = Crash(
        pc=regs[0],
        sp=sp,
        fault_address=4,
        mcause=MCAUSE_STORE_ACCESS_FAULT,
        return_addresses=tuple(
            caller.calls[callee.name]
            for caller, callee in zip(
                reversed(functions[:-1]), reversed(functions[1:]), strict=True
            )
        ),
    )
    version = CHIP_IDS[chip] << 16 | 0x0104
    tcb = _tcb(stack_start, "sensor")
    idle_regs = [0] * 32
    idle_stack = struct.pack("<32I", *idle_regs) + bytes(96)
    idle_tcb = _tcb(IDLE_STACK, "IDLE")
    loads = [
        (TCB_ADDR, tcb),
        (stack_start, bytes(stack)),
        (IDLE_TCB, idle_tcb),
        (IDLE_STACK, idle_stack),
    ]
    if padding:
        loads.append((0x3FCA0000, bytes(padding)))
    sha_hex = elf.sha256[:sha_chars].encode().ljust(64, b"\0")
    notes = [
        _note(b"CORE", NT_PRSTATUS, _prstatus(TCB_ADDR, regs)),
        _note(b"CORE", NT_PRSTATUS, _prstatus(IDLE_TCB, idle_regs)),
    ]
    info = [
        _note(b"ESP_CORE_DUMP_INFO", NOTE_ESP_INFO, struct.pack("<I", version) + sha_hex),
        _note(b"EXTRA_INFO", NOTE_EXTRA_INFO, struct.pack("<II", TCB_ADDR, 0)),
    ]
    tasks = [
        _note(b"TASK_INFO", NOTE_TASK_INFO, _task_info(0, TCB_ADDR, stack_start, len(stack))),
        _note(b"TASK_INFO", NOTE_TASK_INFO, _task_info(1, IDLE_TCB, IDLE_STACK, len(idle_stack))),
    ]
    core = _elf_core(loads, [b"".join(notes), b"".join(info), b"".join(tasks)])
    header = struct.pack("<III", 12 + len(core) + 32, version, 3)
    body = header + core
    return body + hashlib.sha256(body).digest(), crash


def riscv_binary_dump(elf: AppElf, *, chip: str = "esp32c3") -> tuple[bytes, Crash]:
    """The same crash in ESP-IDF's older binary format (version 0.2): per task its TCB
    address, stack top and end, the TCB and the stack; then the CRC32. It records no
    app ELF SHA-256: the release is the one the device reported."""
    elf_core, crash = riscv_dump(elf, chip=chip)
    _, _, loads = _read_loads(elf_core[12:-32])
    tcb, stack_start = loads[TCB_ADDR], min(a for a in loads if TCB_ADDR < a < STACK_END)
    idle_tcb, idle_stack = loads[IDLE_TCB], loads[IDLE_STACK]
    body = b""
    for tcb_addr, tcb_bytes, start, stack in (
        (TCB_ADDR, tcb, stack_start, loads[stack_start]),
        (IDLE_TCB, idle_tcb, IDLE_STACK, idle_stack),
    ):
        body += struct.pack("<III", tcb_addr, start, start + len(stack)) + tcb_bytes + stack
    version = CHIP_IDS[chip] << 16 | 0x0002
    header = struct.pack("<IIIII", 20 + len(body) + 4, version, 2, len(tcb), 0)
    data = header + body
    return data + struct.pack("<I", binascii.crc32(data) & 0xFFFFFFFF), crash


def _read_loads(core: bytes) -> tuple[int, int, dict[int, bytes]]:
    count = struct.unpack_from("<H", core, 44)[0]
    loads = {}
    for i in range(count):
        kind, offset, address, _, size = struct.unpack_from("<5I", core, 52 + 32 * i)
        if kind == PT_LOAD:
            loads[address] = core[offset : offset + size]
    return 52, count, loads


def _tcb(stack_top: int, name: str) -> bytes:
    """A FreeRTOS TCB as far as a reader looks: pxTopOfStack, then pcTaskName at 52."""
    tcb = bytearray(0x160)
    struct.pack_into("<I", tcb, 0, stack_top)
    tcb[52 : 52 + 16] = name.encode().ljust(16, b"\0")
    return bytes(tcb)


def _prstatus(tcb: int, regs: list[int]) -> bytes:
    status = bytearray(204)  # elf_prstatus of RISC-V 32: pr_pid at 24, pr_reg at 72
    struct.pack_into("<I", status, 24, tcb)
    struct.pack_into("<32I", status, 72, *regs)
    return bytes(status)


def _task_info(index: int, tcb: int, stack_start: int, stack_len: int) -> bytes:
    return struct.pack("<5I16s", index, 0, tcb, stack_start, stack_len, b"")


def _note(name: bytes, kind: int, desc: bytes) -> bytes:
    name += b"\0"
    return struct.pack("<III", len(name), len(desc), kind) + _pad4(name) + _pad4(desc)


def _pad4(raw: bytes) -> bytes:
    return raw + bytes(-len(raw) % 4)


def _elf_core(loads: list[tuple[int, bytes]], notes: list[bytes], machine: int = EM_RISCV) -> bytes:
    segments = [(PT_LOAD, address, data, 6) for address, data in loads]
    segments += [(PT_NOTE, 0, data, 0) for data in notes]
    offset = 52 + 32 * len(segments)
    header = b"\x7fELF\x01\x01\x01" + bytes(9)
    header += struct.pack(
        "<HHIIIIIHHHHHH", 4, machine, 1, 0, 52, 0, 0, 52, 32, len(segments), 0, 0, 0
    )
    table = b""
    for kind, address, data, flags in segments:
        table += struct.pack("<8I", kind, offset, address, address, len(data), len(data), flags, 0)
        offset += len(data)
    return header + table + b"".join(data for _, _, data, _ in segments)


EM_XTENSA = 0x5E


def xtensa_dump(
    pcs: tuple[int, ...], *, exccause: int, excvaddr: int, sp: int = 0x3FFB5000
) -> tuple[bytes, list[int]]:
    """An ESP32 (Xtensa) dump, laid out by hand (no Xtensa compiler here): the crashed
    task's registers in its CORE note (pc, ps, ..., a0-a15 from index 64, as gdb's
    xtensa_elf_gregset_t), EXCCAUSE and EXCVADDR in EXTRA_INFO as (id, value) pairs,
    and each frame's base save area below its sp holding the next caller's a0 (window
    size bits in its top 2 bits) and that caller's sp, as the windowed ABI spills them.
    Returns the bytes and each frame's stack pointer."""
    stack_base = sp - 0x100
    memory = bytearray(0x400)
    sps = [sp + 0x40 * i for i in range(len(pcs))]
    for i, frame_sp in enumerate(sps[:-1]):
        following = (0x80000000 | (pcs[i + 2] + 3) & 0x3FFFFFFF) if i + 2 < len(pcs) else 0
        struct.pack_into("<II", memory, frame_sp - 16 - stack_base, following, sps[i + 1])
    regs = [0] * 129
    regs[0] = pcs[0]
    regs[64] = 0x80000000 | ((pcs[1] + 3) & 0x3FFFFFFF)  # a0: the caller, window size 8
    regs[65] = sp  # a1
    status = bytearray(72) + struct.pack("<129I", *regs)
    struct.pack_into("<I", status, 24, XTENSA_TCB)
    version = 0 << 16 | 0x0104  # ESP32
    notes = [_note(b"CORE", NT_PRSTATUS, bytes(status))]
    info = [
        _note(b"ESP_CORE_DUMP_INFO", NOTE_ESP_INFO, struct.pack("<I", version) + b"ab" * 32),
        _note(
            b"EXTRA_INFO",
            NOTE_EXTRA_INFO,
            struct.pack("<5I", XTENSA_TCB, 0, exccause, 1, excvaddr),
        ),
        _note(b"TASK_INFO", NOTE_TASK_INFO, _task_info(0, XTENSA_TCB, stack_base, len(memory))),
    ]
    loads = [(XTENSA_TCB, _tcb(stack_base, "main")), (stack_base, bytes(memory))]
    core = _elf_core(loads, [b"".join(notes), b"".join(info)], machine=EM_XTENSA)
    header = struct.pack("<III", 12 + len(core) + 32, version, 3)
    body = header + core
    return body + hashlib.sha256(body).digest(), sps
