#!/bin/sh
# Runs every tests/integration/test_*.sh and test_*.py against the built binary
# ($HALYARD_BIN) and prints one closing line: "integration: N passed, N failed".
# A test prints "SKIP: reason" and exits 77 to skip itself (as automake does).
# TEST_FILTER=substring runs only the matching tests.
set -u
cd "$(dirname "$0")/../.."
export HALYARD_BIN="${HALYARD_BIN:-build/halyard}"
export HALYARD_ROOT="$(pwd)"
PY=python3
[ -x .venv/bin/python ] && PY="$(pwd)/.venv/bin/python"
export PY
passed=0
failed=0
skipped=0
failures=""
for t in tests/integration/test_*.sh tests/integration/test_*.py; do
    [ -e "$t" ] || continue
    case "$t" in *"${TEST_FILTER:-}"*) ;; *) continue ;; esac
    log=$(mktemp)
    start=$(date +%s)
    case "$t" in
    *.py) $PY "$t" >"$log" 2>&1 ;;
    *) sh "$t" >"$log" 2>&1 ;;
    esac
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS $t (${secs}s)"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1))
        echo "SKIP $t: $(grep -m1 '^SKIP' "$log")"
    else
        failed=$((failed + 1))
        failures="$failures $t"
        echo "FAIL $t (exit $rc, ${secs}s); last lines:"
        tail -n 30 "$log" | sed 's/^/    /'
    fi
    rm -f "$log"
done
echo "integration: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
