#!/bin/sh
# merge: merges what a lead's analysts found (lead.sh, analyze.sh) into one report, whether or
# not every analyst succeeded: run it with `trigger = "all_done"` after the lead.
#
# input:  title (optional); lead (the lead's task id, default "lead": how its failure is told
#         apart from an analyst's). Upstream: the lead's output (agent "lead", listing the
#         `analysts` it spawned) and each analyst's (agent "analyze", with `findings`), by task
#         id; `upstream_errors` holds the tasks that failed, were canceled or were skipped.
# output: how many analysts succeeded of those spawned, and why the others did not; the
#         findings grouped by aspect, a finding several analysts made kept once with every
#         analyst in `reported_by`, the duplicates counted; `disagreements`: terms one analyst
#         finds in its slice (covered or mentioned) and another finds absent from its own (both
#         hold, each for its slice: the merge says where the term lives and where it does not);
#         `not_found`: terms no analyst found. Status "attention" when the lead or an analyst
#         did not succeed or a term was found nowhere.
. "$(dirname -- "$0")/lib.sh"
read_task

title=$(task_text input.title "Lead report")
lead=$(task_text input.lead lead)
[ -n "$(task_keys upstream)$(task_keys upstream_errors)" ] \
    || fail 100 "nothing upstream to merge: give this task needs = [\"$lead\"] and trigger = \"all_done\""

# Every scalar as path<TAB>raw JSON; strings stay escaped, so they are copied into the output as
# they are and compared as written.
printf '%s' "$TASK_JSON" | awk -v mode=flat -f "$AGENTS_DIR/json.awk" \
    | TITLE=$title LEAD=$lead awk -F '\t' "$AWK_JQ"'
    BEGIN {
        title = ENVIRON["TITLE"]; lead = ENVIRON["LEAD"]
        split("coverage code definitions tests docs other overview", fixed, " ")
        for (i = 1; i <= 7; i++) rank[jq(fixed[i])] = i
    }
    {
        n = split($1, p, ".")
        v = substr($0, length($1) + 2)
    }
    p[1] == "upstream" && n >= 3 {
        id = p[2]
        if (!(id in up)) { up[id] = 1; uporder[++nup] = id }
        if (n == 3 && p[3] == "agent") agent[id] = v
        if (n == 3 && p[3] == "aspect") label[id] = v
        if (n == 3 && p[3] == "goal") goal[id] = v
        if (n == 3 && p[3] == "tier") tier[id] = v
        if (n == 4 && p[3] == "analysts") listed[id, ++nlisted[id]] = unq(v)
        if (n == 5 && p[3] == "findings") {
            i = p[4] + 1
            if (i > nf[id]) nf[id] = i
            f[id, i, p[5]] = v
        }
    }
    p[1] == "upstream_errors" && n == 3 {
        id = p[2]
        if (!(id in err)) { err[id] = 1; errorder[++nerr] = id }
        e[id, p[3]] = v
    }
    END {
        # The lead: the upstream output of agent "lead", else the task named by input.lead.
        for (i = 1; i <= nup; i++) if (agent[uporder[i]] == "\"lead\"") lead = uporder[i]
        lead_ok = (lead in up)
        lead_failed = (lead in err)
        spawned = lead_ok ? nlisted[lead] + 0 : 0
        # The analysts in the order the lead spawned them, then any other output with findings.
        for (i = 1; i <= spawned; i++) { a = listed[lead, i]; order[++na] = a; isspawned[a] = 1 }
        for (i = 1; i <= nup; i++) {
            a = uporder[i]
            if (a != lead && !(a in isspawned) && nf[a]) order[++na] = a
        }
        for (i = 1; i <= na; i++) {
            a = order[i]
            if (a in up) { ok[a] = 1; if (a in isspawned) succeeded++; okids = okids sep(okids) jq(a) }
            else if (a in err) failed++
            else if (a in isspawned) unaccounted = unaccounted sep(unaccounted) a
        }

        # Findings, first seen first; a finding seen again adds its analyst to reported_by.
        for (i = 1; i <= na; i++) {
            a = order[i]
            if (!ok[a]) continue
            for (j = 1; j <= nf[a]; j++) {
                asp = f[a, j, "aspect"]; if (asp == "") asp = "\"(none)\""
                key = asp SUBSEP f[a, j, "claim"] SUBSEP f[a, j, "evidence"]
                if (key in at) { by[at[key]] = by[at[key]] "," jq(a); dups++; continue }
                at[key] = ++nu
                by[nu] = jq(a)
                uasp[nu] = asp
                body[nu] = "\"aspect\":" asp ",\"claim\":" or_null(f[a, j, "claim"]) ",\"evidence\":" or_null(f[a, j, "evidence"]) \
                    (f[a, j, "term"] != "" ? ",\"term\":" f[a, j, "term"] : "") \
                    (f[a, j, "verdict"] != "" ? ",\"verdict\":" f[a, j, "verdict"] : "")
                if (!(asp in count)) { aspects[++nasp] = asp; if (!(asp in rank)) rank[asp] = 100 + nasp }
                count[asp]++
                t = f[a, j, "term"]; vd = f[a, j, "verdict"]
                if (asp == "\"coverage\"" && t != "" && vd != "") {
                    if (!(t in tseen)) { tseen[t] = 1; terms[++nt] = t }
                    if (vd == "\"absent\"") absent[t] = absent[t] sep(absent[t]) a
                    else present[t] = present[t] sep(present[t]) a
                    verdict[t, a] = vd
                }
            }
        }

        # Disagreements, and terms no analyst found.
        for (i = 1; i <= nt; i++) {
            t = terms[i]
            if (present[t] == "") { notfound = notfound (nnot++ ? "\034" : "") t; continue }
            if (absent[t] == "") continue
            np = split(present[t], ps, ","); nabs = split(absent[t], as, ",")
            d = "{\"term\":" t ",\"present\":["
            for (k = 1; k <= np; k++)
                d = d (k > 1 ? "," : "") "{\"analyst\":" jq(ps[k]) ",\"aspect\":" or_null(label[ps[k]]) ",\"verdict\":" verdict[t, ps[k]] "}"
            d = d "],\"absent\":["
            for (k = 1; k <= nabs; k++)
                d = d (k > 1 ? "," : "") "{\"analyst\":" jq(as[k]) ",\"aspect\":" or_null(label[as[k]]) "}"
            res = unq(t) " is in the repository: " np " of " (np + nabs) " slices have it (" show(present[t]) "); it is absent from the slices of " show(absent[t]) ", each right about its own part"
            disagreements = disagreements sep(disagreements) d "],\"resolution\":" jq(res) "}"
            ndis++
            hl_dis = hl_dis "\n" "disagreement on " unq(t) ": present for " show(present[t]) "; absent for " show(absent[t])
        }

        errors = ""
        for (i = 1; i <= nerr; i++) {
            id = errorder[i]
            errors = errors sep(errors) "{\"task\":" jq(id) ",\"status\":" or_null(e[id, "status"]) ",\"error\":" or_null(e[id, "error"]) "}"
            if (id != lead) failed_text = failed_text sep(failed_text) id " " unq(e[id, "status"])
        }

        status = (lead_failed || !lead_ok || succeeded < spawned || nnot ? "attention" : "ok")
        if (!lead_ok)
            summary = title ": the lead " (lead_failed ? unq(e[lead, "status"]) " (" unq(e[lead, "error"]) ")" : "left no output") ", so no analysts ran"
        else
            summary = title ": " (succeeded + 0) " of " spawned " analysts succeeded" (failed_text != "" ? " (" failed_text ")" : "") \
                "; " (nu + 0) " findings in " (nasp + 0) " aspects, " (dups + 0) " duplicates dropped; " (ndis + 0) " disagreements"
        if (unaccounted != "") summary = summary "; no outcome for " unaccounted

        printf "{\n  \"agent\": \"merge\",\n  \"status\": \"%s\",\n  \"title\": %s,\n  \"summary\": %s,\n", status, jq(title), jq(summary)
        printf "  \"goal\": %s,\n  \"tier\": %s,\n", or_null(goal[lead]), or_null(tier[lead])
        printf "  \"lead\": {\"task\": %s, \"status\": %s},\n", jq(lead), (lead_ok ? "\"completed\"" : (lead_failed ? e[lead, "status"] : "null"))
        printf "  \"analysts\": {\"spawned\": %d, \"succeeded\": %d, \"failed\": %d, \"succeeded_ids\": [%s], \"unaccounted\": [%s]},\n", spawned, succeeded, failed, okids, quoted(unaccounted)
        printf "  \"upstream_errors\": [%s],\n", errors
        printf "  \"findings\": %d,\n  \"duplicates_dropped\": %d,\n  \"aspects\": [", nu, dups
        # Aspects in a fixed order (coverage, code, definitions, tests, docs, other, overview), then as met.
        for (r = 1; r <= nasp; r++) { best = 0; for (i = 1; i <= nasp; i++) if (!(i in done) && (!best || rank[aspects[i]] < rank[aspects[best]])) best = i; done[best] = 1; sorted[r] = aspects[best] }
        for (r = 1; r <= nasp; r++) {
            asp = sorted[r]
            printf "%s\n    {\"aspect\": %s, \"count\": %d, \"findings\": [", (r > 1 ? "," : ""), asp, count[asp]
            c = 0
            for (k = 1; k <= nu; k++) if (uasp[k] == asp) printf "%s\n      {%s,\"reported_by\":[%s]}", (c++ ? "," : ""), body[k], by[k]
            printf "\n    ]}"
        }
        printf "\n  ],\n  \"disagreements\": [%s],\n  \"not_found\": [%s],\n", disagreements, raw_list(notfound, ",")
        hl = summary
        if (nnot) hl = hl "\n" "found by no analyst: " unq_list(notfound)
        hl = hl hl_dis
        for (i = 1; i <= nerr; i++) hl = hl "\n" errorder[i] " " unq(e[errorder[i], "status"]) ": " unq(e[errorder[i], "error"])
        nh = split(hl, h, "\n")
        printf "  \"highlights\": ["
        for (i = 1; i <= nh && i <= 40; i++) printf "%s%s", (i > 1 ? "," : ""), jq(h[i])
        printf "]\n}\n"
    }
    function sep(s) { return s == "" ? "" : "," }
    function or_null(raw) { return raw == "" ? "null" : raw }
    # Task ids, joined with ",": quoted (the items of a JSON list) and shown (for people).
    function quoted(list,    n, x, i, out) { n = split(list, x, ","); for (i = 1; i <= n; i++) out = out (i > 1 ? "," : "") jq(x[i]); return out }
    function show(list) { gsub(/,/, ", ", list); return list }
    # JSON strings joined with \034: as the items of a JSON list, and as text.
    function raw_list(list, glue) { gsub(/\034/, glue, list); return list }
    function unq_list(list,    n, x, i, out) { n = split(list, x, "\034"); for (i = 1; i <= n; i++) out = out (i > 1 ? ", " : "") unq(x[i]); return out }
    # unq(raw): the text of a JSON string (escapes other than \" \\ \/ \n \t kept as written).
    function unq(raw,    s) {
        if (raw !~ /^"/) return raw
        s = substr(raw, 2, length(raw) - 2)
        gsub(/\\\\/, "\001", s); gsub(/\\"/, "\"", s); gsub(/\\\//, "/", s); gsub(/\\n/, " ", s); gsub(/\\t/, " ", s)
        gsub(/\001/, "\\", s)
        return s
    }
'
