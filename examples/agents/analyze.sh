#!/bin/sh
# analyze: one analyst of a lead (lead.sh): reads its slice of the repository for the goal's
# terms and reports findings with evidence, and whether each term is covered in its slice.
#
# input:  repo (default "."); terms (the stems to search, required); scope (paths to read,
#         relative to repo; default or [] the whole repository); aspect (a name for the scope;
#         default the scope joined); context (files read for orientation besides the scope;
#         default none); objective, goal, constraints (echoed back); limits.tool_calls (the
#         budget, default 20: one call lists the scope, one searches each term, one reads each
#         context file; terms come first, and what the budget leaves out is reported);
#         fail_on_purpose (fail permanently at once, to show the merge running past a failure).
# output: `findings`, each {aspect, claim, evidence, term}, where aspect is
#           coverage     per term, its verdict for the whole scope (also in `verdict`):
#                        "covered" (a Rust item or a doc heading names it, or 3+ lines do),
#                        "mentioned" (1 or 2 lines) or "absent"
#           code, tests, docs, other
#                        per term and kind of file (Rust outside tests, Rust test code, .md,
#                        .toml and .sh): lines, files, the file that mentions it most
#           definitions  Rust items (fn, struct, enum, trait, type, const, static, mod) whose
#                        name holds the term, at most 2 per term
#           overview     what each context file says of a term: the same for every analyst
#                        given the same context, so the merge has duplicates to drop
#         and `coverage` (term, verdict, lines, files), `usage` against `limits`. A term matches
#         case-insensitively where a word starts: "retry" matches retry_delay and RetryPolicy,
#         "policy" matches RetryPolicy, not "apolicy". Status "attention" when no term is in the
#         scope, a scope path is missing or the budget left a term out.
. "$(dirname -- "$0")/lib.sh"
read_task

[ "$(task_text input.fail_on_purpose false)" != true ] \
    || fail 100 "failing on purpose (input.fail_on_purpose), so the merge shows a failed analyst"
analyst=${WORKFORCE_TASK:-$(task_text task analyze)}
terms=$(input_list terms | awk '{ t = tolower($0) } t != "" && !(t in seen) { seen[t] = 1; print t }')
[ -n "$terms" ] || fail 100 "input.terms is empty: give the words to look for, e.g. [\"retry\", \"backoff\"]"
files=$(input_files scope -name '*.rs' -o -name '*.md' -o -name '*.toml' -o -name '*.sh')
missing=$(missing_inputs scope)
aspect=$(task_text input.aspect "")
[ -n "$aspect" ] || aspect=$( (input_list scope; [ -n "$(input_list scope)" ] || echo .) | paste -sd, - | sed 's/,/, /g')
context=""
if [ -n "$(input_list context)" ]; then context=$(input_files context -name '*'); fi
objective=$(task_text input.objective "")

# The budget: listing the scope, then the terms, then the context files.
budget=$(task_text input.limits.tool_calls 20)
case $budget in '' | *[!0-9]*) fail 100 "input.limits.tool_calls must be a whole number, not '$budget'" ;; esac
left=$((budget > 0 ? budget - 1 : 0))
searched=$(printf '%s\n' "$terms" | head -n "$left")
skipped=$(printf '%s\n' "$terms" | tail -n +$((left + 1)))
nsearched=$(printf '%s\n' "$searched" | grep -c . || true)
left=$((left - nsearched))
read_context=$(printf '%s\n' "$context" | grep . | head -n "$left" || true)
skipped_context=$(printf '%s\n' "$context" | grep . | tail -n +$((left + 1)) || true)
tool_calls=$(( (budget > 0 ? 1 : 0) + nsearched + $(printf '%s\n' "$read_context" | grep -c . || true) ))
[ "$budget" -gt 0 ] || files=""
nfiles=$(printf '%s\n' "$files" | grep -c . || true)

# awk source: hit(line, term) is 1 if term (lowercase) starts a word of line.
AWK_HIT='
function hit(line, t,    lower, p, off, prev, c) {
    lower = tolower(line)
    off = 0
    while ((p = index(substr(lower, off + 1), t)) > 0) {
        p += off
        if (p == 1) return 1
        prev = substr(line, p - 1, 1)
        c = substr(line, p, 1)
        if (prev !~ /[A-Za-z0-9]/ || (c ~ /[A-Z]/ && prev ~ /[a-z0-9]/)) return 1
        off = p
    }
    return 0
}
# clean(s): s trimmed to 120 bytes for evidence, never ending inside a UTF-8 character.
function clean(s) {
    sub(/^[ \t]+/, "", s)
    gsub(/[\t\r]/, " ", s)
    if (length(s) <= 120) return s
    s = substr(s, 1, 120)
    sub(/([\300-\337]|[\340-\357][\200-\277]?|[\360-\367][\200-\277]?[\200-\277]?)$/, "", s)
    return s
}
'

# term<TAB>kind<TAB>file<TAB>line<TAB>strong(0|1)<TAB>item<TAB>text, for every matching line;
# kind is code, tests, docs or other; item is "kind name" when a Rust item's name holds the term.
rows=""
lines_read=0
if [ -n "$files" ] && [ -n "$searched" ]; then
    rows=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk -v list="$searched" "$AWK_RUST$AWK_HIT"'
        BEGIN { n = split(list, term, "\n") }
        {
            kind = FILENAME ~ /\.rs$/ ? (in_test ? "tests" : "code") : (FILENAME ~ /\.md$/ ? "docs" : "other")
            item = ""
            c2 = code
            gsub(/const[ \t]+(unsafe[ \t]+)?fn/, "fn", c2)
            if (FILENAME ~ /\.rs$/ && match(c2, /(^|[^A-Za-z0-9_])(fn|struct|enum|trait|type|const|static|mod)[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
                item = substr(c2, RSTART, RLENGTH)
                sub(/^[^A-Za-z]+/, "", item)
                sub(/[ \t]+/, " ", item)
            }
            for (i = 1; i <= n; i++) {
                if (!hit($0, term[i])) continue
                named = (item != "" && hit(substr(item, index(item, " ") + 1), term[i]))
                heading = (kind == "docs" && $0 ~ /^#/)
                printf "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", term[i], kind, FILENAME, FNR, (named || heading), (named ? item : ""), clean($0)
            }
        }
    ')
fi
if [ -n "$files" ]; then lines_read=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 cat | wc -l | tr -d ' '); fi

# file<TAB>term<TAB>lines<TAB>first line<TAB>its text, per context file and term found there.
overview=""
if [ -n "$read_context" ] && [ -n "$searched" ]; then
    overview=$(printf '%s\n' "$read_context" | tr '\n' '\0' | xargs -0 awk -v list="$searched" "$AWK_HIT"'
        BEGIN { n = split(list, term, "\n") }
        { for (i = 1; i <= n; i++) if (hit($0, term[i]) && !((FILENAME, i) in first)) { first[FILENAME, i] = FNR; text[FILENAME, i] = clean($0) } }
        { for (i = 1; i <= n; i++) if (hit($0, term[i])) count[FILENAME, i]++ }
        FNR == 1 { files[++nf] = FILENAME }
        END {
            for (f = 1; f <= nf; f++) for (i = 1; i <= n; i++)
                if ((files[f], i) in first)
                    printf "%s\t%s\t%d\t%d\t%s\n", files[f], term[i], count[files[f], i], first[files[f], i], text[files[f], i]
        }
    ')
fi

# One finding per line, as JSON, in term order; then `coverage` rows as term<TAB>verdict<TAB>lines<TAB>files.
report=$(
    {
        printf '%s\n' "$rows" | sed '/^$/d; s/^/R\t/'
        printf '%s\n' "$overview" | sed '/^$/d; s/^/O\t/'
    } | SCOPE=$aspect awk -F '\t' -v list="$searched" -v nfiles="$nfiles" "$AWK_JQ"'
    BEGIN { scope = ENVIRON["SCOPE"]; nt = split(list, term, "\n"); split("code tests docs other", kinds, " ") }
    $1 == "R" {
        t = $2; k = $3; f = $4
        lines[t]++
        if (!((t, f) in seen)) { seen[t, f] = 1; files[t]++ }
        if (!(t in first)) first[t] = f ":" $5
        klines[t, k]++
        if (!((t, k, f) in kseen)) { kseen[t, k, f] = 1; kfiles[t, k]++ }
        fl[t, k, f]++
        if (fl[t, k, f] > best[t, k] || (fl[t, k, f] == best[t, k] && f < bestf[t, k])) { best[t, k] = fl[t, k, f]; bestf[t, k] = f }
        if (!((t, k, f, "line") in at)) { at[t, k, f, "line"] = $5; at[t, k, f, "text"] = $8 }
        if ($6) strong[t] = 1
        if ($7 != "" && ndef[t] < 2) { d = ++ndef[t]; def[t, d] = $7; defat[t, d] = f ":" $5 ": " $8 }
    }
    $1 == "O" { no[$3]++; o[$3, no[$3]] = $2 "\t" $4 "\t" $5 ": " $6 }
    END {
        for (i = 1; i <= nt; i++) {
            t = term[i]
            if (!lines[t]) { v = "absent"; claim = "`" t "` is absent from " scope; ev = "no line of the scope'"'"'s " nfiles " files" }
            else {
                v = (strong[t] || lines[t] >= 3) ? "covered" : "mentioned"
                claim = "`" t "` is " (v == "covered" ? "covered in " : "only mentioned in ") scope
                ev = lines[t] " lines in " files[t] " files"
                for (k = 1; k <= 4; k++) ev = ev (k == 1 ? ": " : ", ") kinds[k] " " (klines[t, kinds[k]] + 0)
                ev = ev "; first at " first[t]
            }
            finding("coverage", claim, ev, t, v)
            for (k = 1; k <= 4; k++) {
                kk = kinds[k]
                if (!klines[t, kk]) continue
                f = bestf[t, kk]
                finding(kk, "`" t "` in " kk ": " klines[t, kk] " lines in " kfiles[t, kk] " files, most in " f " (" best[t, kk] ")", f ":" at[t, kk, f, "line"] ": " at[t, kk, f, "text"], t, "")
            }
            for (d = 1; d <= ndef[t]; d++) finding("definitions", "`" t "` names the " def[t, d], defat[t, d], t, "")
            for (j = 1; j <= no[t]; j++) {
                split(o[t, j], p, "\t")
                finding("overview", p[1] " mentions `" t "` (" p[2] " lines)", p[1] ":" p[3], t, "")
            }
            printf "C\t%s\t%s\t%d\t%d\n", t, v, lines[t], files[t]
        }
    }
    function finding(aspect, claim, evidence, t, verdict) {
        printf "F\t{\"aspect\":%s,\"claim\":%s,\"evidence\":%s,\"term\":%s%s}\n", jq(aspect), jq(claim), jq(evidence), jq(t), (verdict != "" ? ",\"verdict\":" jq(verdict) : "")
    }
')
findings=$(printf '%s\n' "$report" | sed -n 's/^F\t//p' | paste -sd, -)
coverage=$(printf '%s\n' "$report" | sed -n 's/^C\t//p')
nfindings=$(printf '%s\n' "$report" | grep -c '^F' || true)
present=$(printf '%s\n' "$coverage" | awk -F '\t' '$2 != "absent" && NF' | grep -c . || true)

status=ok
if [ "$present" -eq 0 ] || [ -n "$missing" ] || [ -n "$skipped" ]; then status=attention; fi
summary="$analyst on $aspect: $present of $nsearched terms present in $nfiles files ($nfindings findings)"

highlights=$({
    printf '%s\n' "$coverage" | awk -F '\t' -v s="$aspect" 'NF { printf "%s: %s in %s (%d lines in %d files)\n", $1, $2, s, $3, $4 }'
    printf '%s\n' "$skipped" | awk 'NF { printf "%s: not searched, over the tool-call budget\n", $0 }'
    printf '%s\n' "$missing" | awk 'NF { printf "scope path %s does not exist\n", $0 }'
} | json_lines)

# What this attempt used, for the run's budgets (no model: no tokens, no cost).
if [ -n "${WORKFORCE_CONTROL:-}" ]; then
    printf '{"usage": {"tool_calls": %d, "tokens": 0, "cost_cents": 0}}\n' "$tool_calls" > "$WORKFORCE_CONTROL"
fi

cat <<JSON
{
  "agent": "analyze",
  "status": "$status",
  "summary": $(json_str "$summary"),
  "analyst": $(json_str "$analyst"),
  "aspect": $(json_str "$aspect"),
  "objective": $(json_str "$objective"),
  "scope": $( (input_list scope; [ -n "$(input_list scope)" ] || echo .) | json_lines 1000),
  "files_read": $nfiles,
  "lines_read": $lines_read,
  "coverage": $(printf '%s\n' "$coverage" | tsv_json "term:s verdict:s lines:n files:n" 1000),
  "findings": [$findings],
  "not_searched": $(printf '%s\n' "$skipped" | json_lines 1000),
  "missing_scope": $(printf '%s\n' "$missing" | json_lines),
  "usage": {"tool_calls": $tool_calls, "tokens": 0, "cost_cents": 0, "context_read": $(printf '%s\n' "$read_context" | json_lines), "context_skipped": $(printf '%s\n' "$skipped_context" | json_lines)},
  "limits": $(task_get input.limits || echo '{}'),
  "highlights": $highlights
}
JSON
