#!/bin/sh
# Writes the unit runner's main(): one Check SRunner over every `Suite *NAME_suite(void)`
# defined in the given test files. CK_RUN_SUITE=name runs one suite (Check's own variable).
set -e
suites=$(grep -ho '^Suite \*[a-z0-9_]*_suite(void)' "$@" | sed 's/^Suite \*\([a-z0-9_]*\)(void)/\1/' | sort)
echo '#include <check.h>'
echo '#include <stdlib.h>'
for s in $suites; do echo "Suite *$s(void);"; done
echo 'int main(void) {'
echo '    SRunner *sr = srunner_create(NULL);'
for s in $suites; do echo "    srunner_add_suite(sr, $s());"; done
echo '    srunner_run_all(sr, CK_NORMAL);'
echo '    int n_failed = srunner_ntests_failed(sr);'
echo '    srunner_free(sr);'
echo '    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;'
echo '}'
