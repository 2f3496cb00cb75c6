#!/bin/bash
# kill -9 the demo pipeline at 8 points, resume, compare every file (logs excepted) with an uninterrupted run
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export SOURCE_DATE_EPOCH=1780000000 PROSPECT_SHARED_DATA=${PROSPECT_SHARED_DATA:-$ROOT/../shared/data} PROSPECT_CACHE=/tmp/k9/cache PYTHONPATH=$ROOT
P=$ROOT/.venv/bin/prospect
rm -rf /tmp/k9 && mkdir -p /tmp/k9
sums() { (cd "$1" && find . -type f ! -path './logs/*' | sort | xargs sha256sum); }
$P run $ROOT/pipelines/demo.yaml --out /tmp/k9/run --no-progress 2> /tmp/k9/ref.err >/dev/null
t_ref=$(grep -c "done in" /tmp/k9/ref.err)
sums /tmp/k9/run > /tmp/k9/ref.sha256; mv /tmp/k9/run /tmp/k9/ref
echo "reference: $(wc -l < /tmp/k9/ref.sha256) files"
for t in 3 9 16 24 32 40 48 56; do
  setsid $P run $ROOT/pipelines/demo.yaml --out /tmp/k9/run --no-progress 2> /tmp/k9/kill_$t.err >/dev/null &
  pid=$!
  sleep $t
  kill -9 -- -$pid 2>/dev/null; wait $pid 2>/dev/null
  where=$(grep -o "\[[0-9]/5\] [a-z]* \(\.\.\.\|done.*\)" /tmp/k9/kill_$t.err | tail -1)
  $P run $ROOT/pipelines/demo.yaml --out /tmp/k9/run --no-progress --resume 2> /tmp/k9/resume_$t.err >/dev/null
  rc=$?
  sums /tmp/k9/run > /tmp/k9/run_$t.sha256
  if diff -q /tmp/k9/ref.sha256 /tmp/k9/run_$t.sha256 >/dev/null; then same=identical; else same="DIFFERENT: $(diff /tmp/k9/ref.sha256 /tmp/k9/run_$t.sha256 | grep -c '^>') files"; fi
  echo "kill -9 after ${t}s (last: ${where:-before the first stage}); resume rc=$rc; $same"
  rm -rf /tmp/k9/run
done
