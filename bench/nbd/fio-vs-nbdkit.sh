#!/usr/bin/env bash
# fio's nbd engine against this repository's NBD server (bench/Storage.NbdHost serving a FileBlockDevice) and against
# `nbdkit file`, both serving a file of the same size on /dev/shm, in one run: 4 KiB random read and write at QD 32,
# 1 MiB sequential read and write at QD 8, over TCP (127.0.0.1) and over a Unix socket. Each workload runs against
# both servers back to back, so a noisy neighbour hurts both alike. Prints IOPS, MB/s, the server's CPU time per
# operation (utime + stime from /proc/PID/stat) and fio's own; then the ratio ours / nbdkit. Our server gets a short
# warm-up first (JIT tiering). With REPEAT=n each workload runs n times against both servers, alternating, and the
# table shows medians: on a shared 2-core machine single runs vary by ±20 %.
#
#   bench/nbd/fio-vs-nbdkit.sh                 # 10 s per run, 1 GiB export
#   REPEAT=3 RUNTIME=6 bench/nbd/fio-vs-nbdkit.sh
#   RUNTIME=3 SIZE=256M bench/nbd/fio-vs-nbdkit.sh
#   WORKLOADS="randread-4k" TRANSPORTS=unix bench/nbd/fio-vs-nbdkit.sh
#
# Needs: dotnet, fio (with the nbd engine), nbdkit, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNTIME=${RUNTIME:-10}
RAMP=${RAMP:-1}
SIZE=${SIZE:-1G}
WORKLOADS=${WORKLOADS:-"randread-4k randwrite-4k read-1m write-1m"}
TRANSPORTS=${TRANSPORTS:-"tcp unix"}
SERVERS=${SERVERS:-"ours nbdkit"}
REPEAT=${REPEAT:-1}
DIR=$(mktemp -d /dev/shm/nbd-bench.XXXXXX)
OURS_PORT=${OURS_PORT:-10819} KIT_PORT=${KIT_PORT:-10820}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

for tool in fio nbdkit python3 dotnet; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

dotnet build -c Release -nologo -v q bench/Storage.NbdHost >/dev/null
host=bench/Storage.NbdHost/bin/Release/net10.0/Storage.NbdHost

# Allocated (not sparse) files, so that reads copy real pages on both servers.
fallocate -l "$SIZE" "$DIR/ours.img"
fallocate -l "$SIZE" "$DIR/kit.img"

"$host" --file "$DIR/ours.img" --tcp "127.0.0.1:$OURS_PORT" --unix "$DIR/ours.sock" > "$DIR/ours.log" 2>&1 &
pids+=($!); ours_pid=$!
nbdkit -f -i 127.0.0.1 -p "$KIT_PORT" file "$DIR/kit.img" &
pids+=($!); kit_tcp_pid=$!
nbdkit -f -U "$DIR/kit.sock" file "$DIR/kit.img" &
pids+=($!); kit_unix_pid=$!
for _ in $(seq 100); do
  grep -q ready "$DIR/ours.log" 2>/dev/null && [[ -S $DIR/kit.sock ]] && break
  sleep 0.1
done
grep -q ready "$DIR/ours.log" || { cat "$DIR/ours.log" >&2; exit 1; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

uri() { # server transport
  case "$1/$2" in
    ours/tcp) echo "nbd://127.0.0.1:$OURS_PORT/disk" ;;
    ours/unix) echo "nbd+unix:///disk?socket=$DIR/ours.sock" ;;
    nbdkit/tcp) echo "nbd://127.0.0.1:$KIT_PORT/" ;;
    nbdkit/unix) echo "nbd+unix:///?socket=$DIR/kit.sock" ;;
  esac
}
server_pid() {
  case "$1/$2" in
    ours/*) echo "$ours_pid" ;;
    nbdkit/tcp) echo "$kit_tcp_pid" ;;
    nbdkit/unix) echo "$kit_unix_pid" ;;
  esac
}

# Warm up: the server's JIT compiles its hot paths during the first seconds of traffic.
for transport in $TRANSPORTS; do
  fio --name=warmup --ioengine=nbd --uri="$(uri ours "$transport")" --rw=randrw --bs=4k --iodepth=32 \
    --size="$SIZE" --time_based --runtime=2 > /dev/null
done

results="$DIR/results.tsv"
: > "$results"
echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(dotnet --version) SDK; $(nbdkit --version); $(fio --version); runtime ${RUNTIME}s, export $SIZE"
for workload in $WORKLOADS; do
  case $workload in
    randread-4k) args=(--rw=randread --bs=4k --iodepth=32) ;;
    randwrite-4k) args=(--rw=randwrite --bs=4k --iodepth=32) ;;
    read-1m) args=(--rw=read --bs=1m --iodepth=8) ;;
    write-1m) args=(--rw=write --bs=1m --iodepth=8) ;;
    *) echo "unknown workload $workload" >&2; exit 1 ;;
  esac
  for transport in $TRANSPORTS; do
    for _ in $(seq "$REPEAT"); do
      for server in $SERVERS; do
        pid=$(server_pid "$server" "$transport")
        before=$(cpu_ticks "$pid")
        fio --name="$workload" --ioengine=nbd --uri="$(uri "$server" "$transport")" "${args[@]}" \
          --size="$SIZE" --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --output-format=json > "$DIR/fio.json"
        after=$(cpu_ticks "$pid")
        python3 - "$DIR/fio.json" "$workload" "$transport" "$server" "$(( after - before ))" "$hz" "$RUNTIME" "$RAMP" >> "$results" <<'PY'
import json, sys
path, workload, transport, server, ticks, hz, runtime, ramp = sys.argv[1:]
text = open(path).read()
job = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes before the JSON
side = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
# Server CPU was sampled over ramp + runtime; scale it to the measured window's operations.
ios = side["iops"] * (float(runtime) + float(ramp))
server_us = int(ticks) / int(hz) / ios * 1e6 if ios else 0
fio_us = (job["usr_cpu"] + job["sys_cpu"]) / 100 * float(runtime) / (side["iops"] * float(runtime)) * 1e6 if side["iops"] else 0
print(f"{workload}\t{transport}\t{server}\t{side['iops']:.0f}\t{side['bw_bytes'] / 1e6:.0f}\t{server_us:.1f}\t{fio_us:.1f}")
PY
        tail -n 1 "$results" | awk -F'\t' '{ printf "  %-13s %-5s %-7s %9s IOPS %7s MB/s  server %6s us/op  fio %6s us/op\n", $1, $2, $3, $4, $5, $6, $7 }'
      done
    done
  done
done

echo
python3 - "$results" "$REPEAT" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
runs = {}
for w, t, s, *r in rows:
    runs.setdefault((w, t, s), []).append([float(x) for x in r])
# Medians over the repetitions, column by column (IOPS, MB/s, server CPU/op, fio CPU/op).
by = {k: [f"{statistics.median(c):.0f}" if i < 2 else f"{statistics.median(c):.1f}" for i, c in enumerate(zip(*v))] for k, v in runs.items()}
if int(sys.argv[2]) > 1:
    print(f"medians of {sys.argv[2]} runs each")
print(f"| workload | transport | ours IOPS | ours MB/s | ours CPU us/op | nbdkit IOPS | nbdkit MB/s | nbdkit CPU us/op | ours / nbdkit |")
print(f"|---|---|---:|---:|---:|---:|---:|---:|---:|")
seen = []
for w, t, s, *_ in rows:
    if (w, t) in seen:
        continue
    seen.append((w, t))
    o, k = by.get((w, t, "ours")), by.get((w, t, "nbdkit"))
    cell = lambda r, i: r[i] if r else "-"
    ratio = f"{float(o[0]) / float(k[0]):.2f}x" if o and k and float(k[0]) else "-"
    print(f"| {w} | {t} | {cell(o, 0)} | {cell(o, 1)} | {cell(o, 2)} | {cell(k, 0)} | {cell(k, 1)} | {cell(k, 2)} | {ratio} |")
PY
