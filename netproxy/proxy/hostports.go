package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// hostPort mappings (pods' ports[].hostPort) are DNATed in the same table,
// as the CNI portmap plugin does with its CNI-HOSTPORT-DNAT chain:
//
//	nat-prerouting / nat-output → hostports (before services)
//	hostports: ip daddr . meta l4proto . th dport vmap @hostport-ips  (hostIP set)
//	           ip daddr @nodeport-ips meta l4proto . th dport vmap @hostport-ports
//	hp-NS/POD/PROTO/PORT: masquerade hairpin and localhost, dnat to the pod
//
// "Every node address" is the NodePort address set (the node IPs, and
// 127.0.0.1 with LocalhostNodePorts).
const (
	chainHostPorts    = "hostports"
	mapHostPortIPs    = "hostport-ips"
	mapHostPortPorts  = "hostport-ports"
	hostPortChainHead = "hp-"
)

// loopback is where the node's own clients reach a hostPort from; their
// source must be rewritten, or the pod would answer to its own loopback.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// HostPort is one hostPort mapping of a pod on this node.
type HostPort struct {
	// Pod names the mapping's chain.
	Pod types.NamespacedName
	// HostIP limits the mapping to one node address; the zero Addr (and
	// 0.0.0.0) means every node address.
	HostIP   netip.Addr
	HostPort uint16
	Protocol Protocol
	// PodIP and ContainerPort are where the traffic goes.
	PodIP         netip.Addr
	ContainerPort uint16
}

func (h HostPort) key() Key {
	return Key{Addr: h.HostIP, Proto: h.Protocol, Port: h.HostPort}
}

func (h HostPort) chain() string {
	port := fmt.Sprint(h.HostPort)
	if h.HostIP.IsValid() {
		port = netip.AddrPortFrom(h.HostIP, h.HostPort).String()
	}
	return fmt.Sprintf("%s%s/%s/%s/%s", hostPortChainHead, h.Pod.Namespace, h.Pod.Name, h.Protocol, port)
}

// PodHostPorts returns the hostPort mappings of pod, whose address is
// podIP. Ports without a hostPort, IPv6 host IPs and protocols the table
// cannot match are skipped, as portmap skips what it cannot map.
func PodHostPorts(pod *v1.Pod, podIP netip.Addr) []HostPort {
	if !podIP.Unmap().Is4() || pod.Spec.HostNetwork {
		return nil
	}
	var out []HostPort
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				proto, ok := protocolOf(p.Protocol)
				if !ok || p.HostPort < 1 || p.HostPort > 65535 || p.ContainerPort < 1 || p.ContainerPort > 65535 {
					continue
				}
				hp := HostPort{
					Pod:           types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
					HostPort:      uint16(p.HostPort),
					Protocol:      proto,
					PodIP:         podIP.Unmap(),
					ContainerPort: uint16(p.ContainerPort),
				}
				if p.HostIP != "" {
					ip, err := netip.ParseAddr(p.HostIP)
					if err != nil || !ip.Unmap().Is4() {
						continue
					}
					if !ip.IsUnspecified() {
						hp.HostIP = ip.Unmap()
					}
				}
				out = append(out, hp)
			}
		}
	}
	return out
}

// hostPorts adds the hostports chain, its maps and a chain a mapping.
func (b *builder) hostPorts(hps []HostPort) {
	hps = slices.Clone(hps)
	slices.SortFunc(hps, func(a, c HostPort) int {
		return cmp.Or(a.HostIP.Compare(c.HostIP), cmp.Compare(a.Protocol, c.Protocol), cmp.Compare(a.HostPort, c.HostPort),
			cmp.Compare(a.Pod.Namespace, c.Pod.Namespace), cmp.Compare(a.Pod.Name, c.Pod.Name))
	})
	var byIP, anyIP []Element
	var chains []*Chain
	for i, h := range hps {
		if i > 0 && hps[i-1].key() == h.key() {
			continue // two pods cannot hold one host port; the first keeps it
		}
		c := &Chain{Name: h.chain(), Rules: []Rule{
			{MatchAddr{Field: SourceAddr, Prefix: hostPrefix(h.PodIP)}, jump(chainMarkForMasq)},
			{MatchAddr{Field: SourceAddr, Prefix: loopback}, jump(chainMarkForMasq)},
			{MatchProto{h.Protocol}, DNAT{To: netip.AddrPortFrom(h.PodIP, h.ContainerPort)}},
		}}
		chains = append(chains, c)
		e := Element{Key: h.key(), Verdict: Verdict{Kind: VerdictGoto, Chain: c.Name}}
		if h.HostIP.IsValid() {
			byIP = append(byIP, e)
		} else {
			anyIP = append(anyIP, e)
		}
		if h.Protocol == ProtoUDP {
			if b.rs.udpFrontends == nil {
				b.rs.udpFrontends = map[Key][]netip.Addr{}
			}
			b.rs.udpFrontends[h.key()] = []netip.Addr{h.PodIP}
		}
	}
	b.rs.Chains = append(b.rs.Chains,
		&Chain{Name: chainHostPorts, Rules: []Rule{
			{VmapLookup{Key: KeyAddrProtoPort, Map: mapHostPortIPs}},
			{MatchAddrSet{Field: DestAddr, Set: setNodePortIPs}, VmapLookup{Key: KeyProtoPort, Map: mapHostPortPorts}},
		}})
	b.rs.Chains = append(b.rs.Chains, chains...)
	b.rs.Sets = append(b.rs.Sets,
		&Set{Name: mapHostPortIPs, Key: KeyAddrProtoPort, Verdicts: true, Elements: byIP},
		&Set{Name: mapHostPortPorts, Key: KeyProtoPort, Verdicts: true, Elements: anyIP},
	)
}
