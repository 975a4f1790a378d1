#!/usr/bin/env bash
# fio over NBD (fio's nbd engine) on volumes of the storage daemon: three pools, each on one file in a tmpfs folder;
# a volume on one pool, one striped over all three (64 MiB segments, round-robin), and a mirrored one per read
# policy. Then the write pause of a consistency-group snapshot under a 4 KiB random-write load: the daemon's hold
# time of every snapshot, and fio's completion-latency tail with and without snapshots being taken.
# Usage: bench/fio/daemon-volumes.sh [DIR] [REPEATS]   (DIR default /dev/shm/fio-daemon; prints medians of REPEATS)
set -euo pipefail
dir=${1:-/dev/shm/fio-daemon}
repeats=${2:-1}
here=$(cd "$(dirname "$0")/../.." && pwd)
storage=$here/tools/Storage.Cli/bin/Release/net10.0/storage
[[ -x $storage ]] || dotnet build "$here/tools/Storage.Cli" -c Release -nologo >/dev/null
export STORAGE_RUN_DIR=$dir/run
rm -rf "$dir"; mkdir -p "$dir"
cd "$dir"
size=256M
sock=$dir/node/nbd.sock

job() {   # NAME RW BS DEPTH URI [RUNTIME]: prints IOPS, MB/s, clat p99 and max in ms
  fio --name="$1" --ioengine=nbd --uri="$5" --rw="$2" --bs="$3" --iodepth="$4" --size=$size \
      --time_based --runtime="${6:-8}" --ramp_time=2 --group_reporting --output-format=json 2>/dev/null | sed -n "/^{/,\$p" \
  | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; op=j["write"] if j["write"]["io_bytes"]>0 else j["read"]; c=op["clat_ns"]; print("%.0f %.0f %.2f %.2f" % (op["iops"], op["bw_bytes"]/1e6, c["percentile"]["99.000000"]/1e6, c["max"]/1e6))'
}

suite() {   # LABEL VOLUME
  local label=$1 uri="nbd+unix:///$2?socket=$sock"
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=$size >/dev/null 2>&1
  for shape in "randwrite 4k 32" "randread 4k 32" "write 1M 8" "read 1M 8"; do
    set -- $shape
    local results=()
    for ((r = 0; r < repeats; r++)); do results+=("$(job "$1" "$1" "$2" "$3" "$uri")"); done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (repeats + 1) / 2 ))p" \
      | { read -r iops mbps _ _; printf '%-14s %-10s %-4s QD%-3s %9s IOPS %6s MB/s\n' "$label" "$1" "$2" "$3" "$iops" "$mbps"; }
  done
}

for p in p1 p2 p3; do "$storage" pool create --device "$dir/$p.img" --size 2400M --name $p >/dev/null; done
"$storage" daemon --dir "$dir/node" >daemon.log 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -S $dir/node/control.sock ]] && "$storage" cluster status >/dev/null 2>&1 && break; sleep 0.2; done
for p in p1 p2 p3; do "$storage" pool attach --device "$dir/$p.img" >/dev/null; done
"$storage" volume create one --size $size --pools p1 >/dev/null
"$storage" volume create striped --size $size --segment-size 64M --group g >/dev/null
"$storage" volume create m-lqd --size $size --segment-size 64M --mirror --read-policy least-queue-depth >/dev/null
"$storage" volume create m-rr --size $size --segment-size 64M --mirror --read-policy round-robin >/dev/null
"$storage" volume create m-random --size $size --segment-size 64M --mirror --read-policy random >/dev/null

echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); pools on $(df --output=fstype "$dir" | tail -1); median of $repeats"
if [[ -z ${PAUSE_ONLY:-} ]]; then   # PAUSE_ONLY=1: only the snapshot pause below
suite "one pool" one
suite "striped x3" striped
for v in m-lqd m-rr m-random; do suite "mirror $v" $v; done
fi
"$storage" volume list --json | python3 -c '
import json,sys
for v in json.load(sys.stdin):
    r = v.get("readsByPool") or {}
    total = sum(r.values()) or 1
    if v["copies"] > 1: print("read split %-9s %s" % (v["name"], "  ".join("%s %.1f%%" % (p, 100.0 * n / total) for p, n in r.items())))'

# The write pause of a group snapshot: 4 KiB random writes QD32 on the striped volume (group g), with and without
# a snapshot of the group every 0.5 s. On 64 MiB of it: each snapshot keeps what the writes since the last one
# replaced, and 30 snapshots of the whole volume under this load outgrow the pools (the writes then fail ENOSPC).
size=64M
uri="nbd+unix:///striped?socket=$sock"
read -r iops _ p99 max < <(job base randwrite 4k 32 "$uri" 20)
printf 'no snapshots       randwrite 4k QD32 %9s IOPS  clat p99 %6s ms  max %7s ms\n' "$iops" "$p99" "$max"
job snap randwrite 4k 32 "$uri" 20 >fio-snap.txt &
fio_pid=$!
sleep 3
for i in $(seq 30); do "$storage" snapshot create "s$i" --group g >>snapshots.log 2>&1 || true; sleep 0.5; done
wait $fio_pid || echo "fio reported errors under snapshots (see $dir/daemon.log)"
read -r iops _ p99 max <fio-snap.txt
printf 'snapshot / 0.5 s   randwrite 4k QD32 %9s IOPS  clat p99 %6s ms  max %7s ms\n' "$iops" "$p99" "$max"
grep -o 'writes held [0-9.]* ms' snapshots.log | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "group snapshot write hold over %d snapshots: median %.2f ms, p90 %.2f ms, max %.2f ms\n", NR, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR]}'
"$storage" daemon stop >/dev/null
wait $daemon || true
trap - EXIT
