# A small JSON reader in POSIX awk (mawk, gawk, busybox), so the example agents need no jq.
#
#   awk -v mode=MODE [-v want=PATH] -f json.awk < doc.json
#
# A PATH names a value by its keys and array indices joined with '.', e.g. `upstream.plan.scope.0`;
# the whole document is the empty path. Keys containing '.' cannot be named (task ids cannot).
#
# Modes:
#   check  exit 0 if stdin is one valid JSON value, else 2
#   get    print the JSON text of the value at PATH; exit 1 if there is none
#   text   as get, but a string is printed unescaped (\uXXXX outside ASCII stays escaped)
#   keys   print the keys of the object (or indices of the array) at PATH, one per line
#   flat   print `path<TAB>json` for every scalar and empty container; with -v unquote=1,
#          strings are printed unescaped
#
# Exit status 2 and a message on stderr when the input is not JSON.

{ doc = doc (NR > 1 ? "\n" : "") $0 }

END {
    n = length(doc)
    pos = 1
    found = 0
    ws()
    if (pos > n) fail("empty input")
    value("")
    ws()
    if (pos <= n) fail("trailing characters")
    if (mode == "check" || mode == "flat") exit 0
    if (!found) exit 1
    if (mode == "get") print found_raw
    else if (mode == "text") print (substr(found_raw, 1, 1) == "\"" ? unescape(found_raw) : found_raw)
    else if (mode == "keys") printf "%s", found_keys
    exit 0
}

function fail(msg) {
    printf "json.awk: invalid JSON near character %d: %s\n", pos, msg > "/dev/stderr"
    failed = 1
    exit 2
}

function ws(    c) {
    while (pos <= n) {
        c = substr(doc, pos, 1)
        if (c != " " && c != "\t" && c != "\n" && c != "\r") return
        pos++
    }
}

function join(path, key) { return path == "" ? key : path "." key }

function value(path,    start, c, raw) {
    if (failed) exit 2
    ws()
    start = pos
    c = substr(doc, pos, 1)
    if (c == "{") object(path)
    else if (c == "[") array(path)
    else if (c == "\"") string()
    else if (c ~ /[-0-9tfn]/) literal()
    else fail("unexpected " (c == "" ? "end of input" : "'" c "'"))
    raw = substr(doc, start, pos - start)
    if (mode == "flat" && (c !~ /[{[]/ || raw ~ /^[{[][ \t\r\n]*[]}]$/))
        printf "%s\t%s\n", path, (unquote && c == "\"" ? unescape(raw) : raw)
    if ((mode == "get" || mode == "text") && path == want && !found) {
        found = 1
        found_raw = raw
    }
}

function object(path,    c, kstart, key) {
    if (path == want && mode == "keys") { found = 1; found_keys = "" }
    pos++
    ws()
    if (substr(doc, pos, 1) == "}") { pos++; return }
    for (;;) {
        ws()
        if (substr(doc, pos, 1) != "\"") fail("expected a key")
        kstart = pos
        string()
        key = unescape(substr(doc, kstart, pos - kstart))
        if (path == want && mode == "keys") found_keys = found_keys key "\n"
        ws()
        if (substr(doc, pos, 1) != ":") fail("expected ':'")
        pos++
        value(join(path, key))
        ws()
        c = substr(doc, pos, 1)
        pos++
        if (c == "}") return
        if (c != ",") fail("expected ',' or '}'")
    }
}

function array(path,    c, i) {
    if (path == want && mode == "keys") { found = 1; found_keys = "" }
    pos++
    ws()
    if (substr(doc, pos, 1) == "]") { pos++; return }
    for (i = 0; ; i++) {
        if (path == want && mode == "keys") found_keys = found_keys i "\n"
        value(join(path, i))
        ws()
        c = substr(doc, pos, 1)
        pos++
        if (c == "]") return
        if (c != ",") fail("expected ',' or ']'")
    }
}

function string(    c) {
    pos++
    while (pos <= n) {
        c = substr(doc, pos, 1)
        if (c == "\\") pos += 2
        else if (c == "\"") { pos++; return }
        else pos++
    }
    fail("unterminated string")
}

function literal(    c, start, tok) {
    start = pos
    while (pos <= n) {
        c = substr(doc, pos, 1)
        if (c ~ /[-+.eE0-9a-z]/) pos++
        else break
    }
    tok = substr(doc, start, pos - start)
    if (tok != "true" && tok != "false" && tok != "null" && tok !~ /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$/)
        fail("bad literal '" tok "'")
}

# The text of a JSON string token (quotes included).
function unescape(raw,    out, i, len, c, e, code) {
    out = ""
    len = length(raw) - 1
    for (i = 2; i <= len; i++) {
        c = substr(raw, i, 1)
        if (c != "\\") { out = out c; continue }
        e = substr(raw, ++i, 1)
        if (e == "n") out = out "\n"
        else if (e == "t") out = out "\t"
        else if (e == "r") out = out "\r"
        else if (e == "b") out = out "\b"
        else if (e == "f") out = out "\f"
        else if (e == "u") {
            code = hex(substr(raw, i + 1, 4))
            if (code >= 32 && code < 127) { out = out sprintf("%c", code); i += 4 }
            else out = out "\\u"
        }
        else out = out e
    }
    return out
}

function hex(s,    i, v, d) {
    v = 0
    for (i = 1; i <= length(s); i++) {
        d = index("0123456789abcdef", tolower(substr(s, i, 1)))
        if (d == 0) return -1
        v = v * 16 + d - 1
    }
    return v
}
