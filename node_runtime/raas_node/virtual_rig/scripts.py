"""pigpiod scripts in the virtual rig: a parser and an interpreter for a subset of the language.

pigpiod runs stored scripts in its own threads, so a script keeps working after the client that
stored it is gone: that is what the dead-man switch relies on. The rig runs each script as an
asyncio task with pigpiod's semantics (see pigpio's ``pigs`` "Scripts" and its ``pthScript``):
registers A (accumulator) and F (flags), variables v0–v149, parameters p0–p9 (set by run/update,
writable by the script), tags as jump targets. A daemon command inside a script stores its
result in A and F. All arithmetic is 32-bit signed.

Supported commands (the rest of the language answers ``PI_BAD_SCRIPT_CMD`` at store time):
``TAG JMP JZ JNZ JM JP CALL RET HALT NOP LD LDA STA CMP ADD SUB AND OR XOR INR DCR INRA DCRA``
and the daemon commands ``MILS MICS PWM/P WRITE/W READ/R TICK/T BR1``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from raas_node.virtual_rig.protocol import MAX_SCRIPT_PARAMS, MAX_SCRIPT_VARS, Error, ScriptState, to_int32

logger = logging.getLogger(__name__)

MAX_MILS = 60000
MAX_MICS = 1_000_000
_INSTRUCTIONS_PER_YIELD = 1000

OperandKind = Literal["num", "var", "par"]
_ALIASES = {"P": "PWM", "W": "WRITE", "R": "READ", "T": "TICK"}
_SIGNATURES: dict[str, tuple[str, ...]] = {
    # argument kinds: "tag" a number; "reg" a variable or parameter; "any" number, variable or parameter
    "TAG": ("tag",),
    "JMP": ("tag",),
    "JZ": ("tag",),
    "JNZ": ("tag",),
    "JM": ("tag",),
    "JP": ("tag",),
    "CALL": ("tag",),
    "RET": (),
    "HALT": (),
    "NOP": (),
    "LD": ("reg", "any"),
    "LDA": ("any",),
    "STA": ("reg",),
    "CMP": ("any",),
    "ADD": ("any",),
    "SUB": ("any",),
    "AND": ("any",),
    "OR": ("any",),
    "XOR": ("any",),
    "INR": ("reg",),
    "DCR": ("reg",),
    "INRA": (),
    "DCRA": (),
    "MILS": ("any",),
    "MICS": ("any",),
    "PWM": ("any", "any"),
    "WRITE": ("any", "any"),
    "READ": ("any",),
    "TICK": (),
    "BR1": (),
}
DAEMON_COMMANDS = frozenset({"PWM", "WRITE", "READ", "TICK", "BR1"})
"""Script commands that are daemon commands: the host executes them, the result goes to A."""
_JUMPS = frozenset({"JMP", "JZ", "JNZ", "JM", "JP", "CALL"})


class ScriptError(Exception):
    """A script that pigpiod would refuse; ``code`` is the pigpio error to answer."""

    def __init__(self, code: Error, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Operand:
    kind: OperandKind
    value: int


@dataclass(frozen=True)
class Instruction:
    name: str
    operands: tuple[Operand, ...]


@dataclass(frozen=True)
class Program:
    """A parsed script: instructions without tags, jump operands resolved to instruction indexes."""

    instructions: tuple[Instruction, ...]


def parse_script(text: str) -> Program:
    """Parse script text as pigpiod does (case-insensitive, whitespace-separated); raises ScriptError."""
    tokens = text.split()
    instructions: list[Instruction] = []
    tags: dict[int, int] = {}
    position = 0
    while position < len(tokens):
        word = tokens[position].upper()
        name = _ALIASES.get(word, word)
        position += 1
        if name not in _SIGNATURES:
            raise ScriptError(Error.BAD_SCRIPT_CMD, f"unknown or unsupported script command {word!r}")
        operands = []
        for kind in _SIGNATURES[name]:
            if position >= len(tokens):
                raise ScriptError(Error.BAD_SCRIPT_CMD, f"{word} is missing an argument")
            operands.append(_operand(tokens[position], kind, word))
            position += 1
        if name == "TAG":
            tag = operands[0].value
            if tag in tags:
                raise ScriptError(Error.DUP_TAG, f"tag {tag} is defined twice")
            tags[tag] = len(instructions)
        else:
            instructions.append(Instruction(name, tuple(operands)))
    return Program(tuple(_resolve_jump(instruction, tags) for instruction in instructions))


def _resolve_jump(instruction: Instruction, tags: dict[int, int]) -> Instruction:
    if instruction.name not in _JUMPS:
        return instruction
    tag = instruction.operands[0].value
    if tag not in tags:
        raise ScriptError(Error.BAD_TAG, f"{instruction.name} to undefined tag {tag}")
    return Instruction(instruction.name, (Operand("num", tags[tag]),))


def _operand(token: str, kind: str, command: str) -> Operand:
    lowered = token.lower()
    if lowered[:1] in ("v", "p") and lowered[1:].isdigit():
        index = int(lowered[1:])
        register: OperandKind = "var" if lowered[0] == "v" else "par"
        limit = MAX_SCRIPT_VARS if register == "var" else MAX_SCRIPT_PARAMS
        if kind == "tag" or index >= limit:
            raise ScriptError(Error.BAD_SCRIPT_CMD, f"bad argument {token!r} to {command}")
        return Operand(register, index)
    if kind == "reg":
        raise ScriptError(Error.BAD_SCRIPT_CMD, f"{command} needs a variable or parameter, got {token!r}")
    return Operand("num", to_int32(_parse_number(token, command)))


def _parse_number(token: str, command: str) -> int:
    """A number as C's ``%i`` reads it: decimal, 0x hexadecimal or 0 octal, optionally signed."""
    sign, digits = (-1, token[1:]) if token.startswith("-") else (1, token.lstrip("+"))
    try:
        if digits.lower().startswith("0x"):
            return sign * int(digits[2:], 16)
        if len(digits) > 1 and digits.startswith("0"):
            return sign * int(digits[1:], 8)
        return sign * int(digits, 10)
    except ValueError:
        raise ScriptError(Error.BAD_SCRIPT_CMD, f"bad number {token!r} for {command}") from None


DaemonCommand = Callable[[str, int, int], int]
"""How a script runs a daemon command: (name, p1, p2) → pigpio result."""


@dataclass
class StoredScript:
    """A script slot of the daemon and its run state."""

    script_id: int
    program: Program
    state: ScriptState = ScriptState.INITING
    params: list[int] = field(default_factory=lambda: [0] * MAX_SCRIPT_PARAMS)
    variables: list[int] = field(default_factory=lambda: [0] * MAX_SCRIPT_VARS)
    task: asyncio.Task[None] | None = None

    def set_params(self, values: list[int]) -> None:
        for index, value in enumerate(values[:MAX_SCRIPT_PARAMS]):
            self.params[index] = to_int32(value)

    async def run(self, daemon_command: DaemonCommand) -> None:
        """Execute from the first instruction until HALT, the end, a failure, or cancellation."""
        self.state = ScriptState.RUNNING
        try:
            failed = await self._execute(daemon_command)
        except asyncio.CancelledError:
            self.state = ScriptState.HALTED
            raise
        except Exception:
            logger.exception("script %d failed", self.script_id)
            failed = True
        self.state = ScriptState.FAILED if failed else ScriptState.HALTED

    async def _execute(self, daemon_command: DaemonCommand) -> bool:
        instructions = self.program.instructions
        accumulator = flags = counter = executed = 0
        stack: list[int] = []
        while counter < len(instructions):
            instruction = instructions[counter]
            name = instruction.name
            values = [self._value(operand) for operand in instruction.operands]
            first = values[0] if values else 0
            counter += 1
            if name in ("MILS", "MICS"):
                limit, scale = (MAX_MILS, 1e-3) if name == "MILS" else (MAX_MICS, 1e-6)
                if 0 <= first <= limit:
                    await asyncio.sleep(first * scale)
                    accumulator = 0
                else:
                    accumulator = Error.BAD_MILS_DELAY if name == "MILS" else Error.BAD_MICS_DELAY
                flags = accumulator
                continue
            if name in DAEMON_COMMANDS:
                accumulator = flags = to_int32(daemon_command(name, first, values[1] if len(values) > 1 else 0))
            elif name == "HALT":
                return False
            elif name == "RET":
                if not stack:
                    return True
                counter = stack.pop()
            elif name in _JUMPS:
                if name == "CALL":
                    stack.append(counter)
                if _jump_taken(name, flags):
                    counter = first
            elif name in ("LD", "STA", "INR", "DCR"):
                stored = self._store(name, instruction.operands[0], values, accumulator)
                flags = flags if name in ("LD", "STA") else stored
            else:
                accumulator, flags = _arithmetic(name, accumulator, flags, first)
            executed += 1
            if executed % _INSTRUCTIONS_PER_YIELD == 0:
                await asyncio.sleep(0)  # a script without delays must not starve the daemon
        return False

    def _value(self, operand: Operand) -> int:
        if operand.kind == "var":
            return self.variables[operand.value]
        if operand.kind == "par":
            return self.params[operand.value]
        return operand.value

    def _store(self, name: str, target: Operand, values: list[int], accumulator: int) -> int:
        """LD/STA/INR/DCR into a variable or parameter; returns the value stored."""
        registers = self.variables if target.kind == "var" else self.params
        if name == "LD":
            registers[target.value] = values[1]
        elif name == "STA":
            registers[target.value] = accumulator
        else:
            registers[target.value] = to_int32(registers[target.value] + (1 if name == "INR" else -1))
        return registers[target.value]


def _jump_taken(name: str, flags: int) -> bool:
    if name in ("JMP", "CALL"):
        return True
    if name == "JZ":
        return flags == 0
    if name == "JNZ":
        return flags != 0
    if name == "JM":
        return flags < 0
    return flags >= 0  # JP


def _arithmetic(name: str, accumulator: int, flags: int, value: int) -> tuple[int, int]:
    """(A, F) after an accumulator instruction."""
    if name == "NOP":
        return accumulator, flags
    if name == "LDA":
        return value, flags
    if name == "CMP":
        return accumulator, to_int32(accumulator - value)
    results = {
        "ADD": lambda: accumulator + value,
        "SUB": lambda: accumulator - value,
        "AND": lambda: accumulator & value,
        "OR": lambda: accumulator | value,
        "XOR": lambda: accumulator ^ value,
        "INRA": lambda: accumulator + 1,
        "DCRA": lambda: accumulator - 1,
    }
    result = to_int32(results[name]())
    return result, result
