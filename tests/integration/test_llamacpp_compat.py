"""llama.cpp (the build that llama-cpp-python vendors) loads and runs what `halyard synth`
and `halyard quantize` write: the files are real GGUF models, not just readable by us."""
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np

try:
    import llama_cpp
except ImportError:
    print("SKIP: llama-cpp-python is not installed in the test venv (make pydeps)")
    sys.exit(77)

ROOT = os.environ.get("HALYARD_ROOT", os.getcwd())
BIN = os.environ.get("HALYARD_BIN", "build/halyard")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def halyard(*args):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"halyard {' '.join(args)} failed: {p.stderr}")


def run_llama(path, n_layers):
    llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    assert llm.n_vocab() == 49152
    tokens = llm.tokenize(b"The capital of France is", add_bos=False)
    assert len(tokens) >= 4, tokens
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    assert np.all(np.isfinite(logits)), path
    # Synthetic weights are scaled so logits are far from flat: a clear spread per position.
    assert float(logits.std(axis=1).min()) > 0.5, (path, logits.std(axis=1))
    out = llm.create_completion("Hello", max_tokens=8, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1
    return logits


def llama_quantize(src, dst, ftype):
    """llama.cpp's llama_model_quantize, in a child process so its log stays out of ours."""
    code = ("import ctypes, sys, llama_cpp\n"
            "p = llama_cpp.llama_model_quantize_default_params()\n"
            "p.ftype = int(sys.argv[3]); p.allow_requantize = True; p.nthread = 2\n"
            "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))\n")
    subprocess.run([sys.executable, "-c", code, src, dst, str(ftype)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    if not os.path.exists(MODEL):
        print("SKIP: default model missing (make model)")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        for shape, types in [("tiny", ["f32", "f16", "q8_0", "q4_0", "q4_k_m"]), ("s135", ["q4_0"])]:
            for t in types:
                path = os.path.join(tmp, f"{shape}-{t}.gguf")
                halyard("synth", "--shape", shape, "--type", t, "--seed", "3", "-o", path)
                run_llama(path, 4)
                print(f"llama.cpp ran synth {shape} {t}")
        # `halyard quantize` writes the same tensors, byte for byte, as llama.cpp's quantizer:
        # same per-tensor type choice (q4_k_m mix included) and same reference quantizers.
        src_f32 = os.path.join(tmp, "s135-f32.gguf")
        halyard("synth", "--shape", "s135", "--type", "f32", "--seed", "5", "-o", src_f32)
        for src, ftype, name in [(MODEL, 7, "q8_0"), (src_f32, 2, "q4_0"), (src_f32, 15, "q4_k_m")]:
            ours = os.path.join(tmp, f"hl-{name}.gguf")
            theirs = os.path.join(tmp, f"lc-{name}.gguf")
            halyard("quantize", src, ours, "--type", name)
            llama_quantize(src, theirs, ftype)
            a = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
            b = {t.name: t for t in gguf.GGUFReader(ours).tensors}
            assert set(a) == set(b), name
            diff = [n for n in a if a[n].tensor_type != b[n].tensor_type or a[n].data.tobytes() != b[n].data.tobytes()]
            assert not diff, (name, diff[:5], [(a[n].tensor_type.name, b[n].tensor_type.name) for n in diff[:5]])
            print(f"quantize {name}: {len(a)} tensors byte-identical to llama.cpp's")
    print("ok")


if __name__ == "__main__":
    main()
