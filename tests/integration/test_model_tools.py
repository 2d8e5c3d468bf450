"""halyard info / synth / quantize against the gguf Python package as an independent reader.

Checks: `info` describes the default model correctly; `synth` writes every shape/type the
issue names and the files load back (metadata, tensor types, values == the documented
generator); `quantize` keeps metadata and values within each type's error; safetensors →
GGUF import permutes q/k exactly as llama.cpp's converter does.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = os.environ.get("HALYARD_ROOT", os.getcwd())
BIN = os.environ.get("HALYARD_BIN", "build/halyard")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA3_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "fixtures", "llama3-tokenizer"))
if not os.path.isdir(LLAMA3_DIR):
    LLAMA3_DIR = "/work/shared/fixtures/llama3-tokenizer"


def run(*args, ok=True):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"halyard {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def info(path, *extra):
    return json.loads(run("info", path, "--json", *extra).stdout)


def tensors(path):
    r = gguf.GGUFReader(path)
    return r, {t.name: t for t in r.tensors}


def field(r, key):
    return r.fields[key].contents()


def check_default_model():
    d = info(MODEL, "--ctx", "2048")
    h = d["hparams"]
    want = dict(n_layers=30, dim=576, n_heads=9, n_kv_heads=3, n_vocab=49152, ffn_dim=1536, head_dim=64)
    for k, v in want.items():
        assert h[k] == v, (k, h[k], v)
    assert h["tied_embeddings"] is True
    assert d["tokenizer"]["model"] == "gpt2" and d["tokenizer"]["n_tokens"] == 49152
    assert d["tokenizer"]["n_merges"] == 48900
    assert d["chat_template"] == "chatml", d["chat_template"]
    assert d["tensor_check"] == "ok", d["tensor_check"]
    r, ts = tensors(MODEL)
    assert len(d["tensors"]) == len(r.tensors) == 272
    for row in d["tensors"]:
        t = ts[row["name"]]
        assert row["type"].lower() == t.tensor_type.name.lower(), (row, t.tensor_type.name)
        assert row["bytes"] == t.n_bytes
        assert row["shape"] == [int(x) for x in t.shape], (row["shape"], t.shape)
    total = sum(t.n_bytes for t in r.tensors)
    assert d["memory"]["weights_bytes"] == total
    # fp16 K and V: 2 * layers * ctx * kv_heads * head_dim * 2 bytes
    assert d["memory"]["kv_cache_bytes_f16"] == 2 * 30 * 2048 * 3 * 64 * 2
    n_params = sum(int(np.prod(t.shape)) for t in r.tensors)
    assert h["n_params"] == n_params, (h["n_params"], n_params)
    human = run("info", MODEL).stdout
    assert "layers 30" in human and "chat template:  chatml" in human


def synth_value(seed, name, i, std):
    """The generator documented in engine/synth.h, in numpy (splitmix64 over FNV-1a)."""
    M = (1 << 64) - 1

    def mix(x):
        x = (x + 0x9E3779B97F4A7C15) & M
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
        return x ^ (x >> 31)

    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M
    base = mix(seed ^ h)
    out = []
    for k in i:
        r = mix((base + int(k)) & M)
        u = np.float32(r >> 40) * np.float32(1.0 / 16777216.0)
        out.append((np.float32(2.0) * u - np.float32(1.0)) * np.float32(std) * np.float32(1.7320508))
    return np.array(out, dtype=np.float32)


def check_synth(tmp):
    types = {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_k_m": T.Q4_K}
    for tname, qt in types.items():
        out = os.path.join(tmp, f"tiny-{tname}.gguf")
        run("synth", "--shape", "tiny", "--type", tname, "--seed", "7", "-o", out)
        d = info(out)
        h = d["hparams"]
        assert (h["dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"], h["ffn_dim"]) == (256, 4, 8, 2, 768)
        assert h["rope_theta"] == 500000 and abs(h["rms_eps"] - 1e-5) < 1e-9
        assert h["n_vocab"] == 49152 and d["tensor_check"] == "ok"
        r, ts = tensors(out)
        q = ts["blk.1.attn_q.weight"]
        assert q.tensor_type == qt, (tname, q.tensor_type.name)
        vals = gguf.quants.dequantize(q.data, q.tensor_type).reshape(-1)
        idx = np.arange(0, 256 * 256, 997)
        ref = synth_value(7, "blk.1.attn_q.weight", idx, 1.0 / 16.0)
        err = np.abs(vals[idx] - ref).max()
        bound = {"f32": 0, "f16": 1e-3, "q8_0": 2e-3, "q4_0": 0.02, "q4_k_m": 0.02}[tname]
        assert err <= bound, (tname, err)
        if tname == "q4_k_m":  # llama.cpp's mix: use_more_bits(il, 4) holds for layers 2 and 3
            for il, want in [(0, T.Q4_K), (1, T.Q4_K), (2, T.Q6_K), (3, T.Q6_K)]:
                assert ts[f"blk.{il}.ffn_down.weight"].tensor_type == want, il
                assert ts[f"blk.{il}.attn_v.weight"].tensor_type == want, il
            assert ts["output.weight"].tensor_type == T.Q6_K
        norm = gguf.quants.dequantize(ts["blk.0.attn_norm.weight"].data, T.F32)
        assert np.all(norm == 1.0)
    # Same seed → identical file; other seed → different weights.
    a = os.path.join(tmp, "a.gguf")
    b = os.path.join(tmp, "b.gguf")
    run("synth", "--shape", "tiny", "--type", "q8_0", "--seed", "7", "-o", a)
    run("synth", "--shape", "tiny", "--type", "q8_0", "--seed", "8", "-o", b)
    assert open(a, "rb").read() == open(os.path.join(tmp, "tiny-q8_0.gguf"), "rb").read()
    assert open(a, "rb").read() != open(b, "rb").read()
    # s135 has SmolLM2's shape; Llama 3's vocabulary from the HF files.
    s = os.path.join(tmp, "s135.gguf")
    run("synth", "--shape", "s135", "--type", "q4_0", "-o", s)
    h = info(s)["hparams"]
    assert (h["dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"], h["ffn_dim"]) == (576, 30, 9, 3, 1536)
    if os.path.isdir(LLAMA3_DIR):
        l3 = os.path.join(tmp, "tiny-l3.gguf")
        run("synth", "--shape", "tiny", "--type", "q8_0", "--tokenizer-dir", LLAMA3_DIR, "-o", l3)
        d = info(l3)
        assert d["hparams"]["n_vocab"] == 128256 and d["tokenizer"]["n_merges"] == 280147
        assert d["tokenizer"]["bos_id"] == 128000 and d["chat_template"] == "llama3"
        r = gguf.GGUFReader(l3)
        toks = field(r, "tokenizer.ggml.tokens")
        assert toks[9906] == "Hello" and toks[128009] == "<|eot_id|>"
    # Bad arguments are usage errors, not crashes.
    assert run("synth", "--shape", "huge", "--type", "q8_0", "-o", a, ok=False).returncode == 2
    assert run("synth", "--shape", "tiny", "--type", "q3_x", "-o", a, ok=False).returncode == 2
    p = run("synth", "--shape", "tiny", "--type", "f32", "--tokenizer-from", "/nonexistent.gguf", "-o", a, ok=False)
    assert p.returncode == 1 and "nonexistent" in p.stderr


def check_quantize(tmp):
    out = os.path.join(tmp, "smol-q8_0.gguf")
    run("quantize", MODEL, out, "--type", "q8_0")
    r0, t0 = tensors(MODEL)
    r1, t1 = tensors(out)
    assert set(t0) == set(t1)
    assert field(r1, "tokenizer.ggml.pre") == "smollm" and len(field(r1, "tokenizer.ggml.tokens")) == 49152
    for name in ["blk.0.attn_q.weight", "blk.29.ffn_down.weight", "token_embd.weight"]:
        a = gguf.quants.dequantize(t0[name].data, t0[name].tensor_type)
        b = gguf.quants.dequantize(t1[name].data, t1[name].tensor_type)
        assert t1[name].tensor_type in (T.Q8_0,), (name, t1[name].tensor_type.name)
        assert np.abs(a - b).max() <= np.abs(a).max() / 127 + 1e-6, name
    d = info(out)
    assert d["tensor_check"] == "ok"
    p = run("quantize", MODEL, out, "--type", "q9_9", ok=False)
    assert p.returncode == 2
    p = run("quantize", os.path.join(tmp, "missing.gguf"), out, "--type", "q8_0", ok=False)
    assert p.returncode == 1


def write_safetensors(path, arrays):
    header, off, blobs = {}, 0, []
    for name, a in arrays.items():
        b = a.astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check_safetensors_import(tmp):
    d = os.path.join(tmp, "hf")
    os.makedirs(d)
    rng = np.random.default_rng(1)
    dim, n_heads, n_kv, ffn, vocab, layers = 64, 4, 2, 96, 49152, 2
    hd = dim // n_heads
    cfg = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=dim,
               intermediate_size=ffn, num_attention_heads=n_heads, num_key_value_heads=n_kv,
               num_hidden_layers=layers, vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0,
               max_position_embeddings=512, tie_word_embeddings=True, hidden_act="silu")
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    arrays = {"model.embed_tokens.weight": rng.standard_normal((vocab, dim)),
              "model.norm.weight": rng.standard_normal(dim)}
    for il in range(layers):
        p = f"model.layers.{il}."
        arrays[p + "input_layernorm.weight"] = rng.standard_normal(dim)
        arrays[p + "post_attention_layernorm.weight"] = rng.standard_normal(dim)
        arrays[p + "self_attn.q_proj.weight"] = rng.standard_normal((n_heads * hd, dim))
        arrays[p + "self_attn.k_proj.weight"] = rng.standard_normal((n_kv * hd, dim))
        arrays[p + "self_attn.v_proj.weight"] = rng.standard_normal((n_kv * hd, dim))
        arrays[p + "self_attn.o_proj.weight"] = rng.standard_normal((dim, n_heads * hd))
        arrays[p + "mlp.gate_proj.weight"] = rng.standard_normal((ffn, dim))
        arrays[p + "mlp.up_proj.weight"] = rng.standard_normal((ffn, dim))
        arrays[p + "mlp.down_proj.weight"] = rng.standard_normal((dim, ffn))
    write_safetensors(os.path.join(d, "model.safetensors"), arrays)
    out = os.path.join(tmp, "hf-f32.gguf")
    run("quantize", d, out, "--type", "f32", "--tokenizer-from", MODEL)
    r, ts = tensors(out)

    def permute(w, n):  # convert_hf_to_gguf.py's LlamaModel.permute
        return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    q = ts["blk.1.attn_q.weight"].data.reshape(n_heads * hd, dim)
    assert np.array_equal(q, permute(arrays["model.layers.1.self_attn.q_proj.weight"].astype(np.float32), n_heads))
    k = ts["blk.0.attn_k.weight"].data.reshape(n_kv * hd, dim)
    assert np.array_equal(k, permute(arrays["model.layers.0.self_attn.k_proj.weight"].astype(np.float32), n_kv))
    v = ts["blk.0.attn_v.weight"].data.reshape(n_kv * hd, dim)
    assert np.array_equal(v, arrays["model.layers.0.self_attn.v_proj.weight"].astype(np.float32))
    assert field(r, "llama.block_count") == layers and field(r, "llama.attention.head_count_kv") == n_kv
    dd = info(out)
    assert dd["tensor_check"] == "ok" and dd["hparams"]["tied_embeddings"] is True


def main():
    if not os.path.exists(MODEL):
        print("SKIP: default model missing (make model)")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        check_default_model()
        check_synth(tmp)
        check_quantize(tmp)
        check_safetensors_import(tmp)
    print("ok")


if __name__ == "__main__":
    main()
