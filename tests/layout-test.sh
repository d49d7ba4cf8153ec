#!/bin/sh
# The source layout (src/README.md): every folder of src/ includes only its
# own private headers and those of the folders below it, in the order
#   util < probes, model < residual, amp < report, sparse
# no source file sits directly in src/, and object names are unique (the
# static library keeps one member per name).
set -u
cd "$(dirname "$0")/.."

# folder: the folders whose private headers it may include (itself first)
allowed() {
    case $1 in
        util) echo "util" ;;
        probes) echo "probes util" ;;
        model) echo "model util" ;;
        residual) echo "residual model util" ;;
        amp) echo "amp model util" ;;
        report) echo "report residual model probes util" ;;
        sparse) echo "sparse residual model util" ;;
        *) echo "" ;;
    esac
}

fail=0
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

for f in src/*.c src/*.h; do
    [ -e "$f" ] && bad "$f: sources live in a module folder, not in src/"
done
for dir in src/*/; do
    mod=$(basename "$dir")
    ok=$(allowed "$mod")
    [ -n "$ok" ] || { bad "src/$mod: a folder unknown to src/README.md's module map"; continue; }
    for f in "$dir"*.c "$dir"*.h; do
        [ -e "$f" ] || continue
        grep -o '^#include "[^"]*"' "$f" | sed 's/^#include "//; s/"$//' | while read -r inc; do
            case $inc in
                sparseresid/*) continue ;;
                */*) ;;
                *) echo "FAIL $f: #include \"$inc\" names no folder"; continue ;;
            esac
            top=${inc%%/*}
            case " $ok " in
                *" $top "*) ;;
                *) echo "FAIL $f: includes $inc, a header of a folder above src/$mod" ;;
            esac
        done
    done
done > "${TMPDIR:-/tmp}/layout.$$"
if [ -s "${TMPDIR:-/tmp}/layout.$$" ]; then
    cat "${TMPDIR:-/tmp}/layout.$$"
    fail=$((fail + $(wc -l < "${TMPDIR:-/tmp}/layout.$$")))
fi
rm -f "${TMPDIR:-/tmp}/layout.$$"

dups=$(for f in src/*/*.c; do basename "$f"; done | sort | uniq -d)
[ -z "$dups" ] || bad "source names used twice: $dups"

if [ "$fail" -eq 0 ]; then
    echo "layout: $(ls -d src/*/ | wc -l) module folders, includes only downwards, unique object names"
    exit 0
fi
echo "layout: $fail problem(s)"
exit 1
