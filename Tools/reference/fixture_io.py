"""Writer for the "MIMF" golden fixtures shared by the scripts in Tools/reference.

File format (every integer a little-endian UInt32, every value a little-endian float32):
    magic "MIMF", version 1, tensor count, then per tensor:
    name length, UTF-8 name, rank, rank x dim, prod(dims) x float32.
Rank-0 tensors hold one value. Tensors are written in the order they were added.
The Swift reader is Fixture in the test support code (FixtureReader.swift).

Noise bands (`banded`): a fixture is computed once in float64, the reference every output is
compared with, and several times in float32, each with another pattern of rounding errors (one
or two threads, every initial weight nudged by one ulp up or down with a seeded coin). For each
output <name> the file then holds the float64 values and band.<name>: per element, the widest
distance of a float32 realisation from float64, plus the rounding of the stored value itself.
A float32 implementation that is right lands inside a small multiple of that band; where the
computation is ill-conditioned (Adam's division by √v̂ of a gradient that is pure rounding
noise, cancelling sums) the band is wide, and exact where the result is an analytic zero.
"""

import argparse
import struct
from pathlib import Path
from typing import Callable

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
        # Kept in float64 until written, so a float64 run's values can be compared before rounding.
        self.records.append((name, np.array(value, dtype=np.float64, copy=True)))
        self._names.add(name)

    def __getitem__(self, name: str) -> np.ndarray:
        return next(value for n, value in self.records if n == name)

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


class Realisation:
    """One way to compute a fixture: float64 (the reference), or float32 with its own rounding
    history. The fixture's make function builds its model and inputs as usual (inputs generated
    in float32, so every realisation sees the same values), then calls `weights` on the model
    after its initialisation and `input` on every floating-point input."""

    def __init__(self, dtype: torch.dtype, threads: int = 1, nudge_seed: int | None = None) -> None:
        self.dtype, self.threads, self.nudge_seed = dtype, threads, nudge_seed

    def weights(self, model: torch.nn.Module) -> torch.nn.Module:
        model.to(self.dtype)
        if self.nudge_seed is not None:
            g = torch.Generator().manual_seed(self.nudge_seed)
            with torch.no_grad():
                for p in model.parameters():
                    up = torch.randint(0, 2, p.shape, generator=g).bool()
                    toward = torch.where(up, torch.full_like(p, float("inf")), torch.full_like(p, float("-inf")))
                    p.copy_(torch.nextafter(p, toward))
        return model

    def input(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype)

    def __repr__(self) -> str:
        return f"Realisation({self.dtype}, threads={self.threads}, nudge={self.nudge_seed})"


REFERENCE = Realisation(torch.float64)
# The first float32 realisation computes exactly as the old single-run fixtures did.
FLOAT32_REALISATIONS = [Realisation(torch.float32), Realisation(torch.float32, threads=2)] + [
    Realisation(torch.float32, nudge_seed=s) for s in (1, 2, 3, 4)]


def make_nontrivial(model: torch.nn.Module, g: torch.Generator, tables: tuple[str, ...] = ()) -> None:
    """Weights a test can tell apart, drawn from `g` in a fixed order: Xavier-uniform linear
    weights, LayerNorm weights 1 + 0.1·N(0,1), every bias 0.05·N(0,1), and the parameters whose
    names end with one of `tables` (position tables, tokens) 0.3·N(0,1). transformers' own init
    leaves norms at one, biases and tokens at zero, which hides mistakes of order and sign."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                bound = (6.0 / (module.in_features + module.out_features)) ** 0.5
                module.weight.copy_((torch.rand(module.weight.shape, dtype=torch.float32, generator=g) * 2 - 1) * bound)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, dtype=torch.float32, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, dtype=torch.float32, generator=g))
            elif tables and name.endswith(tables):
                p.copy_(0.3 * torch.randn(p.shape, dtype=torch.float32, generator=g))


def run_as(real: Realisation, make: Callable[[Realisation], FixtureWriter]) -> FixtureWriter:
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(real.dtype)
    torch.set_num_threads(real.threads)
    try:
        return make(real)
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def banded(make: Callable[[Realisation], FixtureWriter], inputs: tuple[str, ...]) -> FixtureWriter:
    """The fixture of `make` in float64 with a band.<name> for every record whose name does not
    start with one of `inputs` (inputs, initial weights and exact tables are stored as they are,
    and must come out the same in float64 as in float32)."""
    ref = run_as(REFERENCE, make)
    runs = [dict(run_as(r, make).records) for r in FLOAT32_REALISATIONS]
    out = FixtureWriter()
    for name, x64 in ref.records:
        out.add(name, x64)
        if name.startswith(inputs):
            plain = runs[0][name].astype(np.float32)
            assert np.array_equal(plain, x64.astype(np.float32)), f"input {name} differs between float32 and float64"
            continue
        spread = np.zeros_like(x64)
        for r in runs:
            spread = np.maximum(spread, np.abs(r[name] - x64))
        stored = np.abs(x64.astype(np.float32).astype(np.float64) - x64)
        out.add(f"band.{name}", spread + stored)
    return out


def export_cli(doc: str, generate: Callable[[], None], check_export: Callable[[Path], None], loads_with: str) -> None:
    """The command line of a script with an export check: writes its fixture, or with
    --check-export DIR loads DIR (`loads_with` says how) and compares it with the fixture.
    One thread and deterministic kernels either way, so reruns write the same bytes."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--check-export", type=Path, metavar="DIR", help=f"load DIR with {loads_with} and compare with the fixture")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.check_export:
        check_export(args.check_export)
    else:
        generate()
