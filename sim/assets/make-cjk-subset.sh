#!/usr/bin/env bash
# Rebuilds sim/assets/WenQuanYiMicroHei-subset.ttf, the font plots use for
# figures with names in Chinese or Japanese (DejaVu Sans has no CJK glyphs).
#
# Source: Debian's fonts-wqy-microhei (WenQuanYi Micro Hei 0.2.0-beta,
# Apache-2.0 or GPL-3+ with font exception; used here under Apache-2.0), which
# draws Latin text too (Droid Sans Fallback alone has no Latin letters), cut with fontTools' pyftsubset to what names need: Basic Latin, Latin-1,
# punctuation, arrows, CJK punctuation, hiragana, katakana, full-width forms,
# and the 5,072 most common ideographs (GB 2312 level 1 plus JIS X 0208
# level 1). 5.2 MB -> about 1 MB. Ideographs outside that set and Hangul are not
# covered and draw as empty boxes (the tables keep every name exactly).
#
#   apt-get install fonts-wqy-microhei && pip install fonttools==4.55.3
#   bash sim/assets/make-cjk-subset.sh
set -euo pipefail
cd "$(dirname "$0")"
src=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
chars=$(mktemp)
trap 'rm -f "$chars"' EXIT
python3 - "$chars" <<'PY'
import sys
chars = set()
for b1 in range(0xB0, 0xD8):          # GB 2312 level 1
    for b2 in range(0xA1, 0xFF):
        try:
            chars.add(bytes([b1, b2]).decode("gb2312"))
        except UnicodeDecodeError:
            pass
for b1 in range(0x88, 0x99):          # JIS X 0208 level 1 (Shift-JIS rows)
    for b2 in range(0x40, 0xFD):
        try:
            c = bytes([b1, b2]).decode("shift_jis")
        except UnicodeDecodeError:
            continue
        if len(c) == 1 and ord(c) >= 0x4E00:
            chars.add(c)
open(sys.argv[1], "w", encoding="utf-8").write("".join(sorted(chars)))
PY
pyftsubset "$src" --font-number=0 --text-file="$chars" \
    --unicodes="U+0020-007E,U+00A0-00FF,U+2010-2027,U+2190-2193,U+2212,U+3000-303F,U+3040-30FF,U+FF00-FFEF" \
    --no-hinting --desubroutinize --output-file=WenQuanYiMicroHei-subset.ttf
