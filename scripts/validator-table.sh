#!/usr/bin/env bash
# Runs the validator's measurement matrix and prints a markdown table:
# a guest at two dirty rates, migrated with several pipelines, over loopback
# or over an emulated WAN link.
#
#   scripts/validator-table.sh                         # 1 GiB, loopback
#   LINK=100Mbit/s,25ms scripts/validator-table.sh     # over the WAN emulator
#   MEM=256MiB RATES="2000 20000" PIPELINES="none zero" scripts/validator-table.sh
#
# Needs /dev/kvm (and root for LINK). Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
MEM="${MEM:-1GiB}"
RATES="${RATES:-5000 25000}"
PIPELINES="${PIPELINES:-none zero zero+xbzrle+lz4 zero+dedup-vm+xbzrle+zstd}"
OUT="${OUT:-results/validator-table}"
cargo build --release -q -p memfabric-validator
BIN="${CARGO_TARGET_DIR:-target}/release/memfabric-validator"
LINKARG=()
if [ -n "${LINK:-}" ]; then LINKARG=(--link "$LINK"); fi
echo "| memory | dirty rate (pages/s) | link | pipeline | outcome | total s | downtime ms | bytes on wire | rounds | source CPU s | dest CPU s | integrity |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  for p in $PIPELINES; do
    dir="$OUT/${rate}-${p//+/_}"
    "$BIN" migrate --mem "$MEM" --dirty-rate "$rate" --pipeline "$p" "${LINKARG[@]}" --out "$dir" >/dev/null 2>&1 || true
    python3 - "$dir" "$MEM" "$rate" <<'PY'
import json, sys
d, mem, rate = sys.argv[1:4]
m = json.load(open(f"{d}/manifest.json")); s = json.load(open(f"{d}/source.json"))
dest = json.load(open(f"{d}/destination.json")) or {}
total = (s["end_ns"] - s["start_ns"]) / 1e9
down = (s["resume_ns"] - s["pause_ns"]) / 1e6 if s.get("resume_ns") and s.get("pause_ns") else None
integ = {True: "held", False: "FAILED", None: "n/a"}[m["integrity_held"]]
print(f"| {mem} | {rate} | {m['parameters']['link']} | {m['parameters']['strategy']} | {m['outcome']} | {total:.2f} | "
      f"{'-' if down is None else f'{down:.1f}'} | {s['bytes_on_wire']:,} | {len(s['rounds'])} | {s['cpu_s_source']:.2f} | "
      f"{dest.get('cpu_s_destination', 0):.2f} | {integ} |")
PY
  done
done
