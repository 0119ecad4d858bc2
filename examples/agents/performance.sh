#!/bin/sh
# performance: finds the usual suspects for latency and contention in production code.
#
# input:  repo (default "."); max_function_lines (default 60); max_file_lines (default 400).
#         Files come from the planner's scope.performance, else all production .rs files.
# output: `.clone()` counts and the files with the most, Mutex/RwLock uses, sleep and block_on
#         calls, and functions and files longer than the limits. Test code is skipped.
. "$(dirname -- "$0")/lib.sh"
read_task

max_fn=$(task_text input.max_function_lines 60)
max_file=$(task_text input.max_file_lines 400)
case $max_fn$max_file in *[!0-9]*) fail 100 "input.max_function_lines and input.max_file_lines must be whole numbers" ;; esac

files=$(scope performance production_paths)
[ -n "$files" ] || fail 100 "no Rust files to scan in '$REPO'"

# F<TAB>file<TAB>lines<TAB>clones          one per file
# S<TAB>kind<TAB>file<TAB>line<TAB>code      sleep, block_on, lock
# L<TAB>file<TAB>function<TAB>line<TAB>length   functions over the limit
rows=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk -v max_fn="$max_fn" "$AWK_RUST"'
    function flush() {
        if (file != "") printf "F\t%s\t%d\t%d\n", file, lines, clones
    }
    function site(kind,    text) {
        text = $0
        sub(/^[ \t]+/, "", text)
        gsub(/\t/, " ", text)
        printf "S\t%s\t%s\t%d\t%s\n", kind, file, FNR, substr(text, 1, 160)
    }
    FNR == 1 { flush(); file = FILENAME; lines = clones = depth = infn = 0 }
    { lines++ }
    in_test { next }
    {
        clones += gsub(/\.clone\(\)/, "&", code)
        if (code ~ /(^|[^A-Za-z0-9_])sleep(_ms|_until)?\(/) site("sleep")
        if (code ~ /block_on\(/) site("block_on")
        if (code ~ /(Mutex|RwLock)(<|::new)/) site("lock")
        opens = gsub(/\{/, "{", code)
        closes = gsub(/\}/, "}", code)
        if (!infn && match(code, /(^|[^A-Za-z0-9_])fn[ \t]+[A-Za-z0-9_]+/)) {
            name = substr(code, RSTART, RLENGTH)
            sub(/^.*fn[ \t]+/, "", name)
            infn = 1; start = FNR; base = depth; opened = 0
        }
        depth += opens - closes
        if (infn) {
            if (opens > 0) opened = 1
            if (!opened && code ~ /;[ \t]*$/) infn = 0
            else if (opened && depth <= base) {
                if (FNR - start + 1 > max_fn) printf "L\t%s\t%s\t%d\t%d\n", file, name, start, FNR - start + 1
                infn = 0
            }
        }
    }
    END { flush() }
')

tab=$(printf '\t')
per_file=$(printf '%s\n' "$rows" | awk -F '\t' '$1 == "F"' | cut -f2-)
sites=$(printf '%s\n' "$rows" | awk -F '\t' '$1 == "S"' | cut -f2-)
long_fns=$(printf '%s\n' "$rows" | awk -F '\t' '$1 == "L"' | cut -f2- | LC_ALL=C sort -t "$tab" -k4,4nr -k1,1)
long_files=$(printf '%s\n' "$per_file" | awk -F '\t' -v max="$max_file" '$2 > max { printf "%s\t%d\n", $1, $2 }' \
    | LC_ALL=C sort -t "$tab" -k2,2nr -k1,1)
clone_hot=$(printf '%s\n' "$per_file" | awk -F '\t' '$3 > 0 { printf "%s\t%d\n", $1, $3 }' \
    | LC_ALL=C sort -t "$tab" -k2,2nr -k1,1 | head -n 5)

sum() { printf '%s\n' "$per_file" | awk -F '\t' -v col="$1" '{ s += $col } END { print s + 0 }'; }
kind() { printf '%s\n' "$sites" | awk -F '\t' -v kind="$1" '$1 == kind' | cut -f2-; }
lines_of() { printf '%s\n' "$1" | grep -c . || true; }
nfiles=$(lines_of "$per_file"); nlines=$(sum 2); nclones=$(sum 3)
sleeps=$(kind sleep); blocks=$(kind block_on); locks=$(kind lock)
nsleep=$(lines_of "$sleeps"); nblock=$(lines_of "$blocks"); nlock=$(lines_of "$locks")
nlong_fn=$(lines_of "$long_fns"); nlong_file=$(lines_of "$long_files")
status=ok
[ $((nsleep + nblock + nlong_fn + nlong_file)) -eq 0 ] || status=attention

highlights=$({
    printf '%s .clone() calls in %s lines of production code\n' "$nclones" "$nlines"
    printf '%s\n' "$clone_hot" | awk -F '\t' 'NF && NR <= 2 { printf "clone hotspot: %s (%d)\n", $1, $2 }'
    [ "$nlock" -eq 0 ] || printf '%s Mutex/RwLock uses: check none is held across .await\n' "$nlock"
    [ "$nsleep" -eq 0 ] || printf '%s sleep calls in production code\n' "$nsleep"
    [ "$nblock" -eq 0 ] || printf '%s block_on calls\n' "$nblock"
    printf '%s\n' "$long_fns" | awk -F '\t' 'NF && NR <= 3 { printf "long function: %s in %s (%d lines)\n", $2, $1, $4 }'
    printf '%s\n' "$long_files" | awk -F '\t' 'NF && NR <= 3 { printf "long file: %s (%d lines)\n", $1, $2 }'
} | json_lines)

cat <<JSON
{
  "agent": "performance",
  "status": "$status",
  "summary": $(json_str "$nclones clones, $nlock locks, $nsleep sleeps, $nblock block_on; $nlong_fn functions over $max_fn lines, $nlong_file files over $max_file lines"),
  "thresholds": {"function_lines": $max_fn, "file_lines": $max_file},
  "totals": {"files": $nfiles, "lines": $nlines, "clone": $nclones, "lock": $nlock, "sleep": $nsleep, "block_on": $nblock, "long_functions": $nlong_fn, "long_files": $nlong_file},
  "clone_hotspots": $(printf '%s\n' "$clone_hot" | tsv_json "file:s clones:n"),
  "locks": $(printf '%s\n' "$locks" | tsv_json "file:s line:n code:s"),
  "sleeps": $(printf '%s\n' "$sleeps" | tsv_json "file:s line:n code:s"),
  "block_on": $(printf '%s\n' "$blocks" | tsv_json "file:s line:n code:s"),
  "long_functions": $(printf '%s\n' "$long_fns" | tsv_json "file:s function:s line:n lines:n"),
  "long_files": $(printf '%s\n' "$long_files" | tsv_json "file:s lines:n"),
  "highlights": $highlights
}
JSON
