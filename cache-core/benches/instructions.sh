#!/usr/bin/env bash
# Instructions per operation of the cache's write and read paths, against the client-go-style
# baseline, counted by callgrind (repeatable on a busy machine, unlike timings).
#
#   cache-core/benches/instructions.sh [N]     (N operations per case, default 20000)
#
# Builds the `write_profile` benchmark binary, runs each case under
# `valgrind --tool=callgrind --toggle-collect=<the case's function>`, and prints a markdown
# table: instructions per operation for the cache and the baseline, and their ratio. The read
# paths that return many objects (a list of all 100k, by_index on every node value) are counted
# per object returned, over 2 rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-20000}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench -p cache-core --bench write_profile --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*write_profile[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the write_profile benchmark" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # target mode function [count]
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "--toggle-collect=*$3" \
        "$bin" "$1" "$2" "${4:-$N}" >/dev/null 2>"$out/err"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/err"
}

echo "| operation (100k objects, 2 indexes, $N ops) | cache | baseline | ratio |"
echo "|---|---|---|---|"
for mode in same moved get; do
    if [ "$mode" = get ]; then fc=gets_cache; fb=gets_baseline; else fc=updates_cache; fb=updates_baseline; fi
    c=$(count cache "$mode" "$fc")
    b=$(count baseline "$mode" "$fb")
    case $mode in
        same) label="update, index values unchanged" ;;
        moved) label="update, node moves" ;;
        get) label="get_by_key" ;;
    esac
    awk -v l="$label" -v c="$c" -v b="$b" -v n="$N" \
        'BEGIN { printf "| %s | %d | %d | %.1f× |\n", l, c / n, b / n, c / b }'
done
for mode in list by_index; do
    c=$(count cache "$mode" "${mode/list/lists}_cache" 2)
    b=$(count baseline "$mode" "${mode/list/lists}_baseline" 2)
    case $mode in
        list) label="list, per object" ;;
        by_index) label="by_index(node), per object" ;;
    esac
    awk -v l="$label" -v c="$c" -v b="$b" \
        'BEGIN { printf "| %s | %d | %d | %.1f× |\n", l, c / 200000, b / 200000, c / b }'
done
