#!/usr/bin/env bash
# End-to-end over NBD with fio's nbd engine: a RAID-6 array (4+2, then 8+2; members in a tmpfs folder) served
# whole by storage serve, then formatted as a pool with one thin volume served by storage serve; and a qcow2
# image on one file in the same folder served by qemu-nbd (the peer: what qcow2 snapshot users run today).
# Usage: bench/fio/pool-vs-array.sh [DIR] [REPEATS]   (DIR default /dev/shm/fio-bench; prints a table of medians)
set -euo pipefail
dir=${1:-/dev/shm/fio-bench}
repeats=${2:-3}
here=$(cd "$(dirname "$0")/../.." && pwd)
storage=$here/tools/Storage.Cli/bin/Release/net10.0/storage
[[ -x $storage ]] || dotnet build "$here/tools/Storage.Cli" -c Release -nologo >/dev/null
export STORAGE_RUN_DIR=$dir/run
rm -rf "$dir"; mkdir -p "$dir"
cd "$dir"
size=1G   # the region fio works on

# job NAME RW BS DEPTH URI: one fio run, prints IOPS and MB/s
job() {
  fio --name="$1" --ioengine=nbd --uri="$5" --rw="$2" --bs="$3" --iodepth="$4" --size=$size \
      --time_based --runtime=8 --ramp_time=2 --group_reporting --output-format=json 2>/dev/null | sed -n "/^{/,\$p" \
  | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; op=j["write"] if j["write"]["io_bytes"]>0 else j["read"]; print("%.0f %.0f" % (op["iops"], op["bw_bytes"] / 1e6))'
}

# suite LABEL URI: fills the region first (so reads read data), then the four shapes, REPEATS times each
suite() {
  local label=$1 uri=$2
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=$size >/dev/null 2>&1
  for shape in "randwrite 4k 32" "randwrite 4k 1" "write 1M 8" "randread 4k 32" "read 1M 8"; do
    set -- $shape
    local results=()
    for ((r = 0; r < repeats; r++)); do results+=("$(job "$1" "$1" "$2" "$3" "$uri")"); done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (repeats + 1) / 2 ))p" | { read -r iops mbps; printf '%-10s %-10s %-4s QD%-3s %9s IOPS %6s MB/s\n' "$label" "$1" "$2" "$3" "$iops" "$mbps"; }
  done
}

for members in 6 10; do
  label="$((members - 2))+2"
  disks=$(for ((d = 0; d < members; d++)); do printf "%s/d%d.img," "$dir" "$d"; done); disks=${disks%,}
  "$storage" array create --level 6 --disks "$disks" --size $((2560 / (members - 2)))M --name a6 --force >/dev/null
  "$storage" serve --disks "$disks" >serve-array.log 2>&1 &
  until [[ -S $STORAGE_RUN_DIR/a6.nbd ]]; do sleep 0.2; done
  suite "array-$label" "nbd+unix:///a6?socket=$STORAGE_RUN_DIR/a6.nbd"
  "$storage" array stop --disks "$disks" >/dev/null; wait

  "$storage" pool create --disks "$disks" --name tank --force >/dev/null
  "$storage" volume create vol --size 100G --disks "$disks" >/dev/null
  "$storage" serve --disks "$disks" >serve-pool.log 2>&1 &
  until [[ -S $STORAGE_RUN_DIR/tank.nbd ]]; do sleep 0.2; done
  suite "thin-$label" "nbd+unix:///vol?socket=$STORAGE_RUN_DIR/tank.nbd"
  "$storage" pool stop --disks "$disks" >/dev/null; wait
  rm -f "$dir"/d*.img "$STORAGE_RUN_DIR"/*.nbd
done

qemu-img create -q -f qcow2 "$dir/peer.qcow2" 100G
qemu-nbd --persistent --socket="$dir/qemu.sock" --format=qcow2 --discard=unmap --shared=4 "$dir/peer.qcow2" &
until [[ -S $dir/qemu.sock ]]; do sleep 0.2; done
suite qcow2 "nbd+unix:///?socket=$dir/qemu.sock"
kill %1 2>/dev/null || true; wait
rm -rf "$dir"
