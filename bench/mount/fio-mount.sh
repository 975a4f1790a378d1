#!/usr/bin/env bash
# fio through the mount path: storage serve -> nbdfuse -> loop device (direct I/O), on a RAID-6 4+2 of file
# disks in /dev/shm. Prints IOPS and MB/s for 4 KiB random read/write at QD 32 and
# 1 MiB sequential read/write at QD 8. Needs root, fio, nbdfuse (libnbd-bin), fuse3.
#   sudo bash bench/mount/fio-mount.sh [seconds per job, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
dotnet build -c Release tools/Storage.Cli -nologo -v q >/dev/null
storage=$PWD/tools/Storage.Cli/bin/Release/net10.0/storage
work=$(mktemp -d /dev/shm/storage-fio.XXXXXX)
export STORAGE_RUN_DIR=$work/run
cleanup() {
  [[ -n ${loop:-} ]] && losetup -d "$loop" 2>/dev/null || true
  [[ -d $work/fuse ]] && fusermount3 -u "$work/fuse" 2>/dev/null || true
  [[ -n ${serve:-} ]] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

run_fio() { # NAME RW BS DEPTH
  fio --name="$1" --filename="$loop" --rw="$2" --bs="$3" --iodepth="$4" --ioengine=libaio --direct=1 \
      --time_based --runtime="$seconds" --size=256M --group_reporting --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; d=j["read"] if j["read"]["io_bytes"] else j["write"]; print("%10.0f IOPS %9.0f MB/s" % (d["iops"], d["bw_bytes"] / 1e6))'
}

echo "date: $(date -u +%F), cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
"$storage" array create --level 6 --disks "$work/d0.img,$work/d1.img,$work/d2.img,$work/d3.img,$work/d4.img,$work/d5.img" --size 160M --name fio >/dev/null
"$storage" serve --disks "$work/*.img" >"$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 100); do [[ -S $STORAGE_RUN_DIR/fio.nbd ]] && break; sleep 0.1; done
mkdir -p "$work/fuse"
nbdfuse "$work/fuse" --unix "$STORAGE_RUN_DIR/fio.nbd" &
for _ in $(seq 100); do [[ -e $work/fuse/nbd ]] && break; sleep 0.1; done
loop=$(losetup --find --show --direct-io=on "$work/fuse/nbd")
echo "RAID-6 4+2 over files in /dev/shm, journal on, via nbdfuse + $loop:"
printf '  %-28s %s\n' "4 KiB random read, QD 32" "$(run_fio randread randread 4k 32)"
printf '  %-28s %s\n' "4 KiB random write, QD 32" "$(run_fio randwrite randwrite 4k 32)"
printf '  %-28s %s\n' "1 MiB sequential read, QD 8" "$(run_fio seqread read 1M 8)"
printf '  %-28s %s\n' "1 MiB sequential write, QD 8" "$(run_fio seqwrite write 1M 8)"
