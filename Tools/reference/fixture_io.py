"""Writer for the "MIMF" golden fixtures shared by the scripts in Tools/reference.

File format (every integer a little-endian UInt32, every value a little-endian float32):
    magic "MIMF", version 1, tensor count, then per tensor:
    name length, UTF-8 name, rank, rank x dim, prod(dims) x float32.
Rank-0 tensors hold one value. Tensors are written in the order they were added.
The Swift reader is Fixture in the test support code (FixtureReader.swift).
"""

import struct
from pathlib import Path

import numpy as np
import torch

MAGIC = b"MIMF"
VERSION = 1


class FixtureWriter:
    """Collects named float32 tensors, then writes them as one MIMF file."""

    def __init__(self) -> None:
        self.records: list[tuple[str, np.ndarray]] = []
        self._names: set[str] = set()

    def add(self, name: str, value) -> None:
        if name in self._names:
            raise ValueError(f"tensor '{name}' recorded twice")
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        # A copy: .numpy() shares memory with tensors that later code may update in place.
        self.records.append((name, np.array(value, dtype=np.float32, copy=True)))
        self._names.add(name)

    def to_bytes(self) -> bytes:
        blob = bytearray(MAGIC)
        blob += struct.pack("<II", VERSION, len(self.records))
        for name, arr in self.records:
            encoded = name.encode("utf-8")
            blob += struct.pack("<I", len(encoded)) + encoded
            blob += struct.pack("<I", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
            blob += arr.astype("<f4").tobytes()
        return bytes(blob)

    def write(self, path: Path) -> int:
        """Writes the file (creating its folder) and returns its size in bytes."""
        blob = self.to_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        return len(blob)
