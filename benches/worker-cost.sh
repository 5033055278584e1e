#!/usr/bin/env bash
# worker-cost.sh WORKTREE  (issue 23: the cost of workers; adapted from
# measure-baseline.sh, which it leaves alone)
#
# For `monoloop echo --workers W` (ping-pong 64 B, 1000 connections) and
# `monoloop broadcast --workers W` (fan-out: 1 sender, 1000 receivers, 64 B
# lines, window 64), W = 1 and 2, with the server on cores 0-1 and the
# loadgen pinned to core 1 (sharing it), as `bench --only scaling` does on
# two cores. Per pass, over the loadgen's START..END window:
#   PASS=perf:      perf stat -p PID of raw_syscalls:sys_enter and the
#                   futex, write, epoll_wait entries and context switches
#                   (all threads), divided by the loadgen's msgs=
#   PASS=callgrind: server under valgrind --tool=callgrind
#                   (callgrind_control -z at START, -d at END), the dump's
#                   totals (all threads) divided by msgs=
# REPEATS rounds (default 3), W alternating first. Output: one line per pass.
# Environment: SECS / WARMUP (default 3 / 1), SCEN (default "echo fanout"),
# PROFILE (default release: target/PROFILE/monoloop; e.g. profiling),
# KEEP_CG (a directory for the callgrind dumps, as SCEN.W.ROUND.out).
# Needs target/release/monoloop and benches/target/release/loadgen built
# (`bench` builds both). Sends traffic only to 127.0.0.1.
set -euo pipefail
WT=$(cd "${1:?usage: worker-cost.sh WORKTREE}" && pwd)
REPEATS=${REPEATS:-3}; SECS=${SECS:-3}; WARMUP=${WARMUP:-1}; PASS=${PASS:-perf}
SCEN=${SCEN:-"echo fanout"}
BIN=$WT/target/${PROFILE:-release}/monoloop; LG=$WT/benches/target/release/loadgen
TMP=$(mktemp -d)
args_of() { case $1 in
    echo) echo "--scenario echo --conns 1000 --size 64";;
    fanout) echo "--scenario fanout --conns 1000 --size 64 --window 64";; esac; }
mode_of() { case $1 in echo) echo echo;; fanout) echo broadcast;; esac; }
one() { # scenario workers round
    local sc=$1 w=$2 r=$3 err=$TMP/err.$sc.$w.$r pre=()
    [ "$PASS" = callgrind ] && pre=(valgrind --tool=callgrind --callgrind-out-file=$TMP/cg.%p.out)
    taskset -c 0,1 "${pre[@]}" "$BIN" "$(mode_of "$sc")" --workers "$w" --listen 127.0.0.1:0 \
        --stats-interval 0 --idle-timeout 0 --max-connections 50000 --log-level info 2>"$err" &
    local spid=$! addr=""
    for _ in $(seq 600); do
        addr=$(grep -o 'listening on [^ ]*' "$err" | head -1 | cut -d' ' -f3 || true)
        [ -n "$addr" ] && break; sleep 0.1; done
    local pid=$spid
    [ "$PASS" = callgrind ] && pid=$(pgrep -P "$spid" | head -1 || echo "$spid")
    local res="" perfpid=""
    coproc LGP { "$LG" --addr "$addr" --cpu 1 $(args_of "$sc") --secs "$SECS" --warmup "$WARMUP"; }
    local lgpid=$LGP_PID lgin=${LGP[1]} lgout=${LGP[0]}
    while read -r line <&"$lgout"; do
        case $line in
        START) if [ "$PASS" = perf ]; then
                   perf stat -x, -o "$TMP/perf.$sc.$w.$r" -e raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,context-switches -p "$pid" >/dev/null 2>&1 &
                   perfpid=$!
               else callgrind_control -z "$spid" >/dev/null; fi;;
        END) if [ "$PASS" = perf ]; then kill -INT "$perfpid"; wait "$perfpid" || true
             else callgrind_control -d "$spid" >/dev/null; fi
             echo sampled >&"$lgin";;
        RESULT*) res=$line;;
        esac
    done
    wait "$lgpid" 2>/dev/null || true
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
    local msgs; msgs=$(echo "$res" | grep -o 'msgs=[0-9]*' | cut -d= -f2 || true)
    if [ "$PASS" = perf ]; then
        awk -F, -v m="$msgs" -v sc="$sc" -v w="$w" -v r="$r" '
            /sys_enter,/ && $3 ~ /raw_syscalls/ {s=$1} /futex/ {f=$1} /sys_enter_write/ {wr=$1}
            /epoll_wait/ {e=$1} /context-switches/ {c=$1}
            END {printf "%s w=%s round=%s msgs=%s syscalls/msg=%.4f futex/msg=%.5f write/msg=%.4f epoll_wait/msg=%.4f cs/msg=%.5f\n", sc,w,r,m,s/m,f/m,wr/m,e/m,c/m}' "$TMP/perf.$sc.$w.$r"
    else
        local tot; tot=$(cat $TMP/cg.*.out.1 2>/dev/null | awk '/^totals:/ {t+=$2} END {print t}')
        [ -n "${KEEP_CG:-}" ] && cp $TMP/cg.*.out.1 "$KEEP_CG/$sc.$w.$r.out"; rm -f $TMP/cg.*
        echo "$sc w=$w round=$r msgs=$msgs instr=$tot instr/msg=$(awk -v t="$tot" -v m="$msgs" 'BEGIN{printf "%.0f", t/m}')"
    fi
    echo "   $res" >&2
}
for r in $(seq "$REPEATS"); do
    order="1 2"; [ $((r % 2)) = 0 ] && order="2 1"
    for sc in $SCEN; do for w in $order; do one "$sc" "$w" "$r"; done; done
done
rm -rf "$TMP"
