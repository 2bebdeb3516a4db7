#!/usr/bin/env python3
"""A file system that stops answering, as a network or FUSE mount does when its server goes away: a minimal
FUSE server (the kernel protocol on /dev/fuse, no library) with an empty root directory. It prints "mounted",
answers until STALL_FILE exists, then prints "stalled" and answers nothing more (every access to the mount then
waits in the kernel) until it is killed.

Usage: fuse_stall.py MOUNTPOINT STALL_FILE"""
import ctypes
import errno
import os
import signal
import struct
import sys

mountpoint, stall_file = sys.argv[1], sys.argv[2]
fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
options = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
if libc.mount(b"stall", mountpoint.encode(), b"fuse", 0, options) != 0:
    raise SystemExit("mount: " + os.strerror(ctypes.get_errno()))
print("mounted", flush=True)


def reply(unique, error=0, payload=b""):
    os.write(fd, struct.pack("<IiQ", 16 + len(payload), error, unique) + payload)


def directory_attributes():
    attributes = struct.pack("<QQQQQQIIIIIIIIII", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
    return struct.pack("<QII", 1, 0, 0) + attributes


INIT, GETATTR, LOOKUP, FORGET, INTERRUPT, BATCH_FORGET = 26, 3, 1, 2, 36, 42
while True:
    try:
        request = os.read(fd, 1 << 20)
    except OSError as error:
        if error.errno == errno.ENODEV:
            break
        raise
    length, opcode, unique, node = struct.unpack_from("<IIQQ", request)
    if os.path.exists(stall_file):
        print("stalled", flush=True)
        while True:
            signal.pause()
    if opcode == INIT:
        reply(unique, 0, struct.pack("<IIIIHHIIHHII", 7, 31, 0, 0, 16, 12, 4096, 1, 0, 0, 0, 0) + b"\0" * 24)
    elif opcode == GETATTR:
        reply(unique, 0, directory_attributes())
    elif opcode in (FORGET, BATCH_FORGET, INTERRUPT):
        pass
    elif opcode == LOOKUP:
        reply(unique, -errno.ENOENT)
    else:
        reply(unique, -errno.ENOSYS)
