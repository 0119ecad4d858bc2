#!/bin/sh
# tests: counts the tests in each crate and lists the source files with none.
#
# input:  repo (default "."); fail_first_attempt (bool): fail attempt 1 as a retryable error, to
#         show retries in the demo. Files come from the planner's scope.tests, else all .rs files.
# output: per crate the number of #[test] and #[tokio::test] functions; production files that
#         neither contain tests nor declare a #[cfg(test)] module.
. "$(dirname -- "$0")/lib.sh"
read_task

if [ "$(task_text input.fail_first_attempt false)" = true ] && [ "$ATTEMPT" = 1 ]; then
    fail 1 "attempt 1 fails on purpose (input.fail_first_attempt) so the demo shows a retry; attempt 2 will succeed"
fi

files=$(scope tests cat)
[ -n "$files" ] || fail 100 "no Rust files to scan in '$REPO'"

# file<TAB>crate<TAB>#[test]<TAB>#[tokio::test]<TAB>declares #[cfg(test)]<TAB>test file
per_file=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk "$AWK_RUST"'
    function flush() {
        if (file != "") printf "%s\t%s\t%d\t%d\t%d\t%d\n", file, crate, plain, tokio, cfg, test_file
    }
    FNR == 1 {
        flush()
        file = FILENAME
        crate = (index(file, "/") ? substr(file, 1, index(file, "/") - 1) : "(root)")
        plain = tokio = cfg = 0
        test_file = in_test
    }
    code ~ /^[ \t]*#\[test\]/ { plain++ }
    code ~ /^[ \t]*#\[tokio::test[](]/ { tokio++ }
    code ~ /#\[cfg\(test\)\]/ { cfg = 1 }
    END { flush() }
')

crates=$(printf '%s\n' "$per_file" | awk -F '\t' '
    { if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
      plain[$2] += $3; tokio[$2] += $4; files[$2]++; if ($3 + $4 > 0) with[$2]++ }
    END { for (i = 1; i <= n; i++) { c = order[i]; printf "%s\t%d\t%d\t%d\t%d\t%d\n", c, plain[c] + tokio[c], plain[c], tokio[c], files[c], with[c] } }')
untested=$(printf '%s\n' "$per_file" | awk -F '\t' '$3 + $4 == 0 && !$5 && !$6 { print $1 }')

total=$(printf '%s\n' "$crates" | awk -F '\t' '{ s += $2 } END { print s + 0 }')
nuntested=$(printf '%s\n' "$untested" | grep -c . || true)
bare=$(printf '%s\n' "$crates" | awk -F '\t' '$2 == 0 { printf "%s%s", (n++ ? ", " : ""), $1 }')
status=ok
[ -z "$bare" ] || status=attention

highlights=$({
    printf '%s\n' "$crates" | awk -F '\t' '{ printf "%s: %d tests (%d #[test], %d #[tokio::test]) in %d of %d files\n", $1, $2, $3, $4, $6, $5 }'
    [ -z "$bare" ] || printf 'crates with no tests: %s\n' "$bare"
    [ "$nuntested" -eq 0 ] || printf '%s source files have no tests and no #[cfg(test)] module\n' "$nuntested"
} | json_lines)

cat <<JSON
{
  "agent": "tests",
  "status": "$status",
  "summary": $(json_str "$total tests in $(printf '%s\n' "$crates" | grep -c .) crates; $nuntested source files without tests${bare:+; no tests at all in $bare}"),
  "attempt": $ATTEMPT,
  "totals": {"tests": $total, "files_scanned": $(printf '%s\n' "$per_file" | grep -c .), "files_without_tests": $nuntested},
  "crates": $(printf '%s\n' "$crates" | tsv_json "name:s tests:n test_attr:n tokio_test_attr:n files:n files_with_tests:n"),
  "files_without_tests": $(printf '%s\n' "$untested" | json_lines),
  "highlights": $highlights
}
JSON
