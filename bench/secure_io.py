"""Benchmark: signing, sealing, opening and verifying a 200 MB package against the crypto floor.

What it measures
    The wall-clock time (time.perf_counter), in one process, of two things over the same bytes:

    * ours  - the package recipes end to end on a package folder of ~200 MB (random float32
              tensors written as safetensors, as a trained model's weights are):
              `sign_package` (hash every file, sign the list: writes model.sig),
              `seal_package` (encrypt every file under a fresh data key into a sealed folder),
              `open_sealed` (decrypt every file in memory, then verify the signature and every
              digest on the decrypted bytes, then the manifest).
              The folders are on disk (the temporary directory), so file reads and writes count.
    * floor - the primitives those four steps cannot avoid, called directly on the same file
              contents already in memory: hashlib.sha256 (sign), AESGCM.encrypt (encrypt),
              AESGCM.decrypt (decrypt) and hashlib.sha256 again (verify the decrypted bytes).
              No files, no JSON, no signature: the cost of the cryptography alone.

    Both run alternately (floor, ours, floor, ours, ...) after one warm-up pair that is not
    counted. The script prints each pair's times and the median of the per-pair ratios
    ours/floor against the target of 1.5. For reference it also prints the ratio to a
    one-way floor (one sha256 + one AES-GCM encryption), which a sign-encrypt-verify-decrypt
    round trip can never reach: it hashes twice and runs AES-GCM both ways.

How to run
    .venv/bin/python bench/secure_io.py [--mb 200] [--repeats 3]

    The default takes about 20 s on 2 CPU cores and needs ~1.5 GB of memory and 450 MB of
    temporary disk. The exit status is 0 whatever the result: this is a benchmark, not a
    test. Its last line is `OK|FAIL: ratio ours/floor (median of pairs): X.XX (target <= 1.5)`.

What makes it fast
    Files are hashed and encrypted from memory maps, and ciphertext is written straight into
    a memory map of the destination file (`AESGCM.encrypt_into`): no intermediate buffers or
    copies. A file up to 1 GiB is one GCM message, so decryption returns the final `bytes`
    (what safetensors parses) without another copy. The remaining overhead is the file
    writes and fsyncs the floor does not do.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from trustforge.package import write_package
from trustforge.secure._envelope import open_sealed, seal_package
from trustforge.secure._keys import Keyring
from trustforge.secure._signing import sign_package

TARGET = 1.5


def make_package(root: Path, mb: int) -> Path:
    """An unsigned package of about `mb` MB: one big weights file and a small preprocess file."""
    g = torch.Generator().manual_seed(0)
    n = mb * (1 << 20) // 4
    weights = {f"layer{i}.weight": torch.randn(n // 4, generator=g) for i in range(4)}
    pre = {"mean": torch.randn(64, generator=g), "std": torch.rand(64, generator=g)}
    return write_package(root / "package", {"name": "bench"}, {"weights.safetensors": weights, "preprocess.safetensors": pre})


def floor(blobs: dict[str, bytes]) -> float:
    """sha256 + AES-256-GCM encrypt + decrypt + sha256 over the same bytes, in memory."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    t0 = time.perf_counter()
    gcm = AESGCM(AESGCM.generate_key(bit_length=256))
    for name, data in blobs.items():
        hashlib.sha256(data).hexdigest()
        nonce = os.urandom(12)
        ct = gcm.encrypt(nonce, data, name.encode())
        pt = gcm.decrypt(nonce, ct, name.encode())
        hashlib.sha256(pt).hexdigest()
        del ct, pt
    return time.perf_counter() - t0


def one_way(blobs: dict[str, bytes]) -> float:
    """sha256 + AES-256-GCM encrypt only (for reference)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    t0 = time.perf_counter()
    gcm = AESGCM(AESGCM.generate_key(bit_length=256))
    for name, data in blobs.items():
        hashlib.sha256(data).hexdigest()
        ct = gcm.encrypt(os.urandom(12), data, name.encode())
        del ct
    return time.perf_counter() - t0


def ours(package: Path, sealed: Path, keyring: Keyring) -> tuple[float, dict[str, float]]:
    """sign_package + seal_package + open_sealed (decrypt and verify); returns total and steps."""
    (package / "model.sig").unlink(missing_ok=True)
    shutil.rmtree(sealed, ignore_errors=True)
    steps = {}
    t0 = time.perf_counter()
    sign_package(package, keyring)
    t1 = time.perf_counter()
    seal_package(package, sealed, keyring)
    t2 = time.perf_counter()
    blobs = open_sealed(sealed, keyring)
    t3 = time.perf_counter()
    assert len(blobs["weights.safetensors"]) == (package / "weights.safetensors").stat().st_size
    del blobs
    steps = {"sign": t1 - t0, "seal": t2 - t1, "open+verify": t3 - t2}
    return t3 - t0, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="package size in MB (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="counted pairs after one warm-up (default 3)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tf-secure-io-") as tmp:
        root = Path(tmp)
        keyring = Keyring.init(root / "keys")
        package = make_package(root, args.mb)
        size = sum(p.stat().st_size for p in package.iterdir())
        blobs = {p.name: p.read_bytes() for p in sorted(package.iterdir())}
        print(f"package: {size / 1e6:.1f} MB in {len(blobs)} files; {args.repeats} pairs after 1 warm-up", flush=True)
        ratios, floors, oursl, ways = [], [], [], []
        for i in range(args.repeats + 1):
            f = floor(blobs)
            o, steps = ours(package, root / "sealed", keyring)
            w = one_way(blobs)
            label = "warm-up" if i == 0 else f"pair {i}"
            detail = ", ".join(f"{k} {v:.3f}" for k, v in steps.items())
            print(f"{label:8s} floor {f:.3f} s  ours {o:.3f} s ({detail})  ratio {o / f:.2f}  one-way floor {w:.3f} s", flush=True)
            if i:
                ratios.append(o / f)
                floors.append(f)
                oursl.append(o)
                ways.append(w)
    med = statistics.median(ratios)
    print(
        f"median: floor {statistics.median(floors):.3f} s, ours {statistics.median(oursl):.3f} s "
        f"({size / 1e6 / statistics.median(oursl):.0f} MB/s end to end)"
    )
    print(f"reference: ours / one-way floor (sha256 + AES-GCM encrypt once): {statistics.median(oursl) / statistics.median(ways):.2f}")
    print(f"{'OK' if med <= TARGET else 'FAIL'}: ratio ours/floor (median of pairs): {med:.2f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
