package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// routeProtocol marks the routes podnet installs (rtnetlink's protocol
// field, free for routing daemons above 4), so a resync finds and removes
// its stale routes and never touches anyone else's.
const routeProtocol netlink.RouteProtocol = 0x4f

// Peer is another node of the cluster as routing needs it.
type Peer struct {
	Name    string
	PodCIDR netip.Prefix
	// NodeIP is the node's InternalIP.
	NodeIP netip.Addr
}

// SyncRoutes makes the node's routes to other nodes' pod subnets match
// peers and removes podnet's routes (and VXLAN entries) of nodes that are
// gone. A peer on a directly connected network gets a host-gw route
// ("podCIDR via NodeIP") unless the backend is BackendVXLAN; the others go
// through the VXLAN device, or are reported as an error with BackendHostGW
// (the routable peers are still routed).
func (n *Network) SyncRoutes(peers []Peer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl == nil {
		return errors.New("podnet: the pod network is not initialised")
	}
	want := map[string]netlink.Route{}
	var vx []vxlanPeer
	var errs []error
	for _, p := range peers {
		if !p.PodCIDR.IsValid() || !p.NodeIP.Is4() || p.PodCIDR.Overlaps(n.cfg.PodCIDR) {
			continue
		}
		if n.cfg.Backend == BackendVXLAN {
			vx = append(vx, vxlanPeer{podCIDR: p.PodCIDR, nodeIP: p.NodeIP})
			continue
		}
		via, err := n.nl.RouteGet(p.NodeIP.AsSlice())
		direct := err == nil && len(via) > 0 && via[0].Gw == nil
		switch {
		case direct:
			dst := p.PodCIDR.Masked()
			want[dst.String()] = netlink.Route{
				Dst:       prefixNet(dst),
				Gw:        p.NodeIP.AsSlice(),
				LinkIndex: via[0].LinkIndex,
				Protocol:  routeProtocol,
			}
		case n.cfg.Backend == BackendAuto:
			vx = append(vx, vxlanPeer{podCIDR: p.PodCIDR, nodeIP: p.NodeIP})
		case err != nil || len(via) == 0:
			errs = append(errs, fmt.Errorf("node %s (%s): no route: %v", p.Name, p.NodeIP, err))
		default:
			errs = append(errs, fmt.Errorf("node %s (%s) is behind a router (via %s): host-gw cannot reach it, use the vxlan or auto backend", p.Name, p.NodeIP, via[0].Gw))
		}
	}
	if n.usesVXLAN() {
		routes, err := n.syncVXLAN(vx)
		if err != nil {
			errs = append(errs, err)
		}
		for k, r := range routes {
			want[k] = r
		}
	}
	have, err := n.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("podnet: list routes: %w", err)
	}
	for _, r := range have {
		w, ok := want[r.Dst.String()]
		if ok && r.Gw.Equal(w.Gw) && r.LinkIndex == w.LinkIndex && r.Flags&int(netlink.FLAG_ONLINK) == w.Flags&int(netlink.FLAG_ONLINK) {
			delete(want, r.Dst.String())
			continue
		}
		if !ok {
			if err := n.nl.RouteDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("remove route %s: %w", r.Dst, err))
			}
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r := want[k]
		if err := n.nl.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", k, net.IP(r.Gw), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("podnet: %w", errors.Join(errs...))
	}
	return nil
}
