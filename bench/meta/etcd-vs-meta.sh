#!/usr/bin/env bash
# Replicated metadata against etcd, on one machine: three `storage meta serve` replicas (batching on, then
# --no-batching) and a three-member etcd cluster (Debian etcd-server 3.4), all on 127.0.0.1 with their logs
# on the same real-disk filesystem (/var/tmp, fsync on), one system at a time. Small puts (16 B keys, 100 B
# values) at 1, 64 and 256 in flight, linearizable reads at 64. Prints ops/s, p50/p99 and the CPU time
# per operation of the three servers (utime+stime from /proc/PID/stat) and of the client.
#   bash bench/meta/etcd-vs-meta.sh [seconds per point, default 15]
# Each replica set runs with batching on and off, at each --tick-ms in TICKS ("10 100"; 10 ms is the default).
# The election timeout is its own setting (--election-ms, default 1000 like etcd's), so the tick only sets
# timer precision. storage meta bench runs are killed if they hang.
# Environment: PUT_INFLIGHT ("1 64 256"), READ_INFLIGHT ("64"), TICKS, PORT_BASE (23700; uses +1..+3, +11..+13,
# +111..+113, +211..+213, below the ephemeral range), WORK_ROOT (/var/tmp), KEEP=1 keeps logs and data.
# etcd is driven through its v3 JSON gateway by bench/Storage.EtcdLoad (etcd's Go benchmark tool is not
# packaged), which adds HTTP/JSON cost that etcd's gRPC clients do not pay; see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
put_inflight=${PUT_INFLIGHT:-1 64 256}
read_inflight=${READ_INFLIGHT:-64}
base=${PORT_BASE:-23700}
ticks=${TICKS:-10 100}

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  [[ $(id -u) == 0 ]] || { echo "needs etcd and etcdctl: apt-get install etcd-server etcd-client" >&2; exit 1; }
  apt-get update -q >/dev/null && apt-get install -y -q etcd-server etcd-client >/dev/null
fi

work=$(mktemp -d "${WORK_ROOT:-/var/tmp}/etcd-vs-meta.XXXXXX")
pids=()
stop_all() { # stops every server started so far
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Build, then run copies, so a rebuild elsewhere in the tree cannot swap binaries mid-run.
dotnet build -c Release tools/Storage.Cli -nologo -v q >/dev/null
dotnet build -c Release bench/Storage.EtcdLoad -nologo -v q >/dev/null
cp -r tools/Storage.Cli/bin/Release/net10.0 "$work/cli"
cp -r bench/Storage.EtcdLoad/bin/Release/net10.0 "$work/load"
storage=$work/cli/storage
load=$work/load/Storage.EtcdLoad

for port in $((base + 1)) $((base + 2)) $((base + 3)) $((base + 11)) $((base + 12)) $((base + 13)) \
            $((base + 111)) $((base + 112)) $((base + 113)) $((base + 211)) $((base + 212)) $((base + 213)); do
  if ss -Htln "( sport = :$port )" | grep -q .; then echo "port $port is in use; set PORT_BASE" >&2; exit 1; fi
done

cpu_ticks() { # utime+stime of the given processes, in clock ticks
  local t=0 p f
  for p in "$@"; do read -r -a f < <(sed 's/.*) //' "/proc/$p/stat"); t=$((t + f[11] + f[12])); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
results=$work/results.tsv
: >"$results"
record() { # SYSTEM OP INFLIGHT OPS_S P50 P99 SERVER_US CLIENT_US SECONDS|NOTE
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"
  printf '  %-18s %-4s %4s in flight: %7s ops/s  p50 %7s ms  p99 %7s ms  server CPU %5s us/op  client CPU %5s us/op  [%s]\n' "$@"
}
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
idle() { # NAME PID... : server CPU while idle, as % of one core
  local t0 t1
  t0=$(cpu_ticks "${@:2}"); sleep 5; t1=$(cpu_ticks "${@:2}")
  echo "  $1 idle: $(( (t1 - t0) * 100 / hz / 5 )) % of one core"
}

echo "date: $(date -u +%F), cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
     "$(dotnet --list-runtimes | grep -m1 NETCore.App | cut -d' ' -f1-2), $(etcd --version | head -1)," \
     "logs on $(df --output=source,fstype "$work" | tail -1 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- etcd ---------------------------------------------------------------------------------------------
initial=""
for i in 1 2 3; do initial+="${initial:+,}e$i=http://127.0.0.1:$((base + 10 + i))"; done
eps=""
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$((base + i))" --advertise-client-urls "http://127.0.0.1:$((base + i))" \
    --listen-peer-urls "http://127.0.0.1:$((base + 10 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token etcd-vs-meta \
    --logger zap --log-outputs stderr >"$work/etcd$i.log" 2>&1 &
  pids+=($!)
  eps+="${eps:+,}http://127.0.0.1:$((base + i))"
done
for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
echo "etcd $(etcd --version | head -1 | cut -d' ' -f3), defaults (WAL fsync per raft batch), JSON gateway:"
idle etcd "${pids[@]}"
server_pids=$(IFS=,; echo "${pids[*]}")
run_etcd() { # OP INFLIGHT [extra]
  local out
  out=$("$load" --target etcd --endpoints "$eps" --op "$1" --inflight "$2" --seconds "$seconds" --pids "$server_pids" "${@:3}")
  record etcd "$1" "$2" "$(field ops_s "$out")" "$(field p50_ms "$out")" "$(field p99_ms "$out")" \
    "$(field server_cpu_us_op "$out")" "$(field client_cpu_us_op "$out")" "$(field seconds "$out")"
}
for n in $put_inflight; do run_etcd put "$n"; done
for n in $read_inflight; do run_etcd get "$n" --keys 1000 --prefill; done
stop_all

# --- storage meta -------------------------------------------------------------------------------------
peers=""
clients=""
for i in 1 2 3; do
  peers+="${peers:+,}$i=127.0.0.1:$((base + 110 + i))"
  clients+="${clients:+,}$i=127.0.0.1:$((base + 210 + i))"
done
meta_bench() { # INFLIGHT OPS: storage meta bench, killed if it outlives its share (it has no duration option)
  timeout -s KILL "$((seconds * 4 + 60))" "$storage" meta bench --clients "$clients" --inflight "$1" --ops "$2"
}
run_meta() { # NAME [serve options]
  local name=$1 i n out cal rate ops c0 c1 t0 t1
  for i in 1 2 3; do
    "$storage" meta serve --id "$i" --dir "$work/$name$i" --peers "$peers" --clients "$clients" --bootstrap "${@:2}" \
      >"$work/$name$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do "$storage" meta status --clients "$clients" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "storage meta serve ${*:2}:"
  idle "$name" "${pids[@]}"
  for n in $put_inflight; do
    # storage meta bench takes a count, not a duration: a short run (also the warm-up) sizes the real one.
    cal=$((n * 200 > 500 ? n * 200 : 500))
    if out=$(meta_bench "$n" "$cal"); then
      rate=$(sed -n 's/.*: \([0-9]*\) ops\/s.*/\1/p' <<<"$out")
      ops=$((rate * seconds > cal ? rate * seconds : cal))
      c0=$(cpu_ticks "${pids[@]}")
      t0=$(date +%s%N)
      if out=$(meta_bench "$n" "$ops"); then
        c1=$(cpu_ticks "${pids[@]}")
        t1=$(date +%s%N)
        rate=$(sed -n 's/.*: \([0-9]*\) ops\/s.*/\1/p' <<<"$out")
        record "meta $name" put "$n" "$rate" "$(sed -n 's/.*p50 \([0-9.]*\) ms.*/\1/p' <<<"$out")" \
          "$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$out")" "$(( (c1 - c0) * 1000000 / hz / ops ))" \
          "$(sed -n 's/.*client CPU \([0-9]*\) us\/op.*/\1/p' <<<"$out")" "$(awk -v d="$((t1 - t0))" 'BEGIN { printf "%.2f", d / 1e9 }')"
        continue
      fi
    fi
    record "meta $name" put "$n" 0 - - - - "failed: no answer or hung (killed); status: $("$storage" meta status --clients "$clients" 2>&1 | awk 'NR > 1 && NR < 5 {printf "%s %s ballot %s commit %s; ", $1, $2, $4, $5}')"
  done
  for n in $read_inflight; do
    if out=$(timeout -s KILL "$((seconds * 2 + 60))" "$load" --target meta --endpoints "$clients" --op get --inflight "$n" \
        --seconds "$seconds" --pids "$(IFS=,; echo "${pids[*]}")" --keys 1000 --prefill); then
      record "meta $name" get "$n" "$(field ops_s "$out")" "$(field p50_ms "$out")" "$(field p99_ms "$out")" \
        "$(field server_cpu_us_op "$out")" "$(field client_cpu_us_op "$out")" "$(field seconds "$out")"
    else
      record "meta $name" get "$n" 0 - - - - "failed or hung (killed)"
    fi
  done
  stop_all
}
for tick in $ticks; do
  run_meta "t$tick-batch" --tick-ms "$tick"
  run_meta "t$tick-nobatch" --tick-ms "$tick" --no-batching
done

# --- table --------------------------------------------------------------------------------------------
echo
echo "| System | Op | In flight | ops/s | p50 ms | p99 ms | Server CPU us/op | Client CPU us/op | vs etcd | Run (s) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
awk -F'\t' '
  $1 == "etcd" { etcd[$2 " " $3] = $4 }
  { rows[NR] = $0 }
  END {
    for (i = 1; i <= NR; i++) {
      split(rows[i], f, "\t")
      e = etcd[f[2] " " f[3]]
      ratio = (f[1] == "etcd" || e == "" || f[4] == 0) ? "" : sprintf("%.2fx", f[4] / e)
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4] == 0 ? "-" : f[4], f[5], f[6], f[7], f[8], ratio, f[9]
    }
  }' "$results"
