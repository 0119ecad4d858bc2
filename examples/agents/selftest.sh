#!/bin/sh
# selftest: checks the lead example's agents (lead.sh, analyze.sh, merge.sh) by hand-written
# tasks on stdin, without a cluster: the spawn written to WORKFORCE_CONTROL for a simple, a
# medium and a complex goal, the analysts' findings, and the merge with a failed analyst, a
# failed lead and a disagreement. Run it from anywhere: `sh examples/agents/selftest.sh`.
# Prints one line per check; exits 1 if any fails.
set -u

AGENTS=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
cd "$AGENTS/../.." || exit 2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILED=0
CHECKS=0

check() { # check DESCRIPTION COMMAND...: runs COMMAND, prints ok or FAIL.
    _what=$1
    shift
    CHECKS=$((CHECKS + 1))
    if "$@"; then printf 'ok    %s\n' "$_what"; else printf 'FAIL  %s\n' "$_what"; FAILED=$((FAILED + 1)); fi
}
valid() { awk -v mode=check -f "$AGENTS/json.awk" < "$1" 2>/dev/null; }
text() { awk -v mode=text -v want="$2" -f "$AGENTS/json.awk" < "$1" 2>/dev/null; }
get() { awk -v mode=get -v want="$2" -f "$AGENTS/json.awk" < "$1" 2>/dev/null; }
count() { awk -v mode=keys -v want="$2" -f "$AGENTS/json.awk" < "$1" 2>/dev/null | grep -c .; }
is() { [ "$1" = "$2" ]; }
has() { case $1 in *"$2"*) return 0 ;; *) return 1 ;; esac; }

FOCUS='["docs","coordinator/src","shared/src","worker/src","tests"]'
# lead NAME GOAL: runs the lead; its stdout, stderr, control file and status in $TMP/NAME.*
lead() {
    : > "$TMP/$1.control"
    printf '{"run":"r","task":"lead","attempt":1,"capability":"lead","input":{"repo":".","goal":"%s","focus":%s,"context":["README.md"]},"upstream":{}}\n' "$2" "$FOCUS" \
        | WORKFORCE_CONTROL="$TMP/$1.control" WORKFORCE_TASK=lead sh "$AGENTS/lead.sh" > "$TMP/$1.out" 2> "$TMP/$1.err"
    echo $? > "$TMP/$1.rc"
}
# spawned NAME: the control file's entries are analyst-1..N of capability analyze, each with a
# scope, terms, limits and a timeout, and no slice is given twice.
spawned() {
    _n=$(count "$TMP/$1.control" spawn)
    _i=0
    while [ "$_i" -lt "$_n" ]; do
        is "$(text "$TMP/$1.control" "spawn.$_i.id")" "analyst-$((_i + 1))" || return 1
        is "$(text "$TMP/$1.control" "spawn.$_i.capability")" analyze || return 1
        [ "$(count "$TMP/$1.control" "spawn.$_i.input.scope")" -gt 0 ] || return 1
        [ "$(count "$TMP/$1.control" "spawn.$_i.input.terms")" -gt 0 ] || return 1
        [ -n "$(text "$TMP/$1.control" "spawn.$_i.input.limits.tool_calls")" ] || return 1
        [ -n "$(text "$TMP/$1.control" "spawn.$_i.timeout")" ] || return 1
        _i=$((_i + 1))
    done
    awk -v mode=flat -v unquote=1 -f "$AGENTS/json.awk" < "$TMP/$1.control" \
        | awk -F '\t' '$1 ~ /^spawn\.[0-9]+\.input\.scope\./ { if (seen[$2]++) exit 1 }'
}
only_spawn_key() { is "$(awk -v mode=keys -v want= -f "$AGENTS/json.awk" < "$1")" spawn; }

for case in "simple 1 Where is the retry backoff computed?" \
    "medium 4 How does a run survive a coordinator restart, and what does the event log record?" \
    "complex 10 How do workers, the coordinator and NATS handle failures, retries, timeouts and dead letters, and how are plans validated, replayed and simulated?"; do
    tier=${case%% *}
    rest=${case#* }
    n=${rest%% *}
    goal=${rest#* }
    lead "$tier" "$goal"
    check "lead: $tier goal exits 0" is "$(cat "$TMP/$tier.rc")" 0
    check "lead: $tier goal writes valid JSON to WORKFORCE_CONTROL" valid "$TMP/$tier.control"
    check "lead: ... with one key, spawn" only_spawn_key "$TMP/$tier.control"
    check "lead: $tier goal spawns $n analyze tasks" is "$(count "$TMP/$tier.control" spawn)" "$n"
    check "lead: each of the $n has an id, scope, terms, limits and timeout; no slice twice" spawned "$tier"
    check "lead: $tier goal prints valid JSON with tier $tier and $n analysts" \
        is "$(valid "$TMP/$tier.out" && text "$TMP/$tier.out" tier) $(count "$TMP/$tier.out" analysts)" "$tier $n"
done

(
    unset WORKFORCE_CONTROL
    printf '{"input":{"goal":"retry"}}' | sh "$AGENTS/lead.sh" > /dev/null 2> "$TMP/nocontrol.err"
)
check "lead: without WORKFORCE_CONTROL exits 100" is $? 100
check "lead: ... and says why on stderr" has "$(cat "$TMP/nocontrol.err")" "WORKFORCE_CONTROL is not set"
printf '{"input":{"goal":"how is it?"}}' | WORKFORCE_CONTROL="$TMP/x" sh "$AGENTS/lead.sh" > /dev/null 2>&1
check "lead: a goal with no significant word exits 100" is $? 100

# The medium spawn's analysts, run as the worker would run them.
i=0
while [ "$i" -lt 4 ]; do
    id=analyst-$((i + 1))
    printf '{"run":"r","task":"%s","attempt":1,"capability":"analyze","input":%s,"upstream":{}}\n' \
        "$id" "$(get "$TMP/medium.control" "spawn.$i.input")" \
        | WORKFORCE_TASK=$id sh "$AGENTS/analyze.sh" > "$TMP/$id.out" 2> "$TMP/$id.err"
    echo $? > "$TMP/$id.rc"
    i=$((i + 1))
done
analysts_ok() {
    for id in analyst-1 analyst-2 analyst-3 analyst-4; do
        is "$(cat "$TMP/$id.rc")" 0 && valid "$TMP/$id.out" || return 1
        [ "$(count "$TMP/$id.out" findings)" -gt 0 ] || return 1
        is "$(text "$TMP/$id.out" findings.0.aspect)" coverage || return 1
        [ -n "$(text "$TMP/$id.out" findings.0.verdict)" ] || return 1
    done
}
check "analyze: the 4 medium analysts exit 0 with findings, each term's coverage verdict first" analysts_ok

printf '{"input":{"terms":["retry"],"scope":["shared/src"],"fail_on_purpose":true}}' | sh "$AGENTS/analyze.sh" > /dev/null 2>&1
check "analyze: fail_on_purpose exits 100" is $? 100
printf '{"input":{"terms":["retry","backoff","jitter"],"scope":["shared/src/backoff.rs"],"limits":{"tool_calls":2}}}' \
    | sh "$AGENTS/analyze.sh" > "$TMP/budget.out" 2>/dev/null
check "analyze: a budget of 2 tool calls searches 1 term of 3 and says which were left out" \
    is "$(count "$TMP/budget.out" coverage) $(count "$TMP/budget.out" not_searched) $(text "$TMP/budget.out" status)" "1 2 attention"

# The merge, with analyst-3 failed: what the synthesize task gets under trigger = "all_done".
{
    printf '{"run":"r","task":"synthesize","attempt":1,"capability":"merge","input":{"title":"Lead"},"upstream":{"lead":'
    cat "$TMP/medium.out"
    for id in analyst-1 analyst-2 analyst-4; do printf ',"%s":' "$id"; cat "$TMP/$id.out"; done
    printf '},"upstream_errors":{"analyst-3":{"status":"failed","error":"analyze: timed out after 30s"}}}\n'
} > "$TMP/merge.in"
sh "$AGENTS/merge.sh" < "$TMP/merge.in" > "$TMP/merge.out" 2> "$TMP/merge.err"
rc=$?
check "merge: with a failed analyst exits 0 and prints valid JSON" is "$rc $(valid "$TMP/merge.out" && echo valid)" "0 valid"
check "merge: of 4 analysts spawned, 3 succeeded and 1 failed" \
    is "$(text "$TMP/merge.out" analysts.spawned) $(text "$TMP/merge.out" analysts.succeeded) $(text "$TMP/merge.out" analysts.failed)" "4 3 1"
check "merge: the failed analyst's error is reported and the status is attention" \
    is "$(text "$TMP/merge.out" upstream_errors.0.task) $(text "$TMP/merge.out" status)" "analyst-3 attention"
check "merge: the overview findings every analyst made are kept once (duplicates dropped)" \
    [ "$(text "$TMP/merge.out" duplicates_dropped)" -gt 0 ] 2>/dev/null

# Two hand-written analysts: one finding in common, and a term one has and the other lacks.
cat > "$TMP/disagree.in" <<'JSON'
{"input":{},"upstream":{
 "lead":{"agent":"lead","tier":"medium","analysts":["analyst-1","analyst-2"]},
 "analyst-1":{"agent":"analyze","aspect":"docs","findings":[
   {"aspect":"coverage","claim":"`x` is covered in docs","evidence":"3 lines","term":"x","verdict":"covered"},
   {"aspect":"overview","claim":"README.md mentions `x` (1 lines)","evidence":"README.md:1: x","term":"x"}]},
 "analyst-2":{"agent":"analyze","aspect":"src","findings":[
   {"aspect":"coverage","claim":"`x` is absent from src","evidence":"no line","term":"x","verdict":"absent"},
   {"aspect":"overview","claim":"README.md mentions `x` (1 lines)","evidence":"README.md:1: x","term":"x"}]}}}
JSON
sh "$AGENTS/merge.sh" < "$TMP/disagree.in" > "$TMP/disagree.out" 2>&1
check "merge: a finding two analysts made is kept once, reported by both" \
    is "$(text "$TMP/disagree.out" duplicates_dropped) $(count "$TMP/disagree.out" aspects.1.findings.0.reported_by)" "1 2"
check "merge: covered in one slice and absent from another is a disagreement on that term" \
    is "$(count "$TMP/disagree.out" disagreements) $(text "$TMP/disagree.out" disagreements.0.term) $(text "$TMP/disagree.out" disagreements.0.absent.0.analyst)" "1 x analyst-2"

printf '{"input":{},"upstream":{},"upstream_errors":{"lead":{"status":"failed","error":"lead: boom"}}}' \
    | sh "$AGENTS/merge.sh" > "$TMP/nolead.out" 2>&1
rc=$?
check "merge: a failed lead still gives a report: 0 spawned, status attention" \
    is "$rc $(text "$TMP/nolead.out" analysts.spawned) $(text "$TMP/nolead.out" status)" "0 0 attention"
printf '{"input":{},"upstream":{}}' | sh "$AGENTS/merge.sh" > /dev/null 2>&1
check "merge: nothing upstream exits 100" is $? 100

printf '%d checks, %d failed\n' "$CHECKS" "$FAILED"
[ "$FAILED" -eq 0 ]
