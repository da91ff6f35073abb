#!/usr/bin/env bash
# Measures what mutual TLS 1.3 costs a migration: the same migration with
# and without `--tls`, alternating, REPEAT times each, over loopback and over
# an emulated link, and prints a markdown table: round 0's rate (every page
# once, the stream's throughput), CPU seconds of the source's and the
# destination's migration threads per GiB of frame bytes, total time.
#
#   scripts/tls-cost.sh                                   # 512 MiB, loopback and 1Gbit/s,1ms
#   MEM=1GiB LINKS="loopback" REPEAT=3 scripts/tls-cost.sh
#
# Needs /dev/kvm, openssl, and root for the link. Uses BIN if given (the
# dev profile compiles the validator, the pipeline, rustls and ring at
# opt-level 3), else builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
MEM="${MEM:-512MiB}"
LINKS="${LINKS:-loopback 1Gbit/s,1ms}"
REPEAT="${REPEAT:-2}"
PIPELINE="${PIPELINE:-none}"
OUT="${OUT:-results/tls-cost}"
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p memfabric-validator
    BIN="${CARGO_TARGET_DIR:-target}/release/memfabric-validator"
fi
mkdir -p "$OUT"
[ -e "$OUT/certs/ca.pem" ] || scripts/tls-keygen.sh "$OUT/certs" >/dev/null
echo "| link | channel | run | outcome | round 0 MB/s | source CPU s/GiB | dest CPU s/GiB | total s | bytes on wire |"
echo "|---|---|---|---|---|---|---|---|---|"
for link in $LINKS; do
  LINKARG=()
  [ "$link" != loopback ] && LINKARG=(--link "$link")
  for i in $(seq 1 "$REPEAT"); do
    for channel in tcp tls; do
      TLSARG=()
      [ "$channel" = tls ] && TLSARG=(--tls "$OUT/certs")
      dir="$OUT/${link//\//_}-$channel-$i"
      "$BIN" migrate --mem "$MEM" --dirty-rate 1000 --pipeline "$PIPELINE" --no-integrity-check \
          "${LINKARG[@]}" "${TLSARG[@]}" --out "$dir" >/dev/null 2>&1 || true
      python3 - "$dir" "$link" "$channel" "$i" <<'PY'
import json, sys
d, link, channel, i = sys.argv[1:5]
m = json.load(open(f"{d}/manifest.json")); s = json.load(open(f"{d}/source.json"))
dest = json.load(open(f"{d}/destination.json")) or {}
r0 = s["rounds"][0]
rate = r0["bytes_on_wire"] / ((r0["end_ns"] - r0["start_ns"]) / 1e9) / 1e6
gib = s["bytes_on_wire"] / 2**30
print(f"| {link} | {channel} | {i} | {m['outcome']} | {rate:.0f} | {s['cpu_s_source'] / gib:.2f} | "
      f"{dest.get('cpu_s_destination', 0) / gib:.2f} | {(s['end_ns'] - s['start_ns']) / 1e9:.2f} | {s['bytes_on_wire']:,} |")
PY
    done
  done
done
