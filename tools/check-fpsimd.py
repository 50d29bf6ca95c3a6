#!/usr/bin/env python3
"""FP/SIMD gate: reads `objdump -d` of the hypervisor-side Rust objects on stdin and fails on any
instruction that touches an FP/SIMD/SVE register or FP control state.

Xen does not save a guest's FP/SIMD registers on entry to the hypervisor, so one such
instruction in Rust code silently corrupts guest state. `--self-test` checks the gate itself.
"""
import re
import sys

# A register operand: b/h/s/d/q/v 0..31 (with an optional arrangement or lane) or SVE z/p.
FP_REG = re.compile(r"(?<![\w.])([bhsdqv]([12]?[0-9]|3[01])(\.\d*[bhsdq])?(\[\d+\])?|z([12]?[0-9]|3[01])\.\w|p([0-9]|1[0-5])/[mz])(?![\w])")
FP_SYSREG = re.compile(r"\b(fpcr|fpsr|fpexc32_el2|zcr_el[12])\b", re.I)
# Mnemonics that only exist for FP/SIMD even when every operand is hidden in a memory form.
FP_MNEMONIC = re.compile(r"^(f[a-z]+|[su]cvtf|ld[1-4]r?|st[1-4]|dup|ins|umov|smov|movi|mvni|fmov|tbl|tbx|zip[12]|uzp[12]|trn[12]|ext|cnt|addv|uaddlv|saddlv)(\.|$)")
# Branch/address mnemonics whose operand is an address that objdump prints as bare hex ("b d0").
ADDRESS_OPERAND = re.compile(r"^(b|bl|b\.\w+|bc\.\w+|cbn?z|tbn?z|adrp?|ldr|prfm)$")
INSN = re.compile(r"^\s*[0-9a-f]+:\s+(\S+)\s*(.*)$")


def offending(line):
    m = INSN.match(line)
    if not m:
        return False
    mnemonic, operands = m.group(1), m.group(2)
    # Drop the comment and objdump's symbolic annotation ("b4 <<a as b>::c+0xb4>"), which
    # can nest angle brackets.
    operands = operands.split("//")[0].split("<")[0]
    if FP_MNEMONIC.match(mnemonic) or FP_SYSREG.search(operands):
        return True
    if ADDRESS_OPERAND.match(mnemonic):
        # Keep the register operands, drop the target address.
        parts = [p.strip() for p in operands.split(",")]
        operands = ",".join(p for p in parts if not re.fullmatch(r"[0-9a-f]+", p))
    return bool(FP_REG.search(operands))


def gate(lines):
    bad, current = [], "?"
    for line in lines:
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            current = header.group(1)
        elif offending(line):
            bad.append(f"{current}: {line.strip()}")
    return bad


SELF_TEST = {
    "  10:\tstr\tq0, [sp, #16]": True,
    "  14:\tldp\td8, d9, [sp]": True,
    "  18:\tfmov\tx0, d0": True,
    "  1c:\tmov\tv0.16b, v1.16b": True,
    "  20:\tmsr\tfpcr, x0": True,
    "  24:\tld1\t{v0.2d}, [x1]": True,
    "  28:\tldr\ts0, [x0]": True,
    "  2c:\tb\td0 <foo+0x10>": False,
    "  30:\tbl\t1b4 <printk>": False,
    "  34:\tadrp\tx0, d000 <bar>": False,
    "  38:\tldr\tx0, [sp, #8]": False,
    "  3c:\tadd\tx0, x1, #0xd0": False,
    "  40:\tcbz\tw1, b8 <f>": False,
    "  44:\tsub\tsp, sp, #0x30": False,
    "  48:\tldr\tx1, 3f0 <q0>": False,
    "  4c:\tb.eq\tb8 <<iter::Split<char>>::next+0xb8>  // b.none": False,
    "  50:\ttbnz\tw10, #0, b4 <div::<u64>+0xb4>": False,
    "  54:\tb.ne\td0 <<a::B>::c+0xd0>  // b.any": False,
}


def self_test():
    wrong = [line for line, want in SELF_TEST.items() if offending(line) != want]
    for line in wrong:
        print(f"check-fpsimd self-test: misjudged {line!r}", file=sys.stderr)
    print(f"check-fpsimd self-test: {len(SELF_TEST) - len(wrong)} passed, {len(wrong)} failed")
    return 1 if wrong else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    lines = sys.stdin.read().splitlines()
    insns = sum(1 for line in lines if INSN.match(line))
    if insns == 0:
        print("check-fpsimd: no instructions on stdin: nothing was checked", file=sys.stderr)
        return 1
    bad = gate(lines)
    for b in bad:
        print(f"check-fpsimd: FP/SIMD use: {b}", file=sys.stderr)
    if bad:
        return 1
    print(f"check-fpsimd: {insns} instructions, no FP/SIMD", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
