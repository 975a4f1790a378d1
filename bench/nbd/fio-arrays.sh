#!/usr/bin/env bash
# fio's nbd engine against `storage serve` exporting a RAID-5 4+1 and a RAID-6 4+2 of file disks in /dev/shm
# (journal on), over the Unix socket: 4 KiB random read/write at QD 32, 1 MiB sequential read/write at QD 8.
#   bash bench/nbd/fio-arrays.sh [seconds per job, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
dotnet build -c Release tools/Storage.Cli -nologo -v q >/dev/null
storage=$PWD/tools/Storage.Cli/bin/Release/net10.0/storage
work=$(mktemp -d /dev/shm/storage-fio-arrays.XXXXXX)
export STORAGE_RUN_DIR=$work/run
serve=""
cleanup() { [[ -n $serve ]] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

job() { # URI NAME RW BS DEPTH
  fio --name="$2" --ioengine=nbd --uri="$1" --rw="$3" --bs="$4" --iodepth="$5" --time_based --runtime="$seconds" \
      --size=512M --output-format=json 2>"$work/fio.err" |
    python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]; d=j["read"] if j["read"]["io_bytes"] else j["write"]; print("%10.0f IOPS %8.0f MB/s" % (d["iops"], d["bw_bytes"] / 1e6))'
}

echo "date: $(date -u +%F), cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for shape in "5 5" "6 6"; do
  read -r level members <<<"$shape"
  dir=$work/raid$level; mkdir -p "$dir"
  disks=$(seq -s, -f "$dir/d%g.img" 0 $((members - 1)))
  "$storage" array create --level "$level" --disks "$disks" --size 256M --name "raid$level" >/dev/null
  "$storage" serve --disks "$disks" >"$work/serve$level.log" 2>&1 &
  serve=$!
  for _ in $(seq 100); do [[ -S $STORAGE_RUN_DIR/raid$level.nbd ]] && break; sleep 0.1; done
  uri="nbd+unix:///raid$level?socket=$STORAGE_RUN_DIR/raid$level.nbd"
  echo "RAID-$level ($members members), journal on, fio nbd engine over the Unix socket:"
  printf '  %-28s %s\n' "4 KiB random read, QD 32" "$(job "$uri" rr randread 4k 32)"
  printf '  %-28s %s\n' "4 KiB random write, QD 32" "$(job "$uri" rw randwrite 4k 32)"
  printf '  %-28s %s\n' "1 MiB sequential read, QD 8" "$(job "$uri" sr read 1M 8)"
  printf '  %-28s %s\n' "1 MiB sequential write, QD 8" "$(job "$uri" sw write 1M 8)"
  [[ -s $work/fio.err ]] && cat "$work/fio.err" "$work/serve$level.log" >&2
  kill "$serve"; wait "$serve" 2>/dev/null || true; serve=""
done
