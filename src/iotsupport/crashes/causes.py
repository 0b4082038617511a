"""Names of exception causes, as ESP-IDF's panic handler prints them."""

from __future__ import annotations

# RISC-V mcause (privileged spec, table 3.6): exceptions, the interrupt bit clear.
RISCV_CAUSES = {
    0: "Instruction address misaligned",
    1: "Instruction access fault",
    2: "Illegal instruction",
    3: "Breakpoint",
    4: "Load address misaligned",
    5: "Load access fault",
    6: "Store address misaligned",
    7: "Store access fault",
    8: "Environment call from U-mode",
    9: "Environment call from S-mode",
    11: "Environment call from M-mode",
    12: "Instruction page fault",
    13: "Load page fault",
    15: "Store page fault",
}
# Causes whose mtval holds the faulting address (not an instruction's bits).
RISCV_ADDRESS_CAUSES = frozenset({0, 1, 4, 5, 6, 7, 12, 13, 15})
_INTERRUPT = 1 << 31


def riscv_cause_name(mcause: int) -> str:
    if mcause & _INTERRUPT:
        return f"Interrupt {mcause & ~_INTERRUPT}"
    return RISCV_CAUSES.get(mcause, f"Unknown cause {mcause}")


def xtensa_cause_name(exccause: int) -> str:
    """EXCCAUSE as ESP-IDF names it (LoadProhibited, IntegerDivideByZero, ...), from the
    table Espressif's esp-coredump carries (the ISA's names, less their `Cause`)."""
    from esp_coredump.corefile.xtensa import XTENSA_EXCEPTION_CAUSE_DICT

    entry = XTENSA_EXCEPTION_CAUSE_DICT.get(exccause)
    if entry is None:
        return f"Unknown cause {exccause}"
    name = str(entry[0])
    return name[: -len("Cause")] if name.endswith("Cause") else name
