#!/bin/sh
# survey: reports how far one workstream has got, from the files it owns.
#
# input:  repo (default "."); stream (its name); goal (free text); paths (files or directories
#         the stream owns, relative to repo); keywords (fixed strings whose presence in those
#         files marks progress, e.g. a type or function name the stream must deliver).
# output: per path whether it exists, its Rust files, lines, tests and TODO/FIXME markers; which
#         keywords are found; status "attention" when a path or keyword is missing.
. "$(dirname -- "$0")/lib.sh"
read_task

stream=$(task_text input.stream "${WORKFORCE_TASK:-$(task_text task stream)}")
goal=$(task_text input.goal "")
flat=$(task_flat)
list() { printf '%s\n' "$flat" | awk -F '\t' -v key="$1" '{ n = split($1, p, ".") } n == 3 && p[1] == "input" && p[2] == key && p[3] ~ /^[0-9]+$/ { print $2 }'; }
paths=$(list paths)
keywords=$(list keywords)
[ -n "$paths" ] || fail 100 "input.paths is empty: name the files or directories the stream owns"

# path<TAB>exists<TAB>rust files<TAB>lines<TAB>tests<TAB>todos
table=$(printf '%s\n' "$paths" | while IFS= read -r p; do
    case $p in /* | ../* | */../* | *..) fail 100 "input.paths: '$p' is outside the repository" ;; esac
    if [ ! -e "$p" ]; then
        printf '%s\t0\t0\t0\t0\t0\n' "$p"
        continue
    fi
    rs=$(find "$p" \( -name target -o -name .git \) -prune -o -type f -name '*.rs' -print | LC_ALL=C sort)
    all=$(find "$p" \( -name target -o -name .git \) -prune -o -type f -print | LC_ALL=C sort)
    if [ -z "$all" ]; then printf '%s\t1\t0\t0\t0\t0\n' "$p"; continue; fi
    printf '%s\n' "$all" | tr '\n' '\0' | xargs -0 awk -v path="$p" -v nrs="$(printf '%s\n' "$rs" | grep -c . || true)" '
        { lines++ }
        FILENAME ~ /\.rs$/ && /^[ \t]*#\[(tokio::)?test[](]/ { tests++ }
        /(TODO|FIXME|XXX)/ { todos++ }
        END { printf "%s\t1\t%d\t%d\t%d\t%d\n", path, nrs, lines, tests, todos }'
done)

present=$(printf '%s\n' "$paths" | while IFS= read -r p; do [ ! -e "$p" ] || printf '%s\n' "$p"; done)
missing_paths=$(printf '%s\n' "$table" | awk -F '\t' '$2 == 0 { print $1 }')
found_kw=""
missing_kw=""
if [ -n "$keywords" ] && [ -n "$present" ]; then
    found_kw=$(printf '%s\n' "$keywords" | while IFS= read -r k; do
        if printf '%s\n' "$present" | tr '\n' '\0' | xargs -0 grep -rqF -- "$k" 2>/dev/null; then printf '%s\n' "$k"; fi
    done)
fi
missing_kw=$(printf '%s\n' "$keywords" | while IFS= read -r k; do
    [ -z "$k" ] || printf '%s\n' "$found_kw" | grep -qxF -- "$k" || printf '%s\n' "$k"
done)

sum() { printf '%s\n' "$table" | awk -F '\t' -v col="$1" '{ s += $col } END { print s + 0 }'; }
count() { printf '%s\n' "$1" | grep -c . || true; }
npaths=$(count "$paths"); npresent=$(count "$present")
nfiles=$(sum 3); nlines=$(sum 4); ntests=$(sum 5); ntodos=$(sum 6)
status=ok
if [ -n "$missing_paths" ] || [ -n "$missing_kw" ]; then status=attention; fi

highlights=$({
    printf '%s: %s of %s paths present, %s Rust files, %s lines, %s tests\n' "$stream" "$npresent" "$npaths" "$nfiles" "$nlines" "$ntests"
    printf '%s\n' "$missing_paths" | awk -v s="$stream" 'NF { printf "%s: not started: %s is missing\n", s, $0 }'
    [ -z "$missing_kw" ] || printf '%s: not found yet: %s\n' "$stream" "$(printf '%s\n' "$missing_kw" | paste -sd, - | sed 's/,/, /g')"
    [ "$ntodos" -eq 0 ] || printf '%s: %s TODO/FIXME markers\n' "$stream" "$ntodos"
} | json_lines)

cat <<JSON
{
  "agent": "survey",
  "stream": $(json_str "$stream"),
  "goal": $(json_str "$goal"),
  "status": "$status",
  "summary": $(json_str "$stream: $npresent/$npaths paths, $nfiles Rust files, $nlines lines, $ntests tests, $ntodos TODOs$( [ -z "$missing_kw" ] || printf '; %s keywords missing' "$(count "$missing_kw")")"),
  "totals": {"paths": $npaths, "present": $npresent, "rust_files": $nfiles, "lines": $nlines, "tests": $ntests, "todos": $ntodos},
  "paths": $(printf '%s\n' "$table" | tsv_json "path:s exists:b rust_files:n lines:n tests:n todos:n" 1000),
  "keywords_found": $(printf '%s\n' "$found_kw" | json_lines 1000),
  "keywords_missing": $(printf '%s\n' "$missing_kw" | json_lines 1000),
  "highlights": $highlights
}
JSON
