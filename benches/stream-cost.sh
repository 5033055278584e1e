#!/usr/bin/env bash
# benches/stream-cost.sh: where a streamed byte's cost goes (issue 23).
#
#   benches/stream-cost.sh SERVER [CONNS] [stream|mixed]
#
# One run of the load generator's `stream` scenario (CONNS connections,
# default 100, writing 64 KiB chunks flat out and reading everything back)
# or its `mixed` one (CONNS bulk streams, one interactive 64 B ping-pong
# client) against one server, pinned as the runner pins them: server on
# core 0, load generator on core 1. Inside the 5 s window, `perf stat`
# counts, for 3 s, the server's system calls by kind, its context switches
# and the wakeups it causes (`sched:sched_waking`), and the same for the
# load generator; the server's CPU over those 3 s is its schedstat. Printed
# per MB (10^6 bytes) streamed one way (the load generator's `mbps` times
# the seconds counted): CPU, each count, and so the bytes per read.
#
# SERVER is monoloop (MONO=path picks the binary, default target/release),
# epoll, tokio-ct, monoio, threads. Needs perf and the benches built
# (`cargo build --release --manifest-path benches/Cargo.toml --bins`).
# Loopback only; bounded by the load generator's window.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
S=$1; C=${2:-100}; SCEN=${3:-stream}
B=$here/target/release
M=${MONO:-$here/../target/release/monoloop}
case $S in
  monoloop) cmd=(taskset -c 0 "$M" echo --listen 127.0.0.1:0 --idle-timeout 0
                 --max-connections 50000 --log-level info);;
  epoll) cmd=(taskset -c 0 "$B/echo_epoll");;
  tokio-ct) cmd=(taskset -c 0 "$B/echo_tokio_ct");;
  monoio) cmd=(taskset -c 0 "$B/echo_monoio");;
  threads) cmd=(taskset -c 0 "$B/echo_threads");;
  *) echo "unknown server $S" >&2; exit 2;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${cmd[@]}" > "$tmp/server" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$tmp/server" && break; sleep 0.1; done
addr=$(grep -o "listening on [0-9.:]*" "$tmp/server" | head -1 | awk '{print $3}')
if [ "$SCEN" = mixed ]; then la=(--scenario mixed --bulk "$C"); else la=(--scenario stream --conns "$C"); fi
# The load generator holds its connections until its stdin closes.
"$B/loadgen" --addr "$addr" --cpu 1 "${la[@]}" --secs 5 --warmup 1 > "$tmp/lg" 2>&1 < <(sleep 8) &
lg=$!
sleep 2
sched() { awk '{s+=$1} END{printf "%.0f", s}' /proc/"$pid"/task/*/schedstat; }
ev=syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_read
ev=$ev,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait
ev=$ev,syscalls:sys_enter_io_uring_enter,raw_syscalls:sys_enter,context-switches,sched:sched_waking
perf stat -x, -p "$lg" -e "$ev" -- sleep 3 2> "$tmp/perf-lg" &
t0=$(date +%s.%N); n0=$(sched)
perf stat -x, -p "$pid" -e "$ev" -- sleep 3 2> "$tmp/perf-server" || true
n1=$(sched); t1=$(date +%s.%N)
wait "$lg" || true
kill "$pid"; wait "$pid" 2>/dev/null || true
res=$(grep RESULT "$tmp/lg")
echo "$S $SCEN conns=$C: ${res#RESULT }"
python3 - "$res" "$n0" "$n1" "$t0" "$t1" "$tmp/perf-server" "$tmp/perf-lg" <<'PY'
import re, sys
res, n0, n1, t0, t1, ps, pl = sys.argv[1:]
# CPU is sampled around perf's whole run (its start and exit included);
# perf counts for the 3 s of its `sleep`: each is divided by the MB
# streamed over its own span.
secs = float(t1) - float(t0)
mbps = float(re.search(r"mbps=([0-9.]+)", res).group(1))
mb, mb_counted = mbps * secs, mbps * 3.0
def counts(path):
    d = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 3 and f[0].replace(".", "").isdigit() and float(f[0]) > 0:
            d[f[2].split(":")[-1].replace("sys_enter_", "")] = float(f[0])
    return d
cpu = (int(n1) - int(n0)) / 1e9
print(f"  server: {cpu / secs:.2f} cores, {cpu / mb * 1e6:.0f} us CPU per MB; per MB: "
      + " ".join(f"{k}={v / mb_counted:.1f}" for k, v in counts(ps).items()))
print("  loadgen per MB: " + " ".join(f"{k}={v / mb_counted:.1f}" for k, v in counts(pl).items()))
PY
