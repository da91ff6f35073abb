#!/usr/bin/env bash
# Measures N same-image guests migrated one by one (dedup-vm), as a gang
# (dedup-gang) and as a gang to a destination site where one more guest of
# the image already runs (dedup-site, --warm-guests 1), and prints bytes on
# wire and total time per guest (docs/validator.md, "Sites of several
# guests"). Needs /dev/kvm; with LINK (e.g. 100Mbit/s,25ms) it needs root.
#   BIN=target/release/memfabric-validator LINK=100Mbit/s,25ms scripts/gang-measure.sh
set -euo pipefail
BIN=${BIN:-target/release/memfabric-validator}
OUT=${OUT:-results/gang-measure}
MEM=${MEM:-512MiB}
N=${N:-4}
LINK=${LINK:-}
SITE_INDEX=${SITE_INDEX:-summary}
common=(--mem "$MEM" --workload web --dirty-rate 1000 --warmup 1s --watch 1s --io-timeout 30s)
if [ -n "$LINK" ]; then common+=(--link "$LINK"); fi
for i in $(seq 1 "$N"); do
    "$BIN" migrate "${common[@]}" --seed "$i" --pipeline zero+dedup-vm+lz4 --out "$OUT/one-$i" > /dev/null
done
"$BIN" migrate "${common[@]}" --seed 1 --guests "$N" --pipeline zero+dedup-gang+lz4 --out "$OUT/gang" > /dev/null
"$BIN" migrate "${common[@]}" --seed 1 --guests "$N" --warm-guests 1 --site-index "$SITE_INDEX" \
    --pipeline zero+dedup-site+lz4 --out "$OUT/warm" > /dev/null
python3 - "$OUT" "$N" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
def one(i):
    s = json.load(open(f"{out}/one-{i}/source.json"))
    m = json.load(open(f"{out}/one-{i}/manifest.json"))
    return s["bytes_on_wire"], (s["end_ns"] - s["start_ns"]) / 1e9, m["outcome"]
def gang(name):
    m = json.load(open(f"{out}/{name}/manifest.json"))
    return [(g["bytes_on_wire"], g["total_time_s"], g["outcome"]) for g in m["guests"]], m["gang"]["makespan_s"]
rows = {"one by one (dedup-vm)": ([one(i) for i in range(1, n + 1)], None)}
rows["gang (dedup-gang)"] = gang("gang")
rows["gang, warm site (dedup-site)"] = gang("warm")
print("| case | guest | bytes on wire | total time s | outcome |")
print("|---|---|---|---|---|")
for case, (gs, makespan) in rows.items():
    for i, (b, t, o) in enumerate(gs):
        print(f"| {case} | {i} | {b:,} | {t:.2f} | {o} |")
    total_t = sum(t for _, t, _ in gs) if makespan is None else makespan
    print(f"| {case} | all | {sum(b for b, _, _ in gs):,} | {total_t:.2f} ({'sum' if makespan is None else 'makespan'}) | |")
PY
