#!/bin/bash
# Encode-time check on an idle machine: loe encode (CLI picks its threads), wall seconds per image.
# usage: [DATA=KODAK_DIR] benchmarks/encode_time.sh PRESET OUTDIR IMAGE...  (run on an otherwise idle machine)
preset=$1; out=$2; shift 2
mkdir -p $out
for img in "$@"; do
  start=$(date +%s.%N)
  loe encode "${DATA:-../shared/data/kodak}/$img.png" -o $out/$img.loe --preset $preset --device cpu > $out/$img.log 2>&1
  end=$(date +%s.%N)
  echo "$img $(echo "$end - $start" | bc) s $(uptime | sed 's/.*load average: //') $(tail -1 $out/$img.log)" | tee -a $out/times.txt
done
