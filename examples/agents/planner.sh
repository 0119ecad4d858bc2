#!/bin/sh
# planner: surveys the repository's Rust sources and decides what each analyst looks at.
#
# input:  repo (default "."), goal (free text, echoed back), focus (paths to review, relative to
#         repo; default or [] the whole repository)
# output: totals, per-crate sizes, every file with its line count, the largest files, and
#         `scope.<analyst>`: the files each of security, tests, docs and performance reviews.
. "$(dirname -- "$0")/lib.sh"
read_task

goal=$(task_text input.goal "Review the repository")
files=$(focus_files -name '*.rs')
[ -n "$files" ] || fail 100 "no .rs files under '$REPO' in input.focus ($(input_list focus | paste -sd, -)): is input.repo the repository root?"

# path<TAB>lines<TAB>crate, in path order.
table=$(printf '%s\n' "$files" | while IFS= read -r f; do
    printf '%s\t%s\t%s\n' "$f" "$(wc -l < "$f" | tr -d ' ')" "$(crate_of "$f")"
done)

total_files=$(printf '%s\n' "$table" | wc -l | tr -d ' ')
total_lines=$(printf '%s\n' "$table" | awk -F '\t' '{ s += $2 } END { print s + 0 }')
production=$(printf '%s\n' "$files" | production_paths)
largest=$(printf '%s\n' "$table" | LC_ALL=C sort -t "$(printf '\t')" -k2,2nr -k1,1 | head -n 5)

crates=$(printf '%s\n' "$table" | awk -F '\t' '
    { files[$3]++; lines[$3] += $2; if (!($3 in seen)) { seen[$3] = 1; order[++n] = $3 } }
    END { for (i = 1; i <= n; i++) printf "%s\t%d\t%d\n", order[i], files[order[i]], lines[order[i]] }')
crates_json=$(printf '%s\n' "$crates" | tsv_json "name:s files:n lines:n")

files_json=$(printf '%s\n' "$table" | tsv_json "path:s lines:n crate:s" 100000)

largest_hl=$(printf '%s\n' "$largest" | awk -F '\t' 'NR <= 3 { printf "%s%s (%d lines)", (NR > 1 ? ", " : ""), $1, $2 }')
all=100000

cat <<JSON
{
  "agent": "planner",
  "status": "ok",
  "summary": $(json_str "$total_files Rust files, $total_lines lines; largest: $largest_hl"),
  "goal": $(json_str "$goal"),
  "totals": {"files": $total_files, "lines": $total_lines, "production_files": $(printf '%s\n' "$production" | grep -c . || true)},
  "crates": $crates_json,
  "files": $files_json,
  "largest": $(printf '%s\n' "$largest" | cut -f1 | json_lines 5),
  "scope": {
    "security": $(printf '%s\n' "$production" | json_lines $all),
    "tests": $(printf '%s\n' "$files" | json_lines $all),
    "docs": $(printf '%s\n' "$production" | json_lines $all),
    "performance": $(printf '%s\n' "$production" | json_lines $all)
  },
  "focus": {
    "security": "unwrap/expect/panic on production paths, unsafe blocks, spawned commands",
    "tests": "test counts per crate and source files with no tests",
    "docs": "missing //! module headers and undocumented pub items",
    "performance": "clone() density, locks, sleeps, long functions and files"
  },
  "highlights": [
    $(json_str "$total_files Rust files, $total_lines lines across $(printf '%s\n' "$crates" | grep -c .) crates"),
    $(json_str "largest files: $largest_hl")
  ]
}
JSON
