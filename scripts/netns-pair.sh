#!/usr/bin/env bash
# Two "hosts" on one machine: network namespaces joined by a veth pair whose
# two ends are shaped by tc's token bucket (tbf), for multi-host tests of
# `hetflow launch` without a second machine (tests/netns.rs). Needs root,
# iproute2 (ip, tc) and Open MPI.
#
#   scripts/netns-pair.sh up PREFIX RATE      e.g. up hf1 400mbit: namespaces
#                                             PREFIX-a (10.X.0.1) and PREFIX-b
#                                             (10.X.0.2), X from the prefix
#   scripts/netns-pair.sh rate PREFIX RATE    reshape both ends
#   scripts/netns-pair.sh down PREFIX
#   scripts/netns-pair.sh agent HOST CMD...   Open MPI's rsh agent
#                                             (OMPI_MCA_plm_rsh_agent): runs
#                                             CMD inside HOST's namespace
#
# `mpirun` itself runs in PREFIX-a (`ip netns exec PREFIX-a ...`) with
# OMPI_MCA_plm_rsh_agent="scripts/netns-pair.sh agent" and the TCP
# transports restricted to the pair's subnet; hosts are named by address.
set -euo pipefail

subnet() { # a stable 10.X.0.0/24 per prefix, X in 100..199
    local x
    x=$(( $(printf '%s' "$1" | cksum | cut -d' ' -f1) % 100 + 100 ))
    echo "10.$x.0"
}

shape() { # NS DEV RATE
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst 256kb latency 100ms
}

cmd="${1:-}"
case "$cmd" in
    up)
        p="$2"; rate="$3"; net="$(subnet "$p")"
        ip netns add "$p-a"
        ip netns add "$p-b"
        ip link add "$p-va" type veth peer name "$p-vb"
        ip link set "$p-va" netns "$p-a"
        ip link set "$p-vb" netns "$p-b"
        ip -n "$p-a" addr add "$net.1/24" dev "$p-va"
        ip -n "$p-b" addr add "$net.2/24" dev "$p-vb"
        for s in a b; do
            ip -n "$p-$s" link set lo up
            ip -n "$p-$s" link set "$p-v$s" up
        done
        shape "$p-a" "$p-va" "$rate"
        shape "$p-b" "$p-vb" "$rate"
        echo "$net"
        ;;
    rate)
        p="$2"
        shape "$p-a" "$p-va" "$3"
        shape "$p-b" "$p-vb" "$3"
        ;;
    down)
        p="$2"
        ip netns del "$p-a" 2>/dev/null || true
        ip netns del "$p-b" 2>/dev/null || true
        ;;
    agent)
        shift
        while [ "${1#-}" != "$1" ]; do shift; done # rsh options
        host="$1"; shift
        ns=""
        for n in $(ip netns list | cut -d' ' -f1); do
            # Captured first: `grep -q` closing the pipe early would fail
            # the pipeline under pipefail.
            addrs="$(ip -n "$n" -o addr show 2>/dev/null || true)"
            case "$addrs" in *" $host/"*) ns="$n"; break ;; esac
        done
        [ -n "$ns" ] || { echo "netns-pair agent: no namespace holds $host" >&2; exit 1; }
        exec ip netns exec "$ns" /bin/sh -c "$*"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
