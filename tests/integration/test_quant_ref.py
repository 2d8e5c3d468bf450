#!/usr/bin/env python3
"""halyard's reference (de)quantizers against independent implementations, on fresh
random data every run (`halyard quant-row` does the halyard side):

  * gguf.quants (numpy): dequantization for every type gguf implements, from bytes made by
    gguf's own quantizer where it has one and from random valid blocks otherwise; and
    quantization, byte for byte, for f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0.
  * numpy by hand for the types gguf cannot dequantize (q8_1, q8_K, integers, f64).
  * ggml itself (libggml-base.so via ctypes) when llama-cpp-python is installed in the
    venv: every quantizer and dequantizer, byte for byte. Without it, the committed
    fixture (tests/unit/test_quant.c) still pins the K-quant quantizers to ggml.

Float outputs must match bit for bit (NaN matches any NaN). The seed is printed;
QUANT_SEED=N reruns a failing case.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize
    from gguf.quants import quantize as gguf_quantize
except ImportError as e:
    print(f"SKIP: numpy/gguf not available ({e})")
    sys.exit(77)

ROOT = os.environ.get("HALYARD_ROOT", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_quant_fixture as mq  # noqa: E402  (ggml wrapper, type table, random blocks)

BIN = os.environ.get("HALYARD_BIN", "build/halyard")
SEED = int(os.environ.get("QUANT_SEED", int.from_bytes(os.urandom(4), "little")))
GGUF_QUANTIZES = ["f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
GGUF_DEQUANTIZES = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                    "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
failures = []
n_checks = 0


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def halyard(tmp, tname, mode, data):
    """Runs quant-row on data (bytes); returns (rc, output bytes or None, stderr)."""
    global n_checks
    n_checks += 1
    src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(src, "wb") as f:
        f.write(data)
    if os.path.exists(dst):
        os.unlink(dst)
    p = subprocess.run([BIN, "quant-row", "--type", tname, mode, src, dst],
                       capture_output=True, text=True)
    out = open(dst, "rb").read() if p.returncode == 0 else None
    return p.returncode, out, p.stderr


def rows(rng):
    """Named rows of several sizes (multiples of 256) and distributions."""
    out = {}
    for n in (256, 512, 1024, 4096):
        out[f"normal{n}"] = rng.standard_normal(n)
    out["uniform"] = rng.uniform(-4, 4, 1024)
    x = rng.standard_normal(2048)
    x[rng.choice(x.size, 24, replace=False)] *= rng.uniform(20, 200)
    out["outliers"] = x
    x = rng.standard_normal(1024)
    for b in rng.choice(1024 // 32, 6, replace=False):
        x[32 * b:32 * b + 32] = 0
    x[512:768] = 0
    out["zero_blocks"] = x
    out["all_zero"] = np.zeros(256)
    out["tiny"] = rng.standard_normal(512) * 10.0 ** rng.uniform(-7, -4)
    out["positive"] = rng.uniform(0.1, 3, 512)
    x = rng.standard_normal(512)
    x[0:32] = rng.uniform(-1, 1)
    out["constant_block"] = x
    return {k: v.astype(np.float32) for k, v in out.items()}


def first_byte_diff(a, b):
    if len(a) != len(b):
        return f"sizes differ: halyard {len(a)} bytes, reference {len(b)}"
    i = next(i for i in range(len(a)) if a[i] != b[i])
    return f"first differing byte {i}: halyard 0x{a[i]:02x}, reference 0x{b[i]:02x}"


def same_floats(a, b):
    """Bit-identical float32 arrays, where any NaN matches any NaN."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        return False, f"shapes differ {a.shape} vs {b.shape}"
    nan = np.isnan(a) & np.isnan(b)
    bad = (a.view(np.uint32) != b.view(np.uint32)) & ~nan
    if not bad.any():
        return True, ""
    i = int(np.argmax(bad))
    return False, (f"{int(bad.sum())} of {a.size} values differ; first at {i}: "
                   f"halyard {a[i]!r}, reference {b[i]!r}")


def gguf_type(tname):
    return GGMLQuantizationType[tname.upper()]


def numpy_dequantize(tname, data):
    """Independent dequantization of the types gguf has no dequantizer for."""
    _, bs, bb = mq.GGML_TYPES[tname]
    raw = np.frombuffer(data, dtype=np.uint8)
    plain = {"i8": np.int8, "i16": "<i2", "i32": "<i4", "i64": "<i8", "f64": "<f8"}
    if tname in plain:
        with np.errstate(over="ignore"):  # f64 beyond float range becomes inf, as in C
            return raw.view(plain[tname]).astype(np.float32)
    blocks = raw.reshape(-1, bb)
    if tname == "q8_1":  # d f16 | s f16 | qs[32]
        d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
        return (blocks[:, 4:].view(np.int8).astype(np.float32) * d).reshape(-1)
    if tname == "q8_K":  # d f32 | qs[256] | bsums[16]
        d = blocks[:, 0:4].copy().view("<f4")
        return (d * blocks[:, 4:260].view(np.int8).astype(np.float32)).reshape(-1)
    raise KeyError(tname)


def check_table(tmp):
    """Each type's block size and bytes, seen through quant-row, are ggml's."""
    for tname, (tid, bs, bb) in mq.GGML_TYPES.items():
        if tname != "q8_1":  # gguf 0.19's table still has the pre-2024 40-byte q8_1 block
            want = GGML_QUANT_SIZES[gguf_type(tname)]
            if want != (bs, bb):
                fail(f"table {tname}: gguf says {want}, test table says {(bs, bb)}")
        rc, out, err = halyard(tmp, tname, "--dequantize", bytes(bb))
        if rc != 0 or len(out) != 4 * bs:
            fail(f"table {tname}: one {bb}-byte block gave rc {rc}, {err.strip()}")
        if bb == 1:
            continue  # every byte count is whole blocks
        rc, _, err = halyard(tmp, tname, "--dequantize", bytes(bb + 1))
        if rc != 1 or "whole number" not in err:
            fail(f"table {tname}: {bb + 1} bytes gave rc {rc}, want 1 ('{err.strip()}')")


def check_quantize_vs_gguf(tmp, data):
    for tname in GGUF_QUANTIZES:
        for name, x in data.items():
            want = np.asarray(gguf_quantize(x, gguf_type(tname))).tobytes()
            rc, got, err = halyard(tmp, tname, "--quantize", x.tobytes())
            if rc != 0:
                fail(f"quantize {tname} {name}: rc {rc}: {err.strip()}")
            elif got != want:
                fail(f"quantize {tname} {name} vs gguf: {first_byte_diff(got, want)}")


def check_dequantize(tmp, data, rng):
    for tname in mq.GGML_TYPES:
        cases = {}
        if tname in GGUF_QUANTIZES:
            for name, x in data.items():
                cases[f"gguf-quantized {name}"] = np.asarray(
                    gguf_quantize(x, gguf_type(tname))).tobytes()
        for n in (256, 1024):
            cases[f"random blocks {n}"] = mq.random_blocks(rng, tname, n)
        if tname == "f32":
            cases["random blocks 1024"] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        for name, blob in cases.items():
            rc, got, err = halyard(tmp, tname, "--dequantize", blob)
            if rc != 0:
                fail(f"dequantize {tname} {name}: rc {rc}: {err.strip()}")
                continue
            raw = np.frombuffer(blob, dtype=np.uint8)
            if tname in GGUF_DEQUANTIZES:
                want, ref = gguf_dequantize(raw, gguf_type(tname)).reshape(-1), "gguf"
            else:
                want, ref = numpy_dequantize(tname, blob), "numpy"
            ok, why = same_floats(np.frombuffer(got, dtype="<f4"), want)
            if not ok:
                fail(f"dequantize {tname} {name} vs {ref}: {why}")


def check_vs_ggml(tmp, data, rng):
    path = mq.find_ggml()
    if not path:
        print("note: llama-cpp-python is not in this venv: no ggml cross-check on fresh data "
              "(test_quant.c's fixture still covers the K quantizers)")
        return
    ggml = mq.Ggml(path)
    ggml.check_types()
    for tname in mq.QUANT_TYPES:
        for name, x in data.items():
            want = ggml.quantize(tname, x)
            rc, got, err = halyard(tmp, tname, "--quantize", x.tobytes())
            if rc != 0:
                fail(f"quantize {tname} {name}: rc {rc}: {err.strip()}")
            elif got != want:
                fail(f"quantize {tname} {name} vs ggml: {first_byte_diff(got, want)}")
    for tname in mq.GGML_DEQUANT_TYPES:
        blob = mq.random_blocks(rng, tname, 2048)
        rc, got, err = halyard(tmp, tname, "--dequantize", blob)
        ok, why = (False, err) if rc else same_floats(np.frombuffer(got, "<f4"),
                                                      ggml.dequantize(tname, blob))
        if not ok:
            fail(f"dequantize {tname} random blocks vs ggml: {why}")
    print(f"ggml cross-check done with {path}")


def check_cli_errors(tmp):
    def run(*args):
        p = subprocess.run([BIN, "quant-row", *args], capture_output=True, text=True)
        return p.returncode, p.stderr

    f32 = os.path.join(tmp, "x.f32")
    np.zeros(100, dtype=np.float32).tofile(f32)
    out = os.path.join(tmp, "o.bin")
    cases = [
        (("--type", "q9_9", "--quantize", f32, out), 2, "unknown type"),
        (("--type", "q4_K", "--quantize", f32, out), 1, "multiple of 256"),
        (("--type", "i32", "--quantize", f32, out), 1, "no quantizer"),
        (("--type", "q8_0", "--quantize", os.path.join(tmp, "missing"), out), 1, "missing"),
        (("--type", "q8_0", "--quantize", "--dequantize", f32, out), 2, "only one"),
        (("--type", "q8_0", f32, out), 2, "usage"),
    ]
    for args, want_rc, want_msg in cases:
        rc, err = run(*args)
        if rc != want_rc or want_msg not in err:
            fail(f"quant-row {' '.join(args)}: rc {rc} ('{err.strip()}'), "
                 f"want rc {want_rc} and '{want_msg}'")
    odd = os.path.join(tmp, "odd.bin")
    with open(odd, "wb") as f:
        f.write(b"\0" * 6)
    rc, err = run("--type", "f32", "--quantize", odd, out)
    if rc != 1 or "f32 values" not in err:
        fail(f"6-byte f32 input: rc {rc} ('{err.strip()}')")


def main():
    if not os.access(BIN, os.X_OK):
        print(f"FAIL: {BIN} is not built")
        return 1
    print(f"seed {SEED} (rerun with QUANT_SEED={SEED})")
    rng = np.random.default_rng(SEED)
    data = rows(rng)
    with tempfile.TemporaryDirectory() as tmp:
        check_table(tmp)
        check_cli_errors(tmp)
        check_quantize_vs_gguf(tmp, data)
        check_dequantize(tmp, data, rng)
        check_vs_ggml(tmp, data, rng)
    if failures:
        print(f"{len(failures)} failures (seed {SEED})")
        return 1
    print(f"all {n_checks} quant-row comparisons passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
