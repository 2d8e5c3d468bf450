#!/bin/sh
# The CLI dispatches subcommands and rejects unknown ones with a usage error (exit 2).
set -eu
"$HALYARD_BIN" version | grep -q '^halyard '
"$HALYARD_BIN" --help | grep -q 'commands:'
set +e
"$HALYARD_BIN" no-such-command 2>/tmp/hl_cli_err
rc=$?
set -e
[ $rc -eq 2 ] || { echo "unknown command exited $rc, want 2"; exit 1; }
grep -q "unknown command 'no-such-command'" /tmp/hl_cli_err
