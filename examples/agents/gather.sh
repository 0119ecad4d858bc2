#!/bin/sh
# gather: collects what the repository says about each topic of a research question: where it
# is defined in Rust, which files mention it most, and what the documentation says.
#
# input:  repo (default "."); topics (fixed strings, matched case-sensitively; required);
#         focus (paths to read, relative to repo; default or [] the whole repository); goal
#         (the question, echoed back).
# output: per topic its mentions and files, the top files, Rust definitions (fn, struct, enum,
#         trait, type, const, mod whose line names it) and documentation lines (.md); status
#         "attention" when a topic is found nowhere or a focus path is missing.
. "$(dirname -- "$0")/lib.sh"
read_task

goal=$(task_text input.goal "")
topics=$(input_list topics)
[ -n "$topics" ] || fail 100 "input.topics is empty: give the terms to research, e.g. [\"RunSubmitted\", \"replay\"]"
files=$(focus_files -name '*.rs' -o -name '*.md')
missing=$(missing_focus)
nfiles=$(printf '%s\n' "$files" | grep -c . || true)
[ "$nfiles" -gt 0 ] || fail 100 "no .rs or .md files in input.focus under '$REPO'"

# topic<TAB>kind(mention|definition|doc)<TAB>file<TAB>line<TAB>text for every topic at once.
found=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk -v list="$topics" '
    BEGIN { n = split(list, topic, "\n") }
    {
        for (i = 1; i <= n; i++) {
            if (topic[i] == "" || !index($0, topic[i])) continue
            text = $0
            sub(/^[ \t]+/, "", text)
            gsub(/\t/, " ", text)
            text = substr(text, 1, 160)
            printf "%s\tmention\t%s\t%d\t%s\n", topic[i], FILENAME, FNR, text
            if (FILENAME ~ /\.rs$/ && $0 ~ /(^|[^A-Za-z0-9_])(fn|struct|enum|trait|type|const|mod)[ \t]+[A-Za-z0-9_]/)
                printf "%s\tdefinition\t%s\t%d\t%s\n", topic[i], FILENAME, FNR, text
            if (FILENAME ~ /\.md$/)
                printf "%s\tdoc\t%s\t%d\t%s\n", topic[i], FILENAME, FNR, text
        }
    }
')

# One JSON object per topic.
topic_json() {
    rows=$(printf '%s\n' "$found" | awk -F '\t' -v t="$1" '$1 == t')
    mentions=$(printf '%s\n' "$rows" | awk -F '\t' '$2 == "mention"')
    nmentions=$(printf '%s\n' "$mentions" | grep -c . || true)
    top=$(printf '%s\n' "$mentions" | awk -F '\t' 'NF { n[$3]++ } END { for (f in n) printf "%s\t%d\n", f, n[f] }' \
        | LC_ALL=C sort -t "$(printf '\t')" -k2,2nr -k1,1)
    nf=$(printf '%s\n' "$top" | grep -c . || true)
    printf '{"topic":%s,"mentions":%d,"files":%d,"top_files":%s,"definitions":%s,"docs":%s}' \
        "$(json_str "$1")" "$nmentions" "$nf" \
        "$(printf '%s\n' "$top" | tsv_json "file:s mentions:n" 5)" \
        "$(printf '%s\n' "$rows" | awk -F '\t' '$2 == "definition"' | cut -f3- | tsv_json "file:s line:n code:s" 10)" \
        "$(printf '%s\n' "$rows" | awk -F '\t' '$2 == "doc"' | cut -f3- | tsv_json "file:s line:n text:s" 5)"
}

topics_json=$(printf '%s\n' "$topics" | while IFS= read -r t; do topic_json "$t"; printf '\n'; done | paste -sd, -)
absent=$(printf '%s\n' "$topics" | while IFS= read -r t; do
    printf '%s\n' "$found" | awk -F '\t' -v t="$t" '$1 == t { f = 1; exit } END { exit !f }' || printf '%s\n' "$t"
done)
ntopics=$(printf '%s\n' "$topics" | grep -c .)
nabsent=$(printf '%s\n' "$absent" | grep -c . || true)
status=ok
if [ -n "$absent" ] || [ -n "$missing" ]; then status=attention; fi

highlights=$({
    printf '%s\n' "$topics" | while IFS= read -r t; do
        printf '%s\n' "$found" | awk -F '\t' -v t="$t" '
            $1 == t && $2 == "mention" { m++; if (!($3 in seen)) { seen[$3] = 1; f++ } }
            $1 == t && $2 == "definition" && d == "" { d = $3 ":" $4 }
            $1 == t && $2 == "doc" { docs++ }
            END { if (m) printf "%s: %d mentions in %d files, %d in docs%s\n", t, m, f, docs, (d != "" ? "; defined at " d : "") }'
    done
    printf '%s\n' "$absent" | awk 'NF { printf "%s: not found\n", $0 }'
    printf '%s\n' "$missing" | awk 'NF { printf "focus path %s does not exist\n", $0 }'
} | json_lines)

cat <<JSON
{
  "agent": "gather",
  "status": "$status",
  "summary": $(json_str "$((ntopics - nabsent)) of $ntopics topics found in $nfiles files${goal:+ for: $goal}"),
  "goal": $(json_str "$goal"),
  "files_read": $nfiles,
  "missing_focus": $(printf '%s\n' "$missing" | json_lines),
  "topics": [$topics_json],
  "highlights": $highlights
}
JSON
