#!/usr/bin/env bash
# Two builds of the daemon side by side, interleaved (A, B, A, B, ...) so a slow phase of the machine hits both:
# three pools on tmpfs files, a 256 MiB volume on one pool and one striped over all three (64 MiB segments), filled
# once, then fio (nbd engine) 4 KiB QD32 random read and random write, 8 s after a 2 s ramp. Prints every run, then
# the median IOPS per build.
# Usage: bench/fio/compare-builds.sh ROOT_A ROOT_B [ROUNDS]   (each ROOT a checkout with tools/Storage.Cli built in Release;
#        e.g. git worktree add /tmp/before <commit> && dotnet build /tmp/before/tools/Storage.Cli -c Release)
set -euo pipefail
rounds=${3:-3}

one() {   # ROOT LABEL
  local storage=$1/tools/Storage.Cli/bin/Release/net10.0/storage dir=/dev/shm/compare-$2
  [[ -x $storage ]] || { echo "no Release build at $storage" >&2; exit 2; }
  rm -rf "$dir"; mkdir -p "$dir"
  (
    export STORAGE_RUN_DIR=$dir/run
    cd "$dir"
    for p in p1 p2 p3; do "$storage" pool create --device "$dir/$p.img" --size 2400M --name $p >/dev/null; done
    "$storage" daemon --dir "$dir/node" >daemon.log 2>&1 &
    trap "kill $! 2>/dev/null || true; wait" EXIT
    for _ in $(seq 100); do [[ -S $dir/node/control.sock ]] && "$storage" cluster status >/dev/null 2>&1 && break; sleep 0.2; done
    for p in p1 p2 p3; do "$storage" pool attach --device "$dir/$p.img" >/dev/null; done
    "$storage" volume create one --size 256M --pools p1 >/dev/null
    "$storage" volume create striped --size 256M --segment-size 64M >/dev/null
    for v in one striped; do
      uri="nbd+unix:///$v?socket=$dir/node/nbd.sock"
      fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=256M >/dev/null 2>&1
      for rw in randread randwrite; do
        fio --name=j --ioengine=nbd --uri="$uri" --rw=$rw --bs=4k --iodepth=32 --size=256M --time_based --runtime=8 \
            --ramp_time=2 --output-format=json 2>/dev/null | sed -n '/^{/,$p' \
          | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; op=j["write"] if j["write"]["io_bytes"]>0 else j["read"]; print("'"$2 $v $rw"' %.0f" % op["iops"])'
      done
    done
  )
  rm -rf "$dir"
}

runs=$(for ((r = 0; r < rounds; r++)); do one "$1" A; one "$2" B; done | tee /dev/stderr)
echo "# median of $rounds, A=$1 B=$2"
printf '%s\n' "$runs" | python3 -c '
import sys, statistics, collections
d = collections.defaultdict(list)
for line in sys.stdin:
    b, v, rw, iops = line.split(); d[(v, rw, b)].append(float(iops))
for v, rw in sorted({(v, rw) for v, rw, _ in d}):
    print("%-8s %-9s A %7.0f  B %7.0f IOPS" % (v, rw, statistics.median(d[(v, rw, "A")]), statistics.median(d[(v, rw, "B")])))'
