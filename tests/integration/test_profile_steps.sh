#!/bin/sh
# --profile-steps A-B: the engine starts the backend's profiler capture before forward step A
# and stops it after step B (logged; on the CPU there is no profiler, which the log says), and
# bad ranges are usage errors (exit 2) for bench engine and serve.
set -eu
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$HALYARD_BIN" bench engine -m synthetic:tiny:q8_0 --synth-vocab 512 -p 32 -n 8 -r 1 -t 2 \
    --profile-steps 2-3 >/dev/null 2>"$log"
grep -q 'profiler capture starts at forward step 2' "$log" || { cat "$log"; echo "no start at step 2"; exit 1; }
grep -q 'profiler capture stops after forward step 3' "$log" || { cat "$log"; echo "no stop after step 3"; exit 1; }
[ "$(grep -c 'profiler capture' "$log")" -eq 2 ] || { cat "$log"; echo "capture marked more than twice"; exit 1; }
for bad in 0-3 5-4 x; do
    set +e
    "$HALYARD_BIN" bench engine -m synthetic:tiny:q8_0 --profile-steps "$bad" >/dev/null 2>"$log"
    rc=$?
    set -e
    [ $rc -eq 2 ] || { echo "bench engine --profile-steps $bad exited $rc, want 2"; exit 1; }
    grep -q "profile steps" "$log" || { cat "$log"; exit 1; }
done
set +e
"$HALYARD_BIN" serve -m synthetic:tiny:q8_0 --port 0 --profile-steps 3-1 >/dev/null 2>"$log"
rc=$?
set -e
[ $rc -eq 2 ] || { echo "serve --profile-steps 3-1 exited $rc, want 2"; exit 1; }
echo "profile-steps: ok"
