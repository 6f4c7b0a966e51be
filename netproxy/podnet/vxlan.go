package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Backends: how traffic reaches other nodes' pods.
const (
	// BackendHostGW routes a peer's podCIDR via its address; every node
	// must be on one L2 network.
	BackendHostGW = "host-gw"
	// BackendVXLAN encapsulates all pod traffic between nodes.
	BackendVXLAN = "vxlan"
	// BackendAuto uses host-gw for peers on a directly connected network
	// and VXLAN for the others.
	BackendAuto = "auto"
)

// VXLAN settings, flannel's, so firewalls written for k3s fit orch.
const (
	vxlanDevice = "orch.1"
	vxlanVNI    = 1
	vxlanPort   = 8472
	// vxlanOverhead is what encapsulation adds: outer IPv4, UDP, VXLAN
	// and Ethernet headers.
	vxlanOverhead = 50
)

// vtepMAC is the VXLAN device's MAC of the node owning podCIDR, derived
// from the subnet's first address so that peers need no annotation to
// learn it (pods' MACs come from .2 up, the bridge's from .1).
func vtepMAC(podCIDR netip.Prefix) net.HardwareAddr { return macFor(podCIDR.Masked().Addr()) }

// usesVXLAN reports whether the backend may encapsulate.
func (n *Network) usesVXLAN() bool { return n.cfg.Backend != BackendHostGW }

// uplink returns the link holding the node's address.
func (n *Network) uplink() (netlink.Link, error) {
	addrs, err := n.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == n.cfg.NodeIP {
			return n.nl.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no link holds the node address %s", n.cfg.NodeIP)
}

// ensureVXLAN makes the VXLAN device: VNI 1 on UDP 8472, from the node's
// address, no learning (podnet writes the forwarding entries), holding
// the podCIDR's first address as flannel does.
func (n *Network) ensureVXLAN(up netlink.Link) error {
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: vxlanDevice, MTU: n.cfg.MTU, HardwareAddr: vtepMAC(n.cfg.PodCIDR)},
		VxlanId:      vxlanVNI,
		VtepDevIndex: up.Attrs().Index,
		SrcAddr:      n.cfg.NodeIP.AsSlice(),
		Port:         vxlanPort,
		Learning:     false,
	}
	if l, err := n.nl.LinkByName(vxlanDevice); err == nil {
		if v, ok := l.(*netlink.Vxlan); ok && v.VxlanId == want.VxlanId && v.Port == want.Port &&
			v.SrcAddr.Equal(want.SrcAddr) && v.VtepDevIndex == want.VtepDevIndex &&
			v.HardwareAddr.String() == want.HardwareAddr.String() && v.MTU == want.MTU {
			return n.vxlanUp(l)
		}
		// Made for another address, uplink or subnet: start over.
		if err := n.nl.LinkDel(l); err != nil {
			return fmt.Errorf("podnet: replace %s: %w", vxlanDevice, err)
		}
	}
	if err := n.nl.LinkAdd(want); err != nil {
		return fmt.Errorf("podnet: create %s: %w", vxlanDevice, err)
	}
	l, err := n.nl.LinkByName(vxlanDevice)
	if err != nil {
		return fmt.Errorf("podnet: find %s: %w", vxlanDevice, err)
	}
	return n.vxlanUp(l)
}

func (n *Network) vxlanUp(l netlink.Link) error {
	addr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.cfg.PodCIDR.Masked().Addr(), 32))}
	if err := n.nl.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("podnet: address %s on %s: %w", addr.IPNet, vxlanDevice, err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("podnet: set %s up: %w", vxlanDevice, err)
	}
	return nil
}

// vxlanPeer is what one peer needs on the VXLAN device: an ARP entry for
// its VTEP address, a forwarding entry sending that MAC to its node, and
// the route to its podCIDR through the device.
type vxlanPeer struct {
	podCIDR netip.Prefix
	nodeIP  netip.Addr
}

// syncVXLAN writes the entries of peers and removes stale ones. It
// returns the routes to install.
func (n *Network) syncVXLAN(peers []vxlanPeer) (map[string]netlink.Route, error) {
	l, err := n.nl.LinkByName(vxlanDevice)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", vxlanDevice, err)
	}
	idx := l.Attrs().Index
	routes := map[string]netlink.Route{}
	wantARP := map[string]bool{}
	wantFDB := map[string]bool{}
	var errs []error
	for _, p := range peers {
		vtep := p.podCIDR.Masked().Addr()
		mac := vtepMAC(p.podCIDR)
		arp := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: vtep.AsSlice(), HardwareAddr: mac}
		if err := n.nl.NeighSet(arp); err != nil {
			errs = append(errs, fmt.Errorf("arp entry %s on %s: %w", vtep, vxlanDevice, err))
			continue
		}
		fdb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: p.nodeIP.AsSlice(), HardwareAddr: mac}
		if err := n.nl.NeighSet(fdb); err != nil {
			errs = append(errs, fmt.Errorf("fdb entry %s → %s: %w", mac, p.nodeIP, err))
			continue
		}
		wantARP[vtep.String()] = true
		wantFDB[mac.String()+" "+p.nodeIP.String()] = true
		dst := p.podCIDR.Masked()
		routes[dst.String()] = netlink.Route{
			Dst: prefixNet(dst), Gw: vtep.AsSlice(), LinkIndex: idx,
			Flags: int(netlink.FLAG_ONLINK), Protocol: routeProtocol,
		}
	}
	// Entries of peers that are gone.
	if arps, err := n.nl.NeighList(idx, unix.AF_INET); err == nil {
		for _, e := range arps {
			if e.State&netlink.NUD_PERMANENT != 0 && !wantARP[e.IP.String()] {
				if err := n.nl.NeighDel(&e); err != nil {
					errs = append(errs, fmt.Errorf("remove arp entry %s: %w", e.IP, err))
				}
			}
		}
	}
	if fdbs, err := n.nl.NeighList(idx, unix.AF_BRIDGE); err == nil {
		for _, e := range fdbs {
			if e.IP == nil || e.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			if !wantFDB[e.HardwareAddr.String()+" "+e.IP.String()] {
				if err := n.nl.NeighDel(&e); err != nil {
					errs = append(errs, fmt.Errorf("remove fdb entry %s: %w", e.HardwareAddr, err))
				}
			}
		}
	}
	return routes, errors.Join(errs...)
}
