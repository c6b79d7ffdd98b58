"""A bounds-checked byte cursor for the wire-format parsers in :mod:`offchain.abi`.

Every read that would run past the end of the buffer raises :class:`~offchain.errors.ParseError`
with the reason the caller chose (``tpm.attest.malformed``, ``azure.hcl.malformed``...), so a parser
never lets an ``IndexError`` or ``struct.error`` escape. TPM structures are big-endian (TPM 2.0
Part 1, 9.3 "Marshaling"); AMD and Azure structures are little-endian.
"""

from __future__ import annotations

from offchain.errors import ParseError, Reason


class Reader:
    """Reads integers and byte strings front to back; ``finish()`` rejects trailing bytes."""

    __slots__ = ("_data", "_pos", "_reason", "_what")

    def __init__(self, data: bytes, reason: Reason, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._reason = reason
        self._what = what

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def fail(self, detail: str, **context: object) -> ParseError:
        """A ParseError with this reader's reason, naming the structure and the offset."""
        return ParseError(self._reason, f"{self._what}: {detail}", offset=self._pos, **context)

    def take(self, size: int, field: str = "field") -> bytes:
        if size < 0 or self._pos + size > len(self._data):
            raise self.fail(f"{field} needs {size} bytes, {self.remaining} left", field=field)
        out = self._data[self._pos : self._pos + size]
        self._pos += size
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining, "rest")

    def _uint(self, size: int, order: str, field: str) -> int:
        return int.from_bytes(self.take(size, field), order)  # type: ignore[arg-type]

    def u8(self, field: str = "u8") -> int:
        return self._uint(1, "big", field)

    def u16be(self, field: str = "u16") -> int:
        return self._uint(2, "big", field)

    def u32be(self, field: str = "u32") -> int:
        return self._uint(4, "big", field)

    def u64be(self, field: str = "u64") -> int:
        return self._uint(8, "big", field)

    def u32le(self, field: str = "u32") -> int:
        return self._uint(4, "little", field)

    def tpm2b(self, field: str, max_size: int) -> bytes:
        """A TPM2B_*: ``u16 size`` then ``size`` bytes, at most ``max_size`` (TPM 2.0 Part 2, 10.4)."""
        size = self.u16be(f"{field}.size")
        if size > max_size:
            raise self.fail(f"{field} is {size} bytes, at most {max_size} allowed", field=field)
        return self.take(size, field)

    def finish(self) -> None:
        """The structure must end exactly here."""
        if self.remaining:
            raise self.fail(f"{self.remaining} trailing bytes", trailing=self.remaining)


def tpm2b(data: bytes) -> bytes:
    """Marshal a TPM2B_*: ``u16 size`` (big-endian) then the bytes."""
    if len(data) > 0xFFFF:
        raise ParseError(Reason.INPUT_INVALID, f"a TPM2B holds at most 65535 bytes, got {len(data)}")
    return len(data).to_bytes(2, "big") + data
