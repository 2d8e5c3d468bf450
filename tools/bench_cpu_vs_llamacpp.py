"""halyard vs llama.cpp on the CPU, same files, same threads, alternating in one run.

  .venv/bin/python tools/bench_cpu_vs_llamacpp.py [--threads 2] [--reps 3] [--quick]

Single sequence: `halyard bench engine -p 512 -n 128 --batch 1` against `llama-bench -p 512
-n 128` (pp512 / tg128 tokens/s) on the default model and synth models (s135 Q8_0, Q4_0,
Q4_K_M; l1b Q4_0). Batched decode: `halyard bench engine --batch 1,4,8,16,32,64` against
`llama-batched-bench -npl 1,4,8,16,32,64` on the default model. Prints markdown tables for
docs/BENCHMARKS.md and writes the raw numbers to docs/bench/cpu_vs_llamacpp.json.
llama.cpp comes from tools/build_llamacpp.sh (run first).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HL = os.path.join(ROOT, "build", "halyard")
LC_BIN = os.path.join(ROOT, "build", "llama.cpp", "cmake", "bin")
DEFAULT = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def sh(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def halyard_engine(model, threads, reps, p, n, batches):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        sh([HL, "bench", "engine", "-m", model, "-p", str(p), "-n", str(n), "--batch", batches,
            "--reps", str(reps), "-t", str(threads), "--json", f.name])
        return json.load(open(f.name))["results"]


def llama_bench(model, threads, reps, p, n):
    out = json.loads(sh([os.path.join(LC_BIN, "llama-bench"), "-m", model, "-p", str(p), "-n", str(n),
                         "-t", str(threads), "-r", str(reps), "-o", "json"]))
    res = {}
    for r in out:
        key = "pp" if r["n_prompt"] > 0 else "tg"
        res[key] = (r["avg_ts"], r["stddev_ts"])
    return res


def llama_batched(model, threads, npl, n):
    out = sh([os.path.join(LC_BIN, "llama-batched-bench"), "-m", model, "-c", str(max(npl) * (n + 64) + 64),
              "-b", "2048", "-ub", "512", "-npp", "64", "-ntg", str(n), "-npl", ",".join(map(str, npl)),
              "-t", str(threads), "--output-format", "jsonl"])
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["pl"]: r["speed_tg"] for r in rows}


def synth(tmp, shape, typ):
    path = os.path.join(tmp, f"{shape}-{typ}.gguf")
    sh([HL, "synth", "--shape", shape, "--type", typ, "--seed", "1", "-o", path])
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="default model only, fewer batch sizes")
    a = ap.parse_args()
    for b in (HL, os.path.join(LC_BIN, "llama-bench")):
        if not os.path.exists(b):
            sys.exit(f"missing {b} (make; sh tools/build_llamacpp.sh)")
    results = {"single": [], "batched": {}}
    with tempfile.TemporaryDirectory() as tmp:
        models = [("SmolLM2-135M Q4_1 (default)", DEFAULT)]
        if not a.quick:
            models += [("synth s135 Q8_0", synth(tmp, "s135", "q8_0")), ("synth s135 Q4_0", synth(tmp, "s135", "q4_0")),
                       ("synth s135 Q4_K_M", synth(tmp, "s135", "q4_k_m")), ("synth l1b Q4_0", synth(tmp, "l1b", "q4_0")),
                       ("synth l1b Q4_K_M", synth(tmp, "l1b", "q4_k_m"))]
        print("| model | halyard pp512 | llama.cpp pp512 | ratio | halyard tg128 | llama.cpp tg128 | ratio |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        for name, path in models:
            lc = llama_bench(path, a.threads, a.reps, 512, 128)
            hl = {r["test"]: (r["tok_s_mean"], r["tok_s_sd"])
                  for r in halyard_engine(path, a.threads, a.reps, 512, 128, "1")}
            row = dict(model=name, halyard=hl, llamacpp=lc)
            results["single"].append(row)
            print(f"| {name} | {hl['pp'][0]:.1f} ± {hl['pp'][1]:.1f} | {lc['pp'][0]:.1f} ± {lc['pp'][1]:.1f} | "
                  f"{hl['pp'][0] / lc['pp'][0]:.2f}× | {hl['tg'][0]:.1f} ± {hl['tg'][1]:.1f} | "
                  f"{lc['tg'][0]:.1f} ± {lc['tg'][1]:.1f} | {hl['tg'][0] / lc['tg'][0]:.2f}× |", flush=True)
        npl = [1, 4, 16] if a.quick else [1, 4, 8, 16, 32, 64]
        lcb = llama_batched(DEFAULT, a.threads, npl, 128)
        hlb = {r["batch"]: r["tok_s_mean"]
               for r in halyard_engine(DEFAULT, a.threads, 1, 0, 128, ",".join(map(str, npl))) if r["test"] == "tg"}
        results["batched"] = {"halyard": hlb, "llamacpp": lcb}
        print("\n| sequences | halyard decode tok/s | llama.cpp decode tok/s | ratio |")
        print("|--:|--:|--:|--:|")
        for n in npl:
            print(f"| {n} | {hlb[n]:.1f} | {lcb[n]:.1f} | {hlb[n] / lcb[n]:.2f}× |")
    os.makedirs(os.path.join(ROOT, "docs", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "bench", "cpu_vs_llamacpp.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
