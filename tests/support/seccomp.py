#!/usr/bin/env python3
"""Run a program under a seccomp filter that refuses chosen system calls with a chosen errno, as a
container runtime's profile would: the tests' stand-in for a profile older than the pidfd calls, or a
sandbox that refuses prctl(PR_SET_CHILD_SUBREAPER).

Usage: seccomp.py ERRNO CALL[:ARG0]... -- PROGRAM ARGS...
  ERRNO      EPERM, ENOSYS or EINVAL
  CALL       pidfd_open, pidfd_send_signal or prctl; with :ARG0 only when the first argument equals ARG0
             (prctl:36 is PR_SET_CHILD_SUBREAPER)

Sets PR_SET_NO_NEW_PRIVS (so that no privilege is needed to install a filter), installs the filter, and
execs PROGRAM. The filter knows the x86_64 and i386 numbering (an i686 build of grace runs natively on an
x86_64 kernel, with the i386 numbers; an aarch64 build under qemu-user makes the host's x86_64 calls); any
other architecture is let through, so the refusal cannot silently miss: the test sees the call succeed.
"""
import ctypes
import errno
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

# The system call numbers of each architecture (pidfd calls share one numbering across architectures).
NUMBERS = {
    AUDIT_ARCH_X86_64: {"prctl": 157, "pidfd_send_signal": 424, "pidfd_open": 434},
    AUDIT_ARCH_I386: {"prctl": 172, "pidfd_send_signal": 424, "pidfd_open": 434},
}

# Classic BPF, as seccomp runs it.
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K

# Offsets in struct seccomp_data: nr (int), arch (u32), instruction_pointer (u64), args[6] (u64 each).
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16  # little-endian: the low 32 bits of args[0]


def assemble(program):
    """`program`: a list of (code, target_if_true, target_if_false, k) with symbolic labels as targets, and
    ("label", name) entries. Returns the packed sock_filter array with relative jumps resolved."""
    positions, index = {}, 0
    for item in program:
        if item[0] == "label":
            positions[item[1]] = index
        else:
            index += 1
    packed, index = b"", 0
    for item in program:
        if item[0] == "label":
            continue
        code, when_true, when_false, k = item

        def offset(target):
            if target is None:
                return 0
            jump = positions[target] - index - 1
            assert 0 <= jump < 256, f"jump to {target} out of range"
            return jump

        packed += struct.pack("HBBI", code, offset(when_true), offset(when_false), k)
        index += 1
    return packed, index


def filter_program(error, calls):
    refuse = SECCOMP_RET_ERRNO | error
    program = [(BPF_LD_W_ABS, None, None, OFFSET_ARCH)]
    for arch in NUMBERS:
        program.append((BPF_JEQ_K, f"arch {arch}", None, arch))
    program.append((BPF_RET_K, None, None, SECCOMP_RET_ALLOW))
    for arch, numbers in NUMBERS.items():
        program.append(("label", f"arch {arch}"))
        for index, (name, arg0) in enumerate(calls):
            program.append((BPF_LD_W_ABS, None, None, OFFSET_NR))
            next_call = f"arch {arch} call {index + 1}"
            if arg0 is None:
                program.append((BPF_JEQ_K, "refuse", next_call, numbers[name]))
            else:
                program.append((BPF_JEQ_K, None, next_call, numbers[name]))
                program.append((BPF_LD_W_ABS, None, None, OFFSET_ARG0_LOW))
                program.append((BPF_JEQ_K, "refuse", next_call, arg0))
            program.append(("label", next_call))
        program.append((BPF_RET_K, None, None, SECCOMP_RET_ALLOW))
    program.append(("label", "refuse"))
    program.append((BPF_RET_K, None, None, refuse))
    return assemble(program)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main():
    arguments = sys.argv[1:]
    split = arguments.index("--")
    error = getattr(errno, arguments[0])
    calls = []
    for call in arguments[1:split]:
        name, _, arg0 = call.partition(":")
        if name not in NUMBERS[AUDIT_ARCH_X86_64]:
            sys.exit(f"seccomp.py: unknown call {name}")
        calls.append((name, int(arg0) if arg0 else None))
    program = arguments[split + 1 :]
    packed, count = filter_program(error, calls)
    buffer = ctypes.create_string_buffer(packed, len(packed))
    fprog = SockFprog(count, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        sys.exit(f"seccomp.py: PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        sys.exit(f"seccomp.py: PR_SET_SECCOMP: {os.strerror(ctypes.get_errno())}")
    os.execvp(program[0], program)


if __name__ == "__main__":
    main()
