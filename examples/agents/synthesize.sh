#!/bin/sh
# synthesize: merges the outputs of the tasks it needs into one report.
#
# input:  title (optional). Upstream outputs arrive in the task's `upstream`, keyed by task id;
#         each is expected to carry agent, status, summary and highlights (see lib.sh), and a
#         plain-text output is taken as its own summary.
# output: overall status ("attention" if any report needs it), a summary, one line per report,
#         every highlight prefixed with its task, and the upstream outputs unchanged in `details`.
. "$(dirname -- "$0")/lib.sh"
read_task

tasks=$(task_keys upstream)
[ -n "$tasks" ] || fail 100 "no upstream outputs to merge: give this task \`needs\`"
title=$(task_text input.title "Report")

# task<TAB>agent<TAB>status<TAB>summary, one row per upstream task.
reports=$(printf '%s\n' "$tasks" | while IFS= read -r t; do
    if task_get "upstream.$t" | grep -q '^{'; then
        agent=$(task_text "upstream.$t.agent" "$t")
        status=$(task_text "upstream.$t.status" ok)
        summary=$(task_text "upstream.$t.summary" "")
    else
        agent=$t
        status=ok
        summary=$(task_text "upstream.$t" "" | head -n 1)
    fi
    printf '%s\t%s\t%s\t%s\n' "$t" "$agent" "$status" "$summary" | tr -d '\r'
done)

flagged=$(printf '%s\n' "$reports" | awk -F '\t' '$3 != "ok" { printf "%s%s", (n++ ? ", " : ""), $1 }')
n=$(printf '%s\n' "$reports" | grep -c .)
status=ok
[ -z "$flagged" ] || status=attention
summary="$title: $n reports merged ($(printf '%s\n' "$tasks" | paste -sd, - | sed 's/,/, /g'))"
if [ -n "$flagged" ]; then summary="$summary; attention needed in $flagged"; else summary="$summary; all ok"; fi

highlights=$(task_flat | awk -F '\t' '
    { n = split($1, p, ".") }
    n == 4 && p[1] == "upstream" && p[3] == "highlights" && p[4] ~ /^[0-9]+$/ { print p[2] ": " $2 }
' | json_lines 200)

cat <<JSON
{
  "agent": "synthesize",
  "status": "$status",
  "title": $(json_str "$title"),
  "summary": $(json_str "$summary"),
  "reports": $(printf '%s\n' "$reports" | tsv_json "task:s agent:s status:s summary:s" 1000),
  "highlights": $highlights,
  "details": $(task_get upstream)
}
JSON
