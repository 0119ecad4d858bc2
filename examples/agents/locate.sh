#!/bin/sh
# locate: finds where a symptom (an error message, a name, any fixed text) appears in the
# repository, and in which Rust function, to start a bug investigation.
#
# input:  repo (default "."); symptom (the text, matched exactly, case-sensitive; required);
#         focus (paths to search, relative to repo; default or [] the whole repository); goal
#         (free text, echoed back).
# output: every hit with file, line, enclosing function (Rust) and whether it is test code;
#         the files with hits; and `scope.security` / `scope.tests`: the Rust files with hits
#         (production ones for security), which the code-review analysts downstream then
#         examine instead of the whole repository. Status "attention" when the symptom is not
#         found or a focus path is missing: a finding, not a failure.
. "$(dirname -- "$0")/lib.sh"
read_task

symptom=$(task_text input.symptom "")
[ -n "$symptom" ] || fail 100 "input.symptom is empty: give the text to look for (an error message, a name)"
goal=$(task_text input.goal "")
files=$(focus_files -name '*.rs' -o -name '*.md' -o -name '*.toml' -o -name '*.sh')
missing=$(missing_focus)
nfiles=$(printf '%s\n' "$files" | grep -c . || true)

# file<TAB>line<TAB>function<TAB>test(0|1)<TAB>text, in file and line order.
hits=""
if [ -n "$files" ]; then
    hits=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk -v want="$symptom" "$AWK_RUST"'
        FNR == 1 { fn = "" }
        FILENAME ~ /\.rs$/ && match(code, /(^|[^A-Za-z0-9_])fn[ \t]+[A-Za-z0-9_]+/) {
            fn = substr(code, RSTART, RLENGTH)
            sub(/.*fn[ \t]+/, "", fn)
        }
        index($0, want) {
            text = $0
            sub(/^[ \t]+/, "", text)
            gsub(/\t/, " ", text)
            printf "%s\t%d\t%s\t%d\t%s\n", FILENAME, FNR, (FILENAME ~ /\.rs$/ ? fn : ""), in_test, substr(text, 1, 160)
        }
    ')
fi
nhits=$(printf '%s\n' "$hits" | grep -c . || true)
hit_files=$(printf '%s\n' "$hits" | cut -f1 | grep . | uniq || true)
rust_hits=$(printf '%s\n' "$hit_files" | grep '\.rs$' || true)
production_hits=$(printf '%s\n' "$hits" | awk -F '\t' '$1 ~ /\.rs$/ && $4 == 0 { print $1 }' | uniq)
functions=$(printf '%s\n' "$hits" | awk -F '\t' '$3 != "" { print $1 "::" $3 }' | uniq)

status=ok
if [ "$nhits" -eq 0 ] || [ -n "$missing" ]; then status=attention; fi
if [ "$nhits" -eq 0 ]; then
    summary="\"$symptom\" not found in $nfiles files"
else
    summary="\"$symptom\": $nhits hits in $(printf '%s\n' "$hit_files" | grep -c .) of $nfiles files"
fi

highlights=$({
    printf '%s\n' "$summary"
    printf '%s\n' "$hits" | awk -F '\t' 'NF && $4 == 0 { printf "%s:%d%s\n", $1, $2, ($3 != "" ? " in fn " $3 : "") }' | head -n 5
    printf '%s\n' "$hits" | awk -F '\t' 'NF && $4 == 1 { n++ } END { if (n) printf "%d hits in test code: a test already mentions it\n", n }'
    printf '%s\n' "$missing" | awk 'NF { printf "focus path %s does not exist\n", $0 }'
} | json_lines)

cat <<JSON
{
  "agent": "locate",
  "status": "$status",
  "summary": $(json_str "$summary"),
  "goal": $(json_str "$goal"),
  "symptom": $(json_str "$symptom"),
  "files_searched": $nfiles,
  "missing_focus": $(printf '%s\n' "$missing" | json_lines),
  "hits": $(printf '%s\n' "$hits" | tsv_json "file:s line:n function:s test:b text:s"),
  "files": $(printf '%s\n' "$hit_files" | json_lines),
  "functions": $(printf '%s\n' "$functions" | json_lines),
  "scope": {
    "security": $(printf '%s\n' "$production_hits" | json_lines),
    "tests": $(printf '%s\n' "$rust_hits" | json_lines)
  },
  "highlights": $highlights
}
JSON
