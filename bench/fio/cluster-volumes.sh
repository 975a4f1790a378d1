#!/usr/bin/env bash
# fio over NBD on volumes of a three-node cluster on one machine: three daemons (own directories, loopback ports),
# one pool each on a file in a tmpfs folder. Through node n1's NBD socket: a volume on n1's own pool, and one striped
# over the three pools (64 MiB segments; two thirds of its I/O goes to the other nodes' segment NBD ports).
# Usage: bench/fio/cluster-volumes.sh [DIR] [REPEATS]   (DIR default /dev/shm/fio-cluster; prints medians of REPEATS)
# KEY=1 runs the cluster with a cluster key (mutual TLS on every port between nodes); the labels say "TLS".
set -euo pipefail
dir=${1:-/dev/shm/fio-cluster}
repeats=${2:-1}
here=$(cd "$(dirname "$0")/../.." && pwd)
storage=$here/tools/Storage.Cli/bin/Release/net10.0/storage
[[ -x $storage ]] || dotnet build "$here/tools/Storage.Cli" -c Release -nologo >/dev/null
export STORAGE_RUN_DIR=$dir/run
rm -rf "$dir"; mkdir -p "$dir"
cd "$dir"
size=256M
cluster=n1=127.0.0.1:7300,n2=127.0.0.1:7310,n3=127.0.0.1:7320

job() {   # NAME RW BS DEPTH URI: prints IOPS and MB/s
  fio --name="$1" --ioengine=nbd --uri="$5" --rw="$2" --bs="$3" --iodepth="$4" --size=$size \
      --time_based --runtime=8 --ramp_time=2 --group_reporting --output-format=json 2>/dev/null | sed -n "/^{/,\$p" \
  | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; op=j["write"] if j["write"]["io_bytes"]>0 else j["read"]; print("%.0f %.0f" % (op["iops"], op["bw_bytes"]/1e6))'
}

suite() {   # LABEL VOLUME
  local label=$1 uri="nbd+unix:///$2?socket=$dir/n1/nbd.sock"
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=$size >/dev/null 2>&1
  for shape in "randwrite 4k 32" "randread 4k 32" "write 1M 8" "read 1M 8"; do
    set -- $shape
    local results=()
    for ((r = 0; r < repeats; r++)); do results+=("$(job "$1" "$1" "$2" "$3" "$uri")"); done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (repeats + 1) / 2 ))p" \
      | { read -r iops mbps; printf '%-25s %-10s %-4s QD%-3s %9s IOPS %6s MB/s\n' "$label" "$1" "$2" "$3" "$iops" "$mbps"; }
  done
}

keyed=(); tag=""
if [[ -n ${KEY:-} ]]; then
  "$storage" cluster key create "$dir/cluster.key" >/dev/null
  keyed=(--cluster-key "$dir/cluster.key"); tag=", TLS"
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for n in 1 2 3; do
  "$storage" pool create --device "$dir/p$n.img" --size 1200M --name p$n >/dev/null
  "$storage" daemon --dir "$dir/n$n" --node n$n --cluster $cluster "${keyed[@]}" >n$n.log 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 150); do "$storage" cluster status --daemon "$dir/n$n" >/dev/null 2>&1 && break; sleep 0.2; done
  "$storage" pool attach --device "$dir/p$n.img" --daemon "$dir/n$n" >/dev/null
done
"$storage" volume create local --size $size --pools p1 --daemon "$dir/n1" >/dev/null
"$storage" volume create striped --size $size --segment-size 64M --daemon "$dir/n1" >/dev/null
for _ in $(seq 100); do nbdinfo --list "nbd+unix:///?socket=$dir/n1/nbd.sock" 2>/dev/null | grep -q striped && break; sleep 0.2; done

echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); pools on $(df --output=fstype "$dir" | tail -1); median of $repeats"
suite "n1, own pool$tag" local
suite "n1, striped x3$tag" striped
for n in 1 2 3; do "$storage" daemon stop --daemon "$dir/n$n" >/dev/null; done
wait "${pids[@]}" || true
trap - EXIT
