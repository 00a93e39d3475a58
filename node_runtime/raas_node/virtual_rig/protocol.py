"""pigpiod's socket protocol: frame layouts, the command numbers the virtual rig answers, error codes.

A request is 16 bytes, little-endian ``IIII`` (cmd, p1, p2, p3), followed by ``p3`` extension
bytes. The reply echoes cmd, p1, p2 and puts the result in the fourth field (negative = error);
commands that return data (PROCP) follow the reply with that many bytes. After NOIB a
connection becomes a notification stream: 12-byte ``HHII`` reports (seqno, flags, tick, levels of
GPIO 0–31). Numbers and codes are those of pigpio 1.78 (``pigpio.py``, ``pigpio.h``).
"""

from __future__ import annotations

import enum
import struct

REQUEST = struct.Struct("<IIII")
REPORT = struct.Struct("<HHII")
SCRIPT_STATUS = struct.Struct("<11i")
"""PROCP data: run state, then parameters p0..p9."""
MAX_EXTENSION_BYTES = 65536
MAX_NOTIFY_HANDLES = 32
MAX_SCRIPTS = 32
MAX_SCRIPT_PARAMS = 10
MAX_SCRIPT_VARS = 150
HARDWARE_REVISION = 0xA02082
"""What HWVER answers: a Raspberry Pi 3 Model B."""
PIGPIO_VERSION = 79


class Command(enum.IntEnum):
    """pigpiod command numbers the virtual rig implements."""

    MODES = 0
    MODEG = 1
    PUD = 2
    READ = 3
    WRITE = 4
    PWM = 5
    PRS = 6
    PFS = 7
    BR1 = 10
    BR2 = 11
    TICK = 16
    HWVER = 17
    NO = 18
    NB = 19
    NP = 20
    NC = 21
    PRG = 22
    PFG = 23
    PRRG = 24
    PIGPV = 26
    PROC = 38
    PROCD = 39
    PROCR = 40
    PROCS = 41
    PROCP = 45
    MICS = 46
    MILS = 47
    PARSE = 48
    GDC = 83
    NOIB = 99
    PROCU = 117


class Error(enum.IntEnum):
    """pigpio error codes the virtual rig answers with."""

    BAD_USER_GPIO = -2
    BAD_GPIO = -3
    BAD_MODE = -4
    BAD_LEVEL = -5
    BAD_PUD = -6
    BAD_DUTYCYCLE = -8
    BAD_DUTYRANGE = -21
    NO_HANDLE = -24
    BAD_HANDLE = -25
    BAD_SCRIPT_ID = -48
    DUP_TAG = -53
    BAD_SCRIPT_CMD = -55
    NO_SCRIPT_ROOM = -57
    TOO_MANY_PARAM = -61
    NOT_HALTED = -62
    BAD_TAG = -63
    BAD_MICS_DELAY = -64
    BAD_MILS_DELAY = -65
    UNKNOWN_COMMAND = -88
    NOT_PWM_GPIO = -92
    MSG_TOOBIG = -103


class ScriptState(enum.IntEnum):
    """Run states of a stored script (``script_status``)."""

    INITING = 0
    HALTED = 1
    RUNNING = 2
    WAITING = 3
    FAILED = 4


def reply(cmd: int, p1: int, p2: int, result: int) -> bytes:
    """A 16-byte reply frame (negative results as two's complement)."""
    return REQUEST.pack(cmd, p1, p2, result & 0xFFFFFFFF)


def to_int32(value: int) -> int:
    """C ``int`` wrap-around of an integer."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value
