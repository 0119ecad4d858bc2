#!/bin/sh
# docs: checks module headers and doc comments on the public surface.
#
# input:  repo (default "."); files come from the planner's scope.docs, else all production .rs
#         files.
# output: files whose first lines have no `//!` header; `pub` items (fn, struct, enum, trait,
#         type, const, static) outside test code with no `///` (or #[doc]) above them; coverage.
. "$(dirname -- "$0")/lib.sh"
read_task

files=$(scope docs production_paths)
[ -n "$files" ] || fail 100 "no Rust files to scan in '$REPO'"

# One row per file: H<TAB>file<TAB>has header<TAB>pub items<TAB>undocumented
# and one per undocumented item: U<TAB>file<TAB>line<TAB>item
rows=$(printf '%s\n' "$files" | tr '\n' '\0' | xargs -0 awk "$AWK_RUST"'
    function flush() {
        if (file != "") printf "H\t%s\t%d\t%d\t%d\n", file, header, items, missing
    }
    FNR == 1 {
        flush()
        file = FILENAME
        header = items = missing = doc = in_attr = 0
        preamble = 1
    }
    preamble && $0 ~ /^[ \t]*\/\/!/ { header = 1 }
    preamble && $0 !~ /^[ \t]*(\/\/|#!\[|$)/ { preamble = 0 }
    in_attr { if ($0 ~ /\][ \t]*$/) in_attr = 0; next }
    $0 ~ /^[ \t]*(\/\/\/|#\[doc)/ { doc = 1; next }
    $0 ~ /^[ \t]*#\[/ { if ($0 !~ /\][ \t]*$/) in_attr = 1; next }
    !in_test && code ~ /^[ \t]*pub[ \t]+((async|const|unsafe|extern)[ \t]+("[^"]*"[ \t]+)?)*(fn|struct|enum|trait|type|const|static|union)[ \t]/ {
        items++
        if (!doc) {
            missing++
            item = $0
            sub(/^[ \t]+/, "", item)
            sub(/[ \t]*[({=;].*$/, "", item)
            sub(/<.*$/, "", item)
            printf "U\t%s\t%d\t%s\n", file, FNR, item
        }
    }
    $0 !~ /^[ \t]*$/ { doc = 0 }
    END { flush() }
')

headers=$(printf '%s\n' "$rows" | awk -F '\t' '$1 == "H"' | cut -f2-)
undocumented=$(printf '%s\n' "$rows" | awk -F '\t' '$1 == "U"' | cut -f2-)
no_header=$(printf '%s\n' "$headers" | awk -F '\t' '$2 == 0 { print $1 }')
roots_no_header=$(printf '%s\n' "$no_header" | grep -E '(^|/)(lib|main)\.rs$' || true)
nfiles=$(printf '%s\n' "$headers" | grep -c . || true)
nno_header=$(printf '%s\n' "$no_header" | grep -c . || true)
items=$(printf '%s\n' "$headers" | awk -F '\t' '{ s += $3 } END { print s + 0 }')
missing=$(printf '%s\n' "$headers" | awk -F '\t' '{ s += $4 } END { print s + 0 }')
coverage=$(awk -v i="$items" -v m="$missing" 'BEGIN { print (i == 0 ? 100 : int(100 * (i - m) / i)) }')
worst=$(printf '%s\n' "$headers" | awk -F '\t' '$4 > 0 { printf "%s\t%d\t%d\n", $1, $3, $4 }' \
    | LC_ALL=C sort -t "$(printf '\t')" -k3,3nr -k1,1 | head -n 5)
status=ok
if [ -n "$roots_no_header" ] || [ "$coverage" -lt 80 ]; then status=attention; fi

highlights=$({
    printf '%s%% of %s pub items documented (%s missing ///)\n' "$coverage" "$items" "$missing"
    [ "$nno_header" -eq 0 ] || printf '%s of %s files have no //! header\n' "$nno_header" "$nfiles"
    printf '%s\n' "$roots_no_header" | awk 'NF { printf "crate root without //! overview: %s\n", $0 }'
    printf '%s\n' "$worst" | awk -F '\t' 'NF && NR <= 3 { printf "least documented: %s (%d of %d pub items lack ///)\n", $1, $3, $2 }'
} | json_lines)

cat <<JSON
{
  "agent": "docs",
  "status": "$status",
  "summary": $(json_str "$coverage% of $items pub items documented; $nno_header of $nfiles files lack a //! header"),
  "totals": {"files": $nfiles, "files_without_header": $nno_header, "pub_items": $items, "undocumented": $missing, "coverage_percent": $coverage},
  "files_without_header": $(printf '%s\n' "$no_header" | json_lines),
  "undocumented": $(printf '%s\n' "$undocumented" | tsv_json "file:s line:n item:s"),
  "least_documented": $(printf '%s\n' "$worst" | tsv_json "file:s pub_items:n undocumented:n"),
  "highlights": $highlights
}
JSON
