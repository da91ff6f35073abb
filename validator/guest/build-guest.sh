#!/usr/bin/env bash
# Builds the workload guest by hand (validator/build.rs runs the same steps on
# every cargo build): OUT=dir ./build-guest.sh  → $OUT/guest.bin
set -euo pipefail
cd "$(dirname "$0")"
OUT="${OUT:-/tmp/memfabric-guest}"
mkdir -p "$OUT"
CC="${CC:-gcc}"
"$CC" -m64 -O2 -ffreestanding -fno-builtin -nostdlib -nostartfiles -static -fno-pic -fno-pie -no-pie \
    -mno-red-zone -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
    -fno-tree-loop-distribute-patterns -Wall -Wextra -Werror \
    -T guest.ld -Wl,--build-id=none -Wl,--no-warn-rwx-segments -o "$OUT/guest.elf" entry.S workload.c
objcopy -O binary "$OUT/guest.elf" "$OUT/guest.bin"
echo "built $OUT/guest.bin ($(stat -c %s "$OUT/guest.bin") bytes)" >&2
