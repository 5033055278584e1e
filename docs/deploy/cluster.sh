#!/usr/bin/env bash
# Three monoloop chat instances on this machine, made one chat by Redis
# (--cluster), behind HAProxy: what docs/scaling.md ("One room across
# machines") draws, with no container and no compose file. Every process
# is started here and stopped here, by its pid, when the script ends:
# Ctrl-C, SIGTERM, or an instance or HAProxy exiting. Enter stops Redis,
# and Enter again starts it, empty: an outage to watch.
#
#   cargo build --release
#   MONOLOOP=target/release/monoloop docs/deploy/cluster.sh
#
# then, in two more terminals, `nc 127.0.0.1 8080` (or `monoloop client
# 127.0.0.1:8080`): HAProxy sends each to the instance with fewest
# connections, so two clients land on two instances, and they chat as if
# there were one server.
#
#   redis-server   127.0.0.1:6380, persistence off (--save '', no AOF):
#                  it holds only what is in flight; see docs/scaling.md on
#                  a Redis that restarts empty
#   monoloop chat  127.0.0.1:9201, :9202, :9203, --proxy-protocol
#   haproxy        127.0.0.1:8080, docs/deploy/haproxy-cluster.cfg
#
# What a run of it showed (redis-server 7.0.15, HAProxy 2.6.12, three
# clients with nc through :8080). Each instance's log, time stamps cut:
#
#   INFO  [monoloop] chat server listening on 127.0.0.1:9201
#   INFO  [monoloop] monoloop 0.1.0 (commit f96a7cb, tls): chat server, up to 1024 connections, ...
#   INFO  [monoloop] cluster: linked to redis://127.0.0.1:6380 (stream monoloop:chat)
#
# HAProxy sent the three clients to :9201, :9202 and :9203, one each (ss
# -tnp shows which). alice and bob, on two instances:
#
#   $ nc 127.0.0.1 8080                  $ nc 127.0.0.1 8080
#   Enter your username: alice
#   Welcome to the chat!
#                                        Enter your username: bob
#   bob joined the chat                  Welcome to the chat!
#   hi bob                               alice: hi bob
#   bob: hello alice                     hello alice
#   /who
#   Users online: alice, bob
#   [private] bob: psst                  /msg alice psst
#
# A third client, on the third instance, typed Alice and got `Username
# taken. Enter your username: `, then carol: alice and bob both heard
# `carol joined the chat`, and carol's /who said `Users online: alice,
# bob, carol`. In Redis (redis-cli -p 6380): the stream monoloop:chat and
# one key per name, monoloop:chat:name:alice holding `15b02bd78aa033d7.0
# 21474836480` (instance, worker, connection) with a TTL of 30 s.
#
# Enter (Redis stopped): each instance logged once `cluster: lost Redis
# at redis://127.0.0.1:6380 (Redis closed the connection): serving this
# instance's clients alone, and retrying`. alice and bob each said a line;
# neither heard the other's yet. A new client that gave a name got, 5 s
# later, `Chat is unavailable right now. Try again later.` and was closed.
# Enter again (Redis back, empty): `cluster: linked to
# redis://127.0.0.1:6380 again after 9.3 s; no line dropped` (9.3,
# 10.9 and 12.2 s on the three: each retries on its
# own backoff), alice heard `bob: during the outage, from bob` and bob
# `alice: during the outage, from alice`, the keys for alice and bob were
# back in Redis, and /who said `Users online: alice, bob`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
monoloop=${MONOLOOP:-monoloop}
redis_port=6380
ports=(9201 9202 9203)
front=8080

for tool in "$monoloop" redis-server haproxy; do
    if ! command -v "$tool" >/dev/null; then
        echo "cluster.sh: $tool is not installed (MONOLOOP=path/to/monoloop for monoloop;" \
            "apt-get install redis-server haproxy for the others)" >&2
        exit 1
    fi
done

# True if something listens on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in "$redis_port" "${ports[@]}" "$front"; do
    if listening "$port"; then
        echo "cluster.sh: 127.0.0.1:$port is taken; stop what listens there first" >&2
        exit 1
    fi
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/monoloop-cluster.XXXXXX")
pids=()  # the instances and HAProxy
redis=""  # Redis, while it runs
stop() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}" $redis; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "cluster.sh: stopped; logs in $logs" >&2
}
trap stop EXIT
trap 'exit 130' INT TERM

# Waits up to 5 s for 127.0.0.1:$1 to listen.
wait_for() {
    for _ in $(seq 50); do
        listening "$1" && return 0
        sleep 0.1
    done
    echo "cluster.sh: nothing listens on 127.0.0.1:$1 after 5 s; see $logs" >&2
    exit 1
}

# Redis in the background, persistence off: it keeps only what is in
# flight (docs/scaling.md, "Redis restarted empty").
start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        >>"$logs/redis.log" 2>&1 &
    redis=$!
    wait_for "$redis_port"
}
start_redis

for i in "${!ports[@]}"; do
    "$monoloop" chat --listen "127.0.0.1:${ports[$i]}" \
        --proxy-protocol --proxy-from 127.0.0.1 \
        --cluster "redis://127.0.0.1:$redis_port" \
        >"$logs/monoloop-$((i + 1)).log" 2>&1 &
    pids+=($!)
done
for port in "${ports[@]}"; do
    wait_for "$port"
done

haproxy -db -f "$here/haproxy-cluster.cfg" >"$logs/haproxy.log" 2>&1 &
pids+=($!)
wait_for "$front"

echo "cluster.sh: Redis on :$redis_port, chat on :${ports[*]}, HAProxy on :$front; logs in $logs"
echo "cluster.sh: connect with: nc 127.0.0.1 $front"
echo "cluster.sh: Enter stops Redis, and starts it again (empty); Ctrl-C stops all"

# Until Ctrl-C, or until an instance or HAProxy exits: then all stop.
while true; do
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "cluster.sh: process $pid exited; stopping the others" >&2
            exit 1
        fi
    done
    if read -r -t 1; then
        if [[ -n $redis ]]; then
            kill "$redis"
            wait "$redis" 2>/dev/null || true
            redis=""
            echo "cluster.sh: Redis stopped: each instance serves its own clients alone"
        else
            start_redis
            echo "cluster.sh: Redis started again, empty"
        fi
    elif (($? <= 128)); then
        # No terminal (stdin at its end): nothing to read, only to watch.
        sleep 1
    fi
done
