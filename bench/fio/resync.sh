#!/usr/bin/env bash
# Resync of a degraded mirror through the node daemon: two pools on files (in $RESYNC_DIR, default /var/tmp: a disk), a 2 GiB mirrored volume
# (256 MiB segments) filled with fio, the daemon restarted with the second pool's file away (--degrade-after 1: the
# volume is served from the first pool, the copies on the second recorded stale), then the pool is attached again and
# the daemon resynchronizes it in the background. Prints the daemon's "resync finished" line per round: idle, and
# under fio 4 KiB random writes at QD8 (the IOPS fio gets in a 3 s window inside the resync, and just before it).
# Usage: bench/fio/resync.sh [ROUNDS]   (tools/Storage.Cli built in Release)
set -euo pipefail
rounds=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
storage=$root/tools/Storage.Cli/bin/Release/net10.0/storage
[[ -x $storage ]] || { echo "no Release build at $storage: dotnet build tools/Storage.Cli -c Release" >&2; exit 2; }

wait_for() {   # FILE TEXT
  for _ in $(seq 600); do grep -q "$2" "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; exit 1
}

iops() {   # URI SECONDS → write IOPS of 4 KiB QD8 random writes
  local out; out=$(mktemp)
  fio --name=load --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k --iodepth=8 --size=2G --time_based --runtime="$2" \
    --output-format=json --output="$out" >/dev/null 2>&1
  python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"]))' "$out"
  rm -f "$out"
}

one() {   # load|idle
  local dir; dir=$(mktemp -d "${RESYNC_DIR:-/var/tmp}/resync.XXXX")
  (
    export STORAGE_RUN_DIR=$dir/run
    cd "$dir"
    local uri="nbd+unix:///m?socket=$dir/node/nbd.sock"
    for p in p1 p2; do "$storage" pool create --device "$dir/$p.img" --size 2400M --name $p >/dev/null; done
    "$storage" daemon --dir "$dir/node" >log1 2>&1 &
    wait_for log1 "ready:"
    "$storage" pool attach --device "$dir/p1.img" --daemon "$dir/node" >/dev/null
    "$storage" pool attach --device "$dir/p2.img" --daemon "$dir/node" >/dev/null
    "$storage" volume create m --size 2G --segment-size 256M --mirror --daemon "$dir/node" >/dev/null
    fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=2G --output=/dev/null
    "$storage" daemon stop --daemon "$dir/node" >/dev/null; wait
    mv p2.img p2.away
    "$storage" daemon --dir "$dir/node" --degrade-after 1 >log2 2>&1 &
    wait_for log2 "export m offered"
    mv p2.away p2.img
    if [[ $1 == load ]]; then
      local alone; alone=$(iops "$uri" 4)
      "$storage" pool attach --device "$dir/p2.img" --daemon "$dir/node" >/dev/null
      sleep 0.5
      local during; during=$(iops "$uri" 3)
      local inside=yes; grep -q "resync finished" log2 && inside="NO (the resync ended first)"
      wait_for log2 "resync finished"
      echo "under load: $(grep -o 'resync finished.*' log2); fio 4K QD8 randwrite $during IOPS in a 3 s window inside it ($inside) vs $alone before it"
    else
      "$storage" pool attach --device "$dir/p2.img" --daemon "$dir/node" >/dev/null
      wait_for log2 "resync finished"
      echo "idle: $(grep -o 'resync finished.*' log2)"
    fi
    "$storage" daemon stop --daemon "$dir/node" >/dev/null; wait
  )
  rm -rf "$dir"
}

for _ in $(seq "$rounds"); do one idle; one load; done
