#!/usr/bin/env bash
# Measures one migration over --streams 1, 2 and 4 (docs/validator.md,
# "multifd"): total time, round-0 throughput, bytes on wire, downtime,
# per-stream round-0 bytes, and the link's counters. Needs /dev/kvm; with
# LINK (default 1Gbit/s,25ms) it needs root. REPEAT runs each case that many
# times, alternating the cases.
#   BIN=target/release/memfabric-validator scripts/multifd-measure.sh
set -euo pipefail
BIN=${BIN:-target/release/memfabric-validator}
OUT=${OUT:-results/multifd-measure}
MEM=${MEM:-1GiB}
PIPELINE=${PIPELINE:-zero+lz4}
LINK=${LINK-1Gbit/s,25ms}
STREAMS=${STREAMS:-1 2 4}
REPEAT=${REPEAT:-1}
common=(--mem "$MEM" --workload web --dirty-rate 1000 --pipeline "$PIPELINE" --warmup 1s --watch 1s --io-timeout 30s)
if [ -n "$LINK" ]; then common+=(--link "$LINK"); fi
for r in $(seq 1 "$REPEAT"); do
    for n in $STREAMS; do
        "$BIN" migrate "${common[@]}" --streams "$n" --out "$OUT/streams-$n-run-$r" > /dev/null
    done
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print("| streams | run | outcome | total s | round 0 s | round 0 MB/s | bytes on wire | downtime ms | rounds | round-0 MB per stream | link drops A→B (queue, kernel) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def key(d):
    p = d.split("-")
    return (int(p[3]), int(p[1]))
for d in sorted((d for d in os.listdir(out) if d.startswith("streams-")), key=key):
    s = json.load(open(f"{out}/{d}/source.json"))
    m = json.load(open(f"{out}/{d}/manifest.json"))
    r0 = s["rounds"][0]
    t0 = (r0["end_ns"] - r0["start_ns"]) / 1e9
    per = s.get("multifd") or {"per_stream": [{"round_bytes": [r0["bytes_on_wire"]]}]}
    per0 = ", ".join(f"{p['round_bytes'][0] / 1e6:.1f}" for p in per["per_stream"])
    down = (s["resume_ns"] - s["pause_ns"]) / 1e6 if s.get("resume_ns") and s.get("pause_ns") else float("nan")
    ls = m.get("link_stats") or {}
    drops = (ls["a_to_b"]["packets_dropped_queue"], ls["a_to_b"]["kernel_drops"]) if ls else "-"
    precopy = sum(1 for r in s["rounds"] if r["phase"] == "precopy" and r["complete"])
    print(f"| {d.split('-')[1]} | {d.split('-')[3]} | {m['outcome']} | {(s['end_ns'] - s['start_ns']) / 1e9:.2f} | {t0:.2f} | "
          f"{r0['bytes_on_wire'] / t0 / 1e6:.1f} | {s['bytes_on_wire']:,} | {down:.1f} | {precopy} | {per0} | {drops} |")
PY
