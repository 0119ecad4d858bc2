#!/bin/sh
# security: finds the constructs a reviewer checks first in Rust code.
#
# input:  repo (default "."); files come from the planner's scope.security, else all
#         production .rs files.
# output: counts per kind in production and in test code, production findings with file, line and
#         code, and the files with the most findings. Kinds: unwrap (`.unwrap()`), expect
#         (`.expect(`), panic (`panic!`, `todo!`, `unimplemented!`), unsafe, command
#         (`Command::new`, a spawned process).
. "$(dirname -- "$0")/lib.sh"
read_task

files=$(scope security production_paths)
[ -n "$files" ] || fail 100 "no Rust files to scan in '$REPO'"
nfiles=$(printf '%s\n' "$files" | grep -c .)

# kind<TAB>where(production|test)<TAB>file<TAB>line<TAB>code
hits=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk "$AWK_RUST"'
    function hit(kind,    text) {
        text = $0
        sub(/^[ \t]+/, "", text)
        gsub(/\t/, " ", text)
        printf "%s\t%s\t%s\t%d\t%s\n", kind, (in_test ? "test" : "production"), FILENAME, FNR, substr(text, 1, 160)
    }
    code ~ /\.unwrap\(\)/ { hit("unwrap") }
    code ~ /\.expect\(/ { hit("expect") }
    code ~ /(^|[^A-Za-z0-9_])(panic|todo|unimplemented)!/ { hit("panic") }
    code ~ /(^|[^A-Za-z0-9_])unsafe([^A-Za-z0-9_]|$)/ { hit("unsafe") }
    code ~ /Command::new/ { hit("command") }
')

# counts_json WHERE: {"unwrap":n,...} for production or test hits.
counts_json() {
    printf '%s\n' "$hits" | awk -F '\t' -v where="$1" '
        $2 == where { n[$1]++ }
        END {
            split("unwrap expect panic unsafe command", kinds, " ")
            printf "{"
            for (i = 1; i <= 5; i++) printf "%s\"%s\":%d", (i > 1 ? "," : ""), kinds[i], n[kinds[i]]
            printf "}"
        }'
}
count() {
    printf '%s\n' "$hits" | awk -F '\t' -v kind="$1" '$2 == "production" && $1 == kind { n++ } END { print n + 0 }'
}

production=$(printf '%s\n' "$hits" | awk -F '\t' '$2 == "production"')
unwrap=$(count unwrap); expect=$(count expect); panic=$(count panic)
unsafe=$(count unsafe); command=$(count command)
risky=$((unwrap + expect + panic + unsafe))
status=ok
[ "$risky" -eq 0 ] || status=attention

hotspots=$(printf '%s\n' "$production" | awk -F '\t' 'NF { n[$3]++ } END { for (f in n) printf "%s\t%d\n", f, n[f] }' \
    | LC_ALL=C sort -t "$(printf '\t')" -k2,2nr -k1,1 | head -n 5)

highlights=$({
    printf '%s unwrap(), %s expect(, %s panic-family macros and %s unsafe in production code\n' "$unwrap" "$expect" "$panic" "$unsafe"
    [ "$command" -eq 0 ] || printf '%s spawned commands (Command::new) to review for argument injection\n' "$command"
    printf '%s\n' "$hotspots" | awk -F '\t' 'NF { printf "hotspot: %s (%d findings)\n", $1, $2 }' | head -n 3
} | json_lines)

cat <<JSON
{
  "agent": "security",
  "status": "$status",
  "summary": $(json_str "$risky risky constructs in production code across $nfiles files (unwrap $unwrap, expect $expect, panic $panic, unsafe $unsafe); $command spawned commands"),
  "files_scanned": $nfiles,
  "counts": {"production": $(counts_json production), "test": $(counts_json test)},
  "findings": $(printf '%s\n' "$production" | cut -f1,3,4,5 | tsv_json "kind:s file:s line:n code:s"),
  "hotspots": $(printf '%s\n' "$hotspots" | tsv_json "file:s findings:n"),
  "highlights": $highlights
}
JSON
