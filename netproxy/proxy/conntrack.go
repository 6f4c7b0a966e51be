package proxy

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UDP has no connection to close, so a conntrack entry lives as long as
// packets keep coming, and the kernel consults the NAT rules only for a
// flow's first packet. Two kinds of UDP entries therefore outlive a rules
// change and must be deleted, as kube-proxy does (pkg/proxy/conntrack):
//
//   - entries made while a service address had no endpoints, or before
//     its rules existed at all (a pod's DNS query sent while the node was
//     still programming kube-dns): they were not DNATed, and a client
//     that keeps its socket, as resolvers do across their retries, would
//     keep missing the endpoints that exist now;
//   - entries DNATed to an endpoint that is gone: the client would keep
//     sending into the void.

// StaleUDPFlows selects the UDP conntrack entries a rules change has made
// stale. The zero value selects nothing.
type StaleUDPFlows struct {
	// unNATed: frontends (address . udp . port, or udp . node port)
	// whose entries are stale if they were not DNATed.
	unNATed map[Key]bool
	// gone: frontends and the endpoint addresses they no longer use.
	gone map[Key][]netip.Addr
}

// Empty reports whether nothing is selected, so the conntrack table need
// not be read at all.
func (s StaleUDPFlows) Empty() bool { return len(s.unNATed) == 0 && len(s.gone) == 0 }

// Matches reports whether a UDP entry whose original direction went to
// dst and whose reply comes from replySrc is stale.
func (s StaleUDPFlows) Matches(dst netip.AddrPort, replySrc netip.Addr) bool {
	for _, k := range []Key{
		{Addr: dst.Addr(), Proto: ProtoUDP, Port: dst.Port()},
		{Proto: ProtoUDP, Port: dst.Port()}, // node ports, on any node address
	} {
		if s.unNATed[k] && replySrc == dst.Addr() {
			return true
		}
		if slices.Contains(s.gone[k], replySrc) {
			return true
		}
	}
	return false
}

// staleUDPFlows compares the UDP frontends of the ruleset in the kernel
// (old, nil when unknown, e.g. at agent start) with the new one's.
func staleUDPFlows(old, cur *Ruleset) StaleUDPFlows {
	var s StaleUDPFlows
	for k, eps := range cur.udpFrontends {
		if len(eps) == 0 {
			continue
		}
		if old == nil || len(old.udpFrontends[k]) == 0 {
			if s.unNATed == nil {
				s.unNATed = map[Key]bool{}
			}
			s.unNATed[k] = true
		}
	}
	if old == nil {
		return s
	}
	for k, eps := range old.udpFrontends {
		now := cur.udpFrontends[k]
		for _, e := range eps {
			if !slices.Contains(now, e) {
				if s.gone == nil {
					s.gone = map[Key][]netip.Addr{}
				}
				s.gone[k] = append(s.gone[k], e)
			}
		}
	}
	return s
}

// FlowCleaner deletes conntrack entries. Conntrack is the real one.
type FlowCleaner interface {
	// DeleteFlows deletes the selected IPv4 entries and returns how many.
	DeleteFlows(s StaleUDPFlows) (int, error)
}

// Conntrack deletes entries from the kernel's conntrack table over
// netlink, in the network namespace given by NetNSFd (the caller's when
// it is 0).
type Conntrack struct {
	NetNSFd int
}

var _ FlowCleaner = (*Conntrack)(nil)

// DeleteFlows reads the whole table once and deletes the selected entries.
func (c *Conntrack) DeleteFlows(s StaleUDPFlows) (int, error) {
	if s.Empty() {
		return 0, nil
	}
	var h *netlink.Handle
	var err error
	if c.NetNSFd != 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(c.NetNSFd), unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return 0, fmt.Errorf("open conntrack netlink socket: %w", err)
	}
	defer h.Delete()
	n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, flowMatcher{s})
	if err != nil {
		return int(n), fmt.Errorf("delete stale UDP conntrack entries: %w", err)
	}
	return int(n), nil
}

// flowMatcher adapts StaleUDPFlows to netlink's filter interface.
type flowMatcher struct{ s StaleUDPFlows }

func (m flowMatcher) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if f.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok := netip.AddrFromSlice(f.Forward.DstIP)
	if !ok {
		return false
	}
	replySrc, ok := netip.AddrFromSlice(f.Reverse.SrcIP)
	if !ok {
		return false
	}
	return m.s.Matches(netip.AddrPortFrom(dst.Unmap(), f.Forward.DstPort), replySrc.Unmap())
}
