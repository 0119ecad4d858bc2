#!/bin/sh
# lead: judges how complex a goal is, splits the repository into slices and spawns one
# `analyze` task per slice (1, 4 or 10), each with an objective, a scope, constraints and a
# budget. The task that needs the lead then waits for every analyst too (see lead.toml).
#
# input:  repo (default "."); goal (the question, required); focus (paths to split among the
#         analysts, relative to repo; default or [] the whole repository); context (files every
#         analyst reads for orientation besides its slice; default ["README.md"]); fail_analysts
#         (analyst numbers whose task fails on purpose, for trying `trigger = "all_done"`;
#         default []).
# control: {"spawn": [...]} written to the file named by WORKFORCE_CONTROL; without it the lead
#         fails permanently, since its worker cannot grow the run.
# output: the tier, the score and how it was reached, the terms, each analyst's slice.
#
# Complexity, deterministic and from the goal's text alone:
#   words         distinct significant words: split on anything but letters, digits and '_',
#                 lowercased, stop words dropped, crudely stemmed (-ies -> y; -ing, -ed, -s
#                 dropped when enough is left), 3+ letters
#   conjunctions  and, or, but, nor, versus, vs, whereas, while, then, also, plus
#   questions     '?' characters
#   score = words + 2 * conjunctions + 2 * max(questions - 1, 0)
#   simple  (score <= 4)   1 analyst     medium (5..11)   4 analysts     complex (>= 12)   10
# The terms the analysts search are the stems, the first 12 in the goal's order.
#
# Slices: the focus paths (or the top-level entries) are the first slices; while there are
# fewer slices than analysts, or the heaviest directory holds more than 1.5 times an analyst's
# fair share of lines, that directory is replaced by its entries. The slices, in path order,
# are then cut into contiguous runs of about equal lines, one per analyst (fewer analysts when
# there are fewer slices than the tier wants; the output says so).
. "$(dirname -- "$0")/lib.sh"

[ -n "${WORKFORCE_CONTROL:-}" ] \
    || fail 100 "WORKFORCE_CONTROL is not set: this worker cannot add tasks to a run (a worker that supports spawning sets it)"
case $WORKFORCE_CONTROL in /*) ;; *) WORKFORCE_CONTROL=$(pwd)/$WORKFORCE_CONTROL ;; esac
read_task

goal=$(task_text input.goal "")
[ -n "$goal" ] || fail 100 "input.goal is empty: give the question to investigate"
repo_in=$(task_text input.repo .)
context=$(input_list context)
[ -n "$context" ] || [ -n "$(task_get input.context || true)" ] || context=README.md
while IFS= read -r c; do
    case $c in /* | ../* | */../* | *..) fail 100 "input.context: '$c' is outside the repository" ;; esac
done <<EOF
$context
EOF
fail_list=$(input_list fail_analysts)

# score<TAB>words<TAB>conjunctions<TAB>questions, then one term per line.
judged=$(printf '%s\n' "$goal" | awk '
    BEGIN {
        split("a an the is are was were be been being am do does did done to of in on at by for " \
              "with from into onto as it its this that these those there here what where when which " \
              "who whom whose why how can could should would will shall may might must not no any " \
              "all each every some our your their they them we you he she his her has have had " \
              "about over under between after before than so if such only very just more most " \
              "other same own out up down get gets got use uses using used make makes made", s, " ")
        for (i in s) stop[s[i]] = 1
        split("and or but nor versus vs whereas while then also plus", c, " ")
        for (i in c) conj[c[i]] = 1
    }
    { text = text " " tolower($0) }
    END {
        q = gsub(/\?/, " ", text)
        gsub(/[^a-z0-9_]+/, " ", text)
        n = split(text, w, " ")
        for (i = 1; i <= n; i++) {
            x = w[i]
            if (x in conj) { conjunctions++; continue }
            if (x in stop) continue
            x = stem(x)
            if (length(x) < 3 || (x in seen)) continue
            seen[x] = 1
            terms[++words] = x
        }
        score = words + 2 * conjunctions + 2 * (q > 1 ? q - 1 : 0)
        printf "%d\t%d\t%d\t%d\n", score, words, conjunctions, q
        for (i = 1; i <= words && i <= 12; i++) print terms[i]
    }
    function stem(x,    n) {
        n = length(x)
        if (n >= 5 && x ~ /ies$/) return substr(x, 1, n - 3) "y"
        if (n >= 6 && x ~ /ing$/) return substr(x, 1, n - 3)
        if (n >= 5 && x ~ /ed$/) return substr(x, 1, n - 2)
        if (n >= 4 && x ~ /s$/ && x !~ /(ss|us|is)$/) return substr(x, 1, n - 1)
        return x
    }
')
stats=$(printf '%s\n' "$judged" | head -n 1)
terms=$(printf '%s\n' "$judged" | tail -n +2)
score=$(printf '%s\n' "$stats" | cut -f1)
nwords=$(printf '%s\n' "$stats" | cut -f2)
nconj=$(printf '%s\n' "$stats" | cut -f3)
nq=$(printf '%s\n' "$stats" | cut -f4)
[ -n "$terms" ] || fail 100 "input.goal has no significant words to search for: '$goal'"

# Per tier: analysts, then each analyst's budget (tool calls, tokens, cost), which is also its
# `estimate` (reserved from the run's [limits] when it is dispatched, settled by what it
# reports), and its time and timeout.
if [ "$score" -le 4 ]; then
    tier=simple; want=1; estimate='"tool_calls":10,"tokens":20000,"cost_cents":5'; timeout=30s
elif [ "$score" -le 11 ]; then
    tier=medium; want=4; estimate='"tool_calls":15,"tokens":40000,"cost_cents":10'; timeout=30s
else
    tier=complex; want=10; estimate='"tool_calls":20,"tokens":60000,"cost_cents":15'; timeout=45s
fi
budget="\"time\":\"$timeout\",$estimate"

files=$(focus_files -name '*.rs' -o -name '*.md' -o -name '*.toml' -o -name '*.sh')
missing=$(missing_focus)
[ -n "$files" ] || fail 100 "no .rs, .md, .toml or .sh files under input.focus in '$REPO'"
units=$(input_list focus | while IFS= read -r p; do [ ! -e "$p" ] || printf '%s\n' "$p"; done | sed 's|^\./||; s|/*$||; s|^$|.|')
[ -n "$units" ] || units=.
context=$(printf '%s\n' "$context" | while IFS= read -r c; do [ ! -f "$c" ] || printf '%s\n' "$c"; done)
missing_context=$(input_list context | while IFS= read -r c; do [ -f "$c" ] || printf '%s\n' "$c"; done)

# analyst<TAB>slice<TAB>lines<TAB>files, analysts numbered from 1, slices in path order.
slices=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk '
    FNR == 1 { f[++nf] = FILENAME }
    { w[nf]++ }
    END { for (i = 1; i <= nf; i++) printf "%s\t%d\n", f[i], w[i] }
' | awk -F '\t' -v units="$units" -v want="$want" '
    { f[++nf] = $1; w[nf] = $2; total += $2 }
    END {
        nu = 0
        n = split(units, given, "\n")
        for (i = 1; i <= n; i++) if (!(given[i] in dup)) { dup[given[i]] = 1; weigh(given[i]) }
        fair = total / want
        for (;;) {
            best = 0
            for (i = 1; i <= nu; i++) if (isdir[i] && (!best || uw[i] > uw[best])) best = i
            if (!best || (nu >= want && uw[best] <= 1.5 * fair)) break
            expand(best)
        }
        k = (nu < want ? nu : want)
        rest = total
        j = 1
        for (c = k; c >= 1; c--) {
            target = rest / c
            acc = 0
            a = k - c + 1
            do {
                printf "%d\t%s\t%d\t%d\n", a, u[j], uw[j], un[j]
                acc += uw[j++]
            } while (j <= nu - (c - 1) && acc + uw[j] / 2 <= target)
            rest -= acc
        }
    }
    function under(file, unit) {
        return unit == "." || file == unit || substr(file, 1, length(unit) + 1) == unit "/"
    }
    # Appends unit p, with its lines, file count and whether it holds more than itself.
    function weigh(p,    i, lines, files, dir) {
        for (i = 1; i <= nf; i++) if (under(f[i], p)) { lines += w[i]; files++; if (f[i] != p) dir = 1 }
        if (!files) return
        nu++; u[nu] = p; uw[nu] = lines; un[nu] = files; isdir[nu] = dir
    }
    # Replaces unit b by its entries, in place.
    function expand(b,    i, c, p, rest, child, m, kids, seen, ou, ouw, oun, od, on) {
        p = u[b]
        m = 0
        for (i = 1; i <= nf; i++) {
            if (!under(f[i], p)) continue
            rest = (p == "." ? f[i] : substr(f[i], length(p) + 2))
            child = (p == "." ? "" : p "/") substr(rest, 1, (index(rest, "/") ? index(rest, "/") - 1 : length(rest)))
            if (!(child in seen)) { seen[child] = 1; kids[++m] = child }
        }
        on = nu
        for (i = 1; i <= on; i++) { ou[i] = u[i]; ouw[i] = uw[i]; oun[i] = un[i]; od[i] = isdir[i] }
        nu = 0
        for (i = 1; i <= on; i++) {
            if (i != b) { nu++; u[nu] = ou[i]; uw[nu] = ouw[i]; un[nu] = oun[i]; isdir[nu] = od[i]; continue }
            for (c = 1; c <= m; c++) weigh(kids[c])
        }
    }
')
nanalysts=$(printf '%s\n' "$slices" | tail -n 1 | cut -f1)
total_lines=$(printf '%s\n' "$slices" | awk -F '\t' '{ s += $3 } END { print s + 0 }')

json_list() { printf '%s\n' "$1" | json_lines 1000; }
terms_json=$(json_list "$terms")
context_json=$(json_list "$context")

# One awk builds the spawn and the assignments from the slices: analyst<TAB>field<TAB>json.
built=$(printf '%s\n' "$slices" | TERMS=$(printf '%s\n' "$terms" | paste -sd, - | sed 's/,/, /g') GOAL=$goal \
    FAIL=$(printf '%s\n' "$fail_list" | paste -sd' ' -) awk -F '\t' "$AWK_JQ"'
    BEGIN { terms = ENVIRON["TERMS"]; goal = ENVIRON["GOAL"]; fail = ENVIRON["FAIL"] }
    { a = $1; if (!(a in n)) order[++na] = a; s[a, ++n[a]] = $2; lines[a] += $3; files[a] += $4 }
    END {
        split(fail, fl, " ")
        for (i in fl) failing[fl[i]] = 1
        for (i = 1; i <= na; i++) {
            a = order[i]
            scope = ""
            for (j = 1; j <= n[a]; j++) scope = scope (j > 1 ? "," : "") jq(s[a, j])
            printf "%d\tscope\t[%s]\n", a, scope
            printf "%d\taspect\t%s\n", a, jq(label(a))
            printf "%d\tobjective\t%s\n", a, jq("Find what " label(a) " says about " terms ", for the goal: " goal)
            printf "%d\tlines\t%d\n%d\tfiles\t%d\n", a, lines[a], a, files[a]
            printf "%d\tfail\t%s\n", a, ((a in failing) ? "true" : "false")
        }
    }
    # The slices, consecutive ones in one directory written dir/{a,b}.
    function label(a,    j, out, dir, next_dir, group, g) {
        if (n[a] == 1 && s[a, 1] == ".") return "the repository"
        out = ""
        g = 0
        for (j = 1; j <= n[a]; j++) {
            dir = parent(s[a, j])
            group = (g ? group "," : "") base(s[a, j])
            g++
            next_dir = (j < n[a] ? parent(s[a, j + 1]) : "\001")
            if (next_dir == dir) continue
            out = out (out != "" ? ", " : "") (g > 1 && dir != "" ? dir "/{" group "}" : (g > 1 ? join_group(group) : (dir != "" ? dir "/" : "") group))
            g = 0
        }
        return out
    }
    function parent(p) { return p ~ /\// ? substr(p, 1, match(p, /\/[^\/]*$/) - 1) : "" }
    function base(p) { sub(/.*\//, "", p); return p }
    function join_group(group) { gsub(/,/, ", ", group); return group }
')
field() { printf '%s\n' "$built" | awk -F '\t' -v a="$1" -v k="$2" '$1 == a && $2 == k { print $3; exit }'; }

constraints=$(json_list "read only the files under scope (.rs, .md, .toml, .sh), and the context files for orientation
match each term case-insensitively where a word starts (snake_case and camelCase parts count)
cite evidence as path:line
say absent when a term is not in the scope: claim nothing beyond it
stay within limits: one tool call to list the scope, one per context file read, one per term searched")

ids=""
spawn=""
assignments=""
a=1
while [ "$a" -le "$nanalysts" ]; do
    id="analyst-$a"
    ids="$ids$id
"
    scope_json=$(field "$a" scope)
    aspect_json=$(field "$a" aspect)
    input="{\"repo\":$(json_str "$repo_in"),\"goal\":$(json_str "$goal"),\"objective\":$(field "$a" objective),\"aspect\":$aspect_json,\"scope\":$scope_json,\"context\":$context_json,\"terms\":$terms_json,\"constraints\":$constraints,\"limits\":{$budget}"
    if [ "$(field "$a" fail)" = true ]; then input="$input,\"fail_on_purpose\":true"; fi
    input="$input}"
    spawn="$spawn${spawn:+,
    }{\"id\":\"$id\",\"capability\":\"analyze\",\"timeout\":\"$timeout\",\"estimate\":{$estimate},\"input\":$input}"
    assignments="$assignments${assignments:+,
    }{\"id\":\"$id\",\"aspect\":$aspect_json,\"scope\":$scope_json,\"lines\":$(field "$a" lines),\"files\":$(field "$a" files)}"
    a=$((a + 1))
done

printf '{"spawn": [\n    %s\n]}\n' "$spawn" > "$WORKFORCE_CONTROL"

reasoning="$nwords significant words + 2 x $nconj conjunctions + 2 x $( [ "$nq" -gt 1 ] && echo $((nq - 1)) || echo 0) extra questions = score $score: $tier (simple <= 4 < medium <= 11 < complex) wants $want analyst$([ "$want" -eq 1 ] || echo s)"
[ "$nanalysts" -eq "$want" ] || reasoning="$reasoning; the focus splits into only $nanalysts slices, so $nanalysts analysts"
status=ok
if [ -n "$missing" ] || [ -n "$missing_context" ] || [ "$nanalysts" -ne "$want" ]; then status=attention; fi

highlights=$({
    printf '%s\n' "$reasoning"
    printf 'terms: %s\n' "$(printf '%s\n' "$terms" | paste -sd, - | sed 's/,/, /g')"
    printf '%s\n' "$built" | awk -F '\t' '$2 == "aspect" { a = $1; l[a] = $3 } $2 == "lines" { printf "analyst-%d: %s (%d lines)\n", a, l[a], $3 }' | sed 's/"//g'
    printf '%s\n' "$missing" | awk 'NF { printf "focus path %s does not exist\n", $0 }'
    printf '%s\n' "$missing_context" | awk 'NF { printf "context file %s does not exist\n", $0 }'
} | json_lines)

cat <<JSON
{
  "agent": "lead",
  "status": "$status",
  "summary": $(json_str "$tier goal (score $score): $nanalysts analyst$([ "$nanalysts" -eq 1 ] || echo s) over $total_lines lines"),
  "goal": $(json_str "$goal"),
  "tier": "$tier",
  "score": $score,
  "reasoning": $(json_str "$reasoning"),
  "counts": {"words": $nwords, "conjunctions": $nconj, "questions": $nq},
  "terms": $terms_json,
  "analysts": $(printf '%s' "$ids" | json_lines 1000),
  "limits": {$budget},
  "timeout": "$timeout",
  "assignments": [
    $assignments
  ],
  "missing_focus": $(printf '%s\n' "$missing" | json_lines),
  "missing_context": $(printf '%s\n' "$missing_context" | json_lines),
  "highlights": $highlights
}
JSON
