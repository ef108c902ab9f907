#!/usr/bin/env bash
# The kernel's VXLAN path alone, without berth: two "hosts" (network namespaces joined by a
# veth), each with a bridge and a "container" namespace behind it, and a VXLAN device
# between the hosts programmed by hand (static FDB and neighbour entries, as berth's agent
# does). iperf3 host to host, then container to container over the overlay, alternating.
# It is the reference that docs/benchmarks.md compares berth-mesh-bench's overlay against.
#
#   ./scripts/vxlan-bare-bench.sh [ROUNDS]     LINK_RATE=10gbit shapes each host's egress (tbf)
#
# Everything lives in the namespaces it creates and removes on exit; needs root and iperf3.
set -euo pipefail
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "needs iperf3 (apt-get install iperf3)" >&2; exit 1; }

ns=(vxb-a vxb-b vxb-ca vxb-cb)
cleanup() { for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done; }
trap cleanup EXIT
cleanup
for n in "${ns[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done

ip link add va netns vxb-a type veth peer name vb netns vxb-b
ip -n vxb-a addr add 192.168.50.1/24 dev va && ip -n vxb-a link set va up
ip -n vxb-b addr add 192.168.50.2/24 dev vb && ip -n vxb-b link set vb up
if [ -n "${LINK_RATE:-}" ]; then
  ip netns exec vxb-a tc qdisc add dev va root tbf rate "$LINK_RATE" burst 2mb latency 2ms
  ip netns exec vxb-b tc qdisc add dev vb root tbf rate "$LINK_RATE" burst 2mb latency 2ms
fi

# host, container, subnet index, underlay address, peer's underlay address, peer's index
setup() {
  local h=$1 c=$2 i=$3 local_ip=$4
  ip -n "$h" link add br0 type bridge
  ip -n "$h" addr add "10.9.$i.1/24" dev br0 && ip -n "$h" link set br0 up
  ip -n "$h" link add ve type veth peer name eth0 netns "$c"
  ip -n "$h" link set ve master br0 mtu 1450 up
  ip -n "$c" addr add "10.9.$i.2/24" dev eth0
  ip -n "$c" link set eth0 mtu 1450 up
  ip -n "$c" route add default via "10.9.$i.1"
  ip netns exec "$h" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$h" link add vx type vxlan id 42 dstport 4789 local "$local_ip" nolearning
  ip -n "$h" addr add "10.9.$i.0/32" dev vx && ip -n "$h" link set vx up
}
setup vxb-a vxb-ca 1 192.168.50.1
setup vxb-b vxb-cb 2 192.168.50.2
mac() { ip -n "$1" link show vx | awk '/link\/ether/ {print $2}'; }
peer() { # host, peer index, peer mac, peer underlay address
  ip -n "$1" neigh add "10.9.$2.0" lladdr "$3" dev vx nud permanent
  ip -n "$1" route add "10.9.$2.0/24" via "10.9.$2.0" dev vx onlink
  bridge -n "$1" fdb append "$3" dev vx dst "$4"
}
peer vxb-a 2 "$(mac vxb-b)" 192.168.50.2
peer vxb-b 1 "$(mac vxb-a)" 192.168.50.1

# server namespace, client namespace, target: received Gbit/s over 3 s
run() {
  ip netns exec "$1" iperf3 -s -1 >/dev/null &
  sleep 0.3
  ip netns exec "$2" iperf3 -c "$3" -t 3 -J |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'
  wait
}
echo "link: ${LINK_RATE:-unshaped}"
for _ in $(seq "$rounds"); do
  under=$(run vxb-b vxb-a 192.168.50.2)
  over=$(run vxb-cb vxb-ca 10.9.2.2)
  echo "hosts $under Gbit/s, containers over VXLAN $over Gbit/s ($(python3 -c "print(round($over/$under*100))") %)"
done
