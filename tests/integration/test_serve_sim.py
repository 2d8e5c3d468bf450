"""`halyard bench engine --serve-sim`: the in-process serving simulation on synthetic:tiny:q8_0 (CPU).

Closed loop (sessions submitting their next request when one ends) and Poisson arrivals: every
request must finish, the token totals must be exactly what was asked (range ratio 0) or within
the drawn range, latencies must be ordered (TTFT <= E2E, percentiles ascending), and the
throughput must agree with the totals and the wall time. Bad options exit 2; --device cuda on a
machine without a usable GPU fails with a message, never a crash. Bounded: a few seconds.
"""
import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("HALYARD_BIN", "build/halyard")
MODEL = "synthetic:tiny:q8_0"
TMP = tempfile.mkdtemp(prefix="hl_serve_sim_")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def sim(*args, timeout=60):
    out = os.path.join(TMP, "sim.json")
    if os.path.exists(out):
        os.remove(out)
    cmd = [BIN, "bench", "engine", "-m", MODEL, "--serve-sim", "-t", "2", "--json", out, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    print(" ".join(cmd), "->", p.returncode)
    print(p.stdout[-1500:], p.stderr[-1500:])
    if p.returncode != 0 or not os.path.exists(out):
        return p, None
    with open(out) as f:
        return p, json.load(f)


def check_common(j, n_req, name):
    check(j["ok"] == n_req and j["failed"] == 0, f"{name}: {j['ok']} ok, {j['failed']} failed of {n_req}")
    for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
        st = j[key]
        check(st["p50"] is not None and st["p50"] > 0, f"{name}: {key} p50 {st['p50']}")
        check(st["p50"] <= st["p90"] + 1e-9 <= st["p99"] + 2e-9, f"{name}: {key} percentiles not ascending {st}")
    check(j["ttft_ms"]["p50"] <= j["e2e_ms"]["p50"], f"{name}: TTFT p50 above E2E p50")
    check(j["ttft_ms"]["n"] == n_req, f"{name}: TTFT of {j['ttft_ms']['n']} requests, want {n_req}")
    rate = j["generated_tokens_total"] / j["wall_s"]
    check(abs(rate - j["output_tok_s"]) <= 1e-6 * rate + 1e-9, f"{name}: output tok/s {j['output_tok_s']} vs {rate}")


def main():
    # closed loop, fixed lengths: totals are exact
    p, j = sim("--sessions", "3", "--requests", "7", "-p", "24", "-n", "6")
    check(p.returncode == 0 and j is not None, "closed loop: run failed")
    if j:
        check_common(j, 7, "closed loop")
        check(j["mode"] == "closed-loop" and j["sessions"] == 3, f"closed loop: mode {j['mode']}")
        check(j["prompt_tokens_total"] == 7 * 24, f"closed loop: prompt tokens {j['prompt_tokens_total']}")
        check(j["generated_tokens_total"] == 7 * 6, f"closed loop: generated {j['generated_tokens_total']}")
        check(j["tpot_ms"]["n"] == 7, "closed loop: a TPOT per request")
        check("TTFT ms" in p.stdout and "TPOT ms" in p.stdout, "closed loop: table missing")

    # closed loop with drawn lengths: within [L (1 - r), L (1 + r)] per request
    p, j = sim("--sessions", "4", "--requests", "9", "-p", "32", "-n", "8", "--range-ratio", "0.5", "--seed", "3")
    if j:
        check_common(j, 9, "range ratio")
        check(9 * 16 <= j["prompt_tokens_total"] <= 9 * 48, f"range ratio: prompt tokens {j['prompt_tokens_total']}")
        check(9 * 4 <= j["generated_tokens_total"] <= 9 * 12, f"range ratio: generated {j['generated_tokens_total']}")
        check(j["prompt_tokens_total"] != 9 * 32 or j["generated_tokens_total"] != 9 * 8,
              "range ratio: lengths were not drawn")
    else:
        check(False, "range ratio: run failed")

    # Poisson arrivals at 40 requests/s: 8 requests need about 0.2 s of arrivals
    p, j = sim("--rate", "40", "--requests", "8", "--sessions", "8", "-p", "16", "-n", "4")
    if j:
        check_common(j, 8, "poisson")
        check(j["mode"] == "poisson" and j["rate"] == 40, f"poisson: mode {j['mode']}")
        check(j["generated_tokens_total"] == 32, f"poisson: generated {j['generated_tokens_total']}")
        check(j["wall_s"] > 0.05, f"poisson: wall {j['wall_s']} s is too short for 8 arrivals at 40/s")
    else:
        check(False, "poisson: run failed")

    # bad options
    for bad in (["-n", "0"], ["--rate", "-1"], ["--range-ratio", "1.5"], ["--sessions", "0"]):
        p = subprocess.run([BIN, "bench", "engine", "-m", MODEL, "--serve-sim", *bad], capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 2, f"bad option {bad}: exit {p.returncode}, want 2")

    # --device cuda without a usable GPU: a clear error, no crash
    gpu = subprocess.run(["sh", "-c", "nvidia-smi -L"], capture_output=True, text=True).returncode == 0
    if not gpu:
        p = subprocess.run([BIN, "bench", "engine", "-m", MODEL, "--serve-sim", "--device", "cuda", "--requests",
                            "1", "-p", "4", "-n", "2"], capture_output=True, text=True, timeout=60)
        check(p.returncode == 1, f"--device cuda without a GPU: exit {p.returncode}, want 1")
        check("cuda" in p.stderr.lower(), f"--device cuda without a GPU: message {p.stderr!r}")
    p = subprocess.run([BIN, "bench", "engine", "-m", MODEL, "--device", "tpu", "-p", "4", "-n", "0"],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 1 and "unknown device" in p.stderr, f"--device tpu: {p.returncode} {p.stderr!r}")

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("serve-sim: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
