# Shared by the example agents; sourced, never run. POSIX sh plus coreutils, grep, find, awk, sed.
#
# The worker runs an agent as `sh -c COMMAND` with the task as JSON on stdin:
#   {"run":..,"task":..,"attempt":N,"capability":..,"input":{..},"upstream":{"<task id>":<output>}}
# and WORKFORCE_RUN, WORKFORCE_TASK, WORKFORCE_ATTEMPT, WORKFORCE_CAPABILITY in the environment.
# stdout is the task's output (JSON here); exit 0 is success, 100 a permanent failure, anything
# else a retryable one; the tail of stderr goes into the error.
#
# Every agent prints one JSON object with at least:
#   agent       its kind
#   status      "ok" or "attention"
#   summary     one line for people
#   highlights  a list of one-line findings
# which is what `synthesize.sh` merges, whatever else each agent reports.

# ATTEMPT, AWK_JQ and AWK_RUST are for the agents that source this file.
# shellcheck disable=SC2034
set -eu

AGENTS_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
AGENT=$(basename -- "$0" .sh)
# Findings lists are capped so outputs stay small; totals are always complete.
MAX_ITEMS=${MAX_ITEMS:-40}

# fail CODE MESSAGE: stops the agent; 100 means retrying cannot help.
fail() {
    printf '%s: %s\n' "$AGENT" "$2" >&2
    exit "$1"
}

# Reads the task from stdin, then works from the repository it names (input.repo, default ".",
# relative to the worker's working directory).
read_task() {
    TASK_JSON=$(cat)
    [ -n "$TASK_JSON" ] || fail 100 "no task on stdin: expected the task as JSON"
    printf '%s' "$TASK_JSON" | awk -v mode=check -f "$AGENTS_DIR/json.awk" \
        || fail 100 "the task on stdin is not valid JSON"
    ATTEMPT=${WORKFORCE_ATTEMPT:-$(task_text attempt 1)}
    REPO=$(task_text input.repo .)
    [ -d "$REPO" ] || fail 100 "input.repo: no directory '$REPO' (relative to $(pwd))"
    cd "$REPO"
}

# task_get PATH: the JSON text at PATH of the task; status 1 if absent.
task_get() {
    printf '%s' "$TASK_JSON" | awk -v mode=get -v want="$1" -f "$AGENTS_DIR/json.awk"
}

# task_text PATH [DEFAULT]: the value at PATH, strings unescaped; DEFAULT if absent or null.
task_text() {
    _v=$(printf '%s' "$TASK_JSON" | awk -v mode=text -v want="$1" -f "$AGENTS_DIR/json.awk") || _v=null
    if [ "$_v" = null ]; then printf '%s\n' "${2-}"; else printf '%s\n' "$_v"; fi
}

# task_keys PATH: keys of the object at PATH, one per line.
task_keys() {
    printf '%s' "$TASK_JSON" | awk -v mode=keys -v want="$1" -f "$AGENTS_DIR/json.awk" || true
}

# task_flat: every scalar of the task as `path<TAB>value`, strings unescaped.
task_flat() {
    printf '%s' "$TASK_JSON" | awk -v mode=flat -v unquote=1 -f "$AGENTS_DIR/json.awk"
}

# input_list KEY: the strings of the list input.KEY, one per line (nothing if absent or empty).
input_list() {
    task_flat | awk -F '\t' -v key="$1" '
        { n = split($1, p, ".") }
        n == 3 && p[1] == "input" && p[2] == key && p[3] ~ /^[0-9]+$/ { print $2 }
    '
}

# focus_files FIND_ARGS...: the files under input.focus (paths relative to the repository;
# default the whole repository) that match FIND_ARGS (e.g. -name '*.rs'), sorted, without
# build output and tool directories. A focus path outside the repository stops the agent;
# a missing one is skipped (the agent reports it).
focus_files() {
    input_files focus "$@"
}

# missing_focus: the input.focus paths that do not exist, one per line.
missing_focus() {
    missing_inputs focus
}

# input_files KEY FIND_ARGS...: as focus_files, for the list of paths input.KEY.
input_files() {
    _key=$1
    shift
    _focus=$(input_list "$_key")
    [ -n "$_focus" ] || _focus=.
    while IFS= read -r _p; do
        case $_p in /* | ../* | */../* | *..) fail 100 "input.$_key: '$_p' is outside the repository" ;; esac
    done <<EOF
$_focus
EOF
    printf '%s\n' "$_focus" | while IFS= read -r _p; do
        [ -e "$_p" ] || continue
        find "$_p" \( -name target -o -name .git -o -name .tools -o -name .run -o -name node_modules \) \
            -prune -o -type f \( "$@" \) -print
    done | sed 's|^\./||' | LC_ALL=C sort -u
}

# missing_inputs KEY: the paths of the list input.KEY that do not exist, one per line.
missing_inputs() {
    input_list "$1" | while IFS= read -r _p; do [ -e "$_p" ] || printf '%s\n' "$_p"; done
}

# awk source defining jq(s): s as a JSON string literal. Prepend it to an awk program.
AWK_JQ='
BEGIN {
    for (_i = 1; _i < 32; _i++) _esc[sprintf("%c", _i)] = sprintf("\\u%04x", _i)
    _esc["\t"] = "\\t"; _esc["\n"] = "\\n"; _esc["\r"] = "\\r"; _esc["\b"] = "\\b"; _esc["\f"] = "\\f"
    _esc["\""] = "\\\""; _esc["\\"] = "\\\\"
}
function jq(s,    out, i, c, len) {
    out = ""
    len = length(s)
    for (i = 1; i <= len; i++) {
        c = substr(s, i, 1)
        out = out ((c in _esc) ? _esc[c] : c)
    }
    return "\"" out "\""
}
'

# json_escape: stdin as one JSON string literal, quotes included; lines are joined with \n.
json_escape() {
    awk "$AWK_JQ"'
        { text = (NR > 1 ? text "\n" : "") $0 }
        END { printf "%s", jq(text) }
    '
}

# json_str TEXT: TEXT as a JSON string literal.
json_str() {
    printf '%s' "$1" | json_escape
}

# json_lines [MAX]: stdin's non-empty lines as a JSON array of strings, at most MAX (default
# MAX_ITEMS).
json_lines() {
    grep -v '^$' | head -n "${1:-$MAX_ITEMS}" | awk "$AWK_JQ"'
        BEGIN { printf "[" }
        { printf "%s%s", (NR > 1 ? "," : ""), jq($0) }
        END { printf "]" }
    '
}

# tsv_json SPEC [MAX]: stdin's tab-separated rows as a JSON array of objects, at most MAX (default
# MAX_ITEMS). SPEC names the columns in order, each NAME:s (string), NAME:n (integer) or NAME:b
# (boolean: 0 or empty is false), e.g. "file:s line:n".
tsv_json() {
    head -n "${2:-$MAX_ITEMS}" | awk -F '\t' -v spec="$1" "$AWK_JQ"'
        BEGIN {
            nf = split(spec, cols, " ")
            for (i = 1; i <= nf; i++) { split(cols[i], p, ":"); name[i] = p[1]; type[i] = p[2] }
            printf "["
        }
        $0 != "" {
            printf "%s{", (rows++ ? "," : "")
            for (i = 1; i <= nf; i++)
                printf "%s%s:%s", (i > 1 ? "," : ""), jq(name[i]), value(type[i], $i)
            printf "}"
        }
        END { printf "]" }
        function value(type, v) {
            if (type == "n") return sprintf("%d", v)
            if (type == "b") return (v == "" || v == "0" ? "false" : "true")
            return jq(v)
        }
    '
}

# awk source that, before any later rule, sets for each line of Rust:
#   code     the line without string and char literals and // comments ("" for comment lines)
#   in_test  1 inside test code: a test file, or after `#[cfg(test)] mod x {` (test modules
#            come last in a file by convention; this is a heuristic, not a parser)
AWK_RUST='
FNR == 1 {
    in_test = (FILENAME ~ /(^|\/)tests(\/|\.rs$)|_tests?\.rs$|(^|\/)benches\//)
    cfg_test = 0
}
{
    code = $0
    gsub(/\\\\/, "", code)
    gsub("\047([^\047\\\\]|\\\\.)\047", "\047\047", code)
    gsub(/"([^"\\]|\\.)*"/, "\"\"", code)
    sub(/\/\/.*/, "", code)
    rest = code
    if (rest ~ /#\[cfg\(test\)\]/) {
        sub(/.*#\[cfg\(test\)\]/, "", rest)
        cfg_test = 1
    }
    if (cfg_test && rest ~ /[^ \t]/ && rest !~ /^[ \t]*#\[/) {
        if (rest ~ /(^|[^A-Za-z0-9_])mod[ \t]+[A-Za-z0-9_]+[ \t]*\{/) in_test = 1
        cfg_test = 0
    }
}
'

# rust_files: the repository's .rs files, sorted, without build output and tool directories.
rust_files() {
    find . \( -name target -o -name .git -o -name .tools -o -name .run -o -name node_modules \) \
        -prune -o -type f -name '*.rs' -print | sed 's|^\./||' | LC_ALL=C sort
}

# test_paths, production_paths: filter stdin paths by whether the whole file is test code.
test_paths() {
    grep -E '(^|/)tests(/|\.rs$)|_tests?\.rs$|(^|/)benches/' || true
}

production_paths() {
    grep -Ev '(^|/)tests(/|\.rs$)|_tests?\.rs$|(^|/)benches/' || true
}

# scope NAME FILTER: the files the planner gave analyst NAME (upstream.<planner task>.scope.NAME),
# else every .rs file that passes FILTER (a command: production_paths or cat). Only files that
# exist are kept.
scope() {
    _files=$(task_flat | awk -F '\t' -v name="$1" '
        { n = split($1, p, ".") }
        n == 5 && p[1] == "upstream" && p[3] == "scope" && p[4] == name && p[5] ~ /^[0-9]+$/ { print $2 }
    ')
    if [ -n "$_files" ]; then
        printf '%s\n' "$_files" | while IFS= read -r _f; do
            if [ -f "$_f" ]; then printf '%s\n' "$_f"; fi
        done
    else
        rust_files | "$2"
    fi
}

# crate_of PATH: the workspace member a path belongs to (its first directory), or "(root)".
crate_of() {
    case $1 in
        */*) printf '%s\n' "${1%%/*}" ;;
        *) printf '(root)\n' ;;
    esac
}
