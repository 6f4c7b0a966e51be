// Package podnet is the node's pod network, what flannel's bridge and
// host-gw backends do for k3s: a bridge (orch0) holding the first address
// of the node's podCIDR, one veth pair per pod (the pod's end is eth0 in
// its network namespace, with an address from the podCIDR and a MAC
// derived from it), routes to the other nodes' podCIDRs, masquerading of
// pod traffic that leaves the cluster CIDR, and the sysctls all that
// needs (ip_forward, bridge-nf-call-iptables).
//
// Addresses are recorded on disk (see ipam) before they are used, one per
// pod UID, so a restarted agent gives a pod its address back and a torn
// down pod leaves nothing behind.
//
// Masquerading lives in its own nftables table, "ip orch-podnet", beside
// the service proxy's "ip orch" (netproxy/proxy), which this package never
// touches; it reuses that package's rule representation and writer.
//
// The package changes only the network namespace it is given (Config.
// NetNS) and the pods' namespaces; hostNetwork pods are not its business
// (the agent never calls it for them). It never talks to the API server.
package podnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/netproxy/proxy"
)

// Defaults.
const (
	DefaultBridge = "orch0"
	DefaultTable  = "orch-podnet"
	// podInterface is the pod's end of its veth pair.
	podInterface = "eth0"
	defaultMTU   = 1500
)

// Config describes the node's pod network.
type Config struct {
	// PodCIDR is this node's subnet (the Node's spec.podCIDR).
	PodCIDR netip.Prefix
	// ClusterCIDR is the whole pod network; traffic from pods to
	// anywhere outside it is masqueraded.
	ClusterCIDR netip.Prefix
	// StateDir keeps the address allocations (DataDir/agent/podnet).
	StateDir string
	// Bridge is the bridge's name; DefaultBridge if empty.
	Bridge string
	// Backend is how pods reach other nodes' pods: BackendHostGW,
	// BackendVXLAN or BackendAuto (the default).
	Backend string
	// NodeIP is the node's InternalIP: the VXLAN source address, and its
	// link is the uplink. Required unless Backend is BackendHostGW.
	NodeIP netip.Addr
	// MTU of the bridge and the pods' links; default: the uplink's MTU
	// (the link of NodeIP, else of the default route, else 1500), less
	// the VXLAN overhead when the backend may encapsulate.
	MTU int
	// NetNS is an open handle of the namespace holding the node's links
	// (a test's "node"); 0 means the caller's own namespace.
	NetNS netns.NsHandle
	// Table is the nftables table of the masquerade rules; DefaultTable
	// if empty.
	Table  string
	Logger *slog.Logger
}

// Network is the pod network of one node. It implements the agent's
// PodNetwork. Build it with New and call Init before Setup.
type Network struct {
	cfg     Config
	log     *slog.Logger
	ipam    *ipam
	gateway netip.Addr

	// mu serialises changes to links, addresses and routes: a netlink
	// Handle is not safe for concurrent use.
	mu sync.Mutex
	nl *netlink.Handle
}

// New checks cfg and loads the allocation state; it does not touch the
// kernel.
func New(cfg Config) (*Network, error) {
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	switch cfg.Backend {
	case "":
		cfg.Backend = BackendAuto
	case BackendHostGW, BackendVXLAN, BackendAuto:
	default:
		return nil, fmt.Errorf("podnet: unknown backend %q (want %s, %s or %s)", cfg.Backend, BackendHostGW, BackendVXLAN, BackendAuto)
	}
	if cfg.Backend != BackendHostGW && !cfg.NodeIP.Is4() {
		return nil, fmt.Errorf("podnet: the %s backend needs the node's IPv4 address", cfg.Backend)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.PodCIDR.IsValid() {
		return nil, errors.New("podnet: the node has no podCIDR")
	}
	if !cfg.ClusterCIDR.IsValid() || !cfg.ClusterCIDR.Contains(cfg.PodCIDR.Addr()) || cfg.ClusterCIDR.Bits() > cfg.PodCIDR.Bits() {
		return nil, fmt.Errorf("podnet: podCIDR %s is not inside the cluster CIDR %s", cfg.PodCIDR, cfg.ClusterCIDR)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("podnet: no state directory")
	}
	m, err := openIPAM(filepath.Join(cfg.StateDir, "ipam"), cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("podnet: %w", err)
	}
	return &Network{cfg: cfg, log: cfg.Logger, ipam: m, gateway: m.gateway}, nil
}

// Gateway is the bridge's address, the pods' default gateway.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// Init makes the node side: sysctls, the bridge with the gateway address,
// and the masquerade table. It is idempotent (an agent restart runs it
// over the existing bridge without disturbing running pods).
func (n *Network) Init(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl == nil {
		h, err := n.handle()
		if err != nil {
			return err
		}
		n.nl = h
	}
	var up netlink.Link
	if n.cfg.NodeIP.IsValid() {
		l, err := n.uplink()
		if err != nil && n.usesVXLAN() {
			return fmt.Errorf("podnet: %w", err)
		}
		up = l
	}
	if n.cfg.MTU == 0 {
		n.cfg.MTU = defaultRouteMTU(n.nl)
		if up != nil && up.Attrs().MTU > 0 {
			n.cfg.MTU = up.Attrs().MTU
		}
		if n.usesVXLAN() {
			n.cfg.MTU -= vxlanOverhead
		}
	}
	if err := n.setSysctls(); err != nil {
		return err
	}
	if err := n.ensureBridge(); err != nil {
		return err
	}
	if n.usesVXLAN() {
		if err := n.ensureVXLAN(up); err != nil {
			return err
		}
	}
	if err := n.writeMasquerade(); err != nil {
		return err
	}
	n.log.Info("pod network ready", "bridge", n.cfg.Bridge, "gateway", n.gateway, "podCIDR", n.cfg.PodCIDR, "mtu", n.cfg.MTU, "backend", n.cfg.Backend)
	return nil
}

// Close releases the netlink handle. Links, routes and rules stay: pods
// keep running while the agent is down.
func (n *Network) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
}

func (n *Network) handle() (*netlink.Handle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if n.cfg.NetNS != 0 {
		h, err = netlink.NewHandleAt(n.cfg.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("podnet: netlink: %w", err)
	}
	return h, nil
}

// sysctls the pod network needs in the node's namespace. Forwarding
// routes pod traffic; bridge-nf-call-iptables sends bridged (pod to pod
// on this node) packets through the ip hooks, where conntrack undoes the
// service proxy's DNAT on replies.
var nodeSysctls = []struct{ path, value string }{
	{"net/ipv4/ip_forward", "1"},
	{"net/bridge/bridge-nf-call-iptables", "1"},
}

func (n *Network) setSysctls() error {
	return inNetNS(n.cfg.NetNS, func() error {
		for _, s := range nodeSysctls {
			p := filepath.Join("/proc/sys", s.path)
			if cur, err := os.ReadFile(p); err == nil && string(cur) == s.value+"\n" {
				continue
			}
			if err := os.WriteFile(p, []byte(s.value), 0o644); err != nil {
				return fmt.Errorf("podnet: sysctl %s=%s: %w", s.path, s.value, err)
			}
		}
		return nil
	})
}

// ensureBridge creates the bridge if needed and gives it the gateway
// address and a MAC derived from it (stable across restarts, so pods'
// ARP caches stay right).
func (n *Network) ensureBridge() error {
	br, err := n.nl.LinkByName(n.cfg.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("podnet: find bridge %s: %w", n.cfg.Bridge, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.cfg.Bridge
		attrs.MTU = n.cfg.MTU
		attrs.HardwareAddr = macFor(n.gateway)
		if err := n.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("podnet: create bridge %s: %w", n.cfg.Bridge, err)
		}
		if br, err = n.nl.LinkByName(n.cfg.Bridge); err != nil {
			return fmt.Errorf("podnet: find bridge %s: %w", n.cfg.Bridge, err)
		}
	} else if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("podnet: %s exists and is a %s, not a bridge", n.cfg.Bridge, br.Type())
	}
	addr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.gateway, n.cfg.PodCIDR.Bits()))}
	if err := n.nl.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("podnet: address %s on %s: %w", addr.IPNet, n.cfg.Bridge, err)
	}
	if err := n.nl.LinkSetUp(br); err != nil {
		return fmt.Errorf("podnet: set %s up: %w", n.cfg.Bridge, err)
	}
	return nil
}

// masqueradeRules: pod to pod traffic keeps its source address, traffic
// from pods to anywhere else leaves with the node's (flannel's rules).
func (n *Network) masqueradeRules() *proxy.Ruleset {
	cluster := n.cfg.ClusterCIDR.Masked()
	multicast := netip.MustParsePrefix("224.0.0.0/4")
	ret := proxy.VerdictStmt{Verdict: proxy.Verdict{Kind: proxy.VerdictReturn}}
	return &proxy.Ruleset{
		Table: n.cfg.Table,
		Chains: []*proxy.Chain{{
			Name: "postrouting",
			Hook: &proxy.Hook{Type: proxy.ChainTypeNAT, Point: proxy.HookPostrouting, Priority: 100},
			Rules: []proxy.Rule{
				{proxy.MatchAddr{Field: proxy.SourceAddr, Prefix: cluster}, proxy.MatchAddr{Field: proxy.DestAddr, Prefix: cluster}, ret},
				{proxy.MatchAddr{Field: proxy.SourceAddr, Prefix: cluster}, proxy.MatchAddr{Field: proxy.DestAddr, Prefix: multicast}, ret},
				{proxy.MatchAddr{Field: proxy.SourceAddr, Prefix: cluster}, proxy.Masquerade{}},
			},
		}},
	}
}

func (n *Network) writeMasquerade() error {
	w := &proxy.NFTables{NetNSFd: int(n.cfg.NetNS)}
	if err := w.Apply(n.masqueradeRules()); err != nil {
		return fmt.Errorf("podnet: masquerade rules: %w", err)
	}
	return nil
}

// KeepMasquerade keeps the masquerade table Init wrote in place until ctx
// ends: when tables reports that another program deleted or changed it
// (`nft flush ruleset`), it writes the table again, as the service proxy
// does with its own (see proxy.SyncLoop). Without it pods' traffic would
// leave the node with their pod addresses.
func (n *Network) KeepMasquerade(ctx context.Context, tables proxy.TableWatcher) {
	w := &proxy.NFTables{NetNSFd: int(n.cfg.NetNS)}
	loop := proxy.NewSyncLoop(w, n.cfg.Table, proxy.LoopOptions{Tables: tables})
	_ = loop.Run(ctx, func() (bool, error) {
		if err := w.Apply(n.masqueradeRules()); err != nil {
			n.log.Error("cannot restore the pod masquerade table", "table", n.cfg.Table, "err", err)
			return true, err
		}
		n.log.Warn("restored the pod masquerade table, which another program deleted or changed", "table", n.cfg.Table)
		return true, nil
	})
}

// vethName is the host end of a pod's veth pair, from its UID: stable,
// so a restarted agent finds it, and at most 15 bytes (IFNAMSIZ).
func vethName(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return "veth" + hex.EncodeToString(sum[:4])
}

// macFor derives a locally administered unicast MAC from an IPv4 address
// (0a:58:a.b.c.d, as the CNI plugins and kubenet do): a reused address
// gets the same MAC, so stale ARP entries on peers stay correct.
func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// defaultRouteMTU is the MTU of the link the default route uses, so pods
// never send packets the uplink cannot carry.
func defaultRouteMTU(h *netlink.Handle) int {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return defaultMTU
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
			return l.Attrs().MTU
		}
	}
	return defaultMTU
}

// Setup gives the pod its address and wires its namespace to the bridge.
// Called again for a namespace it already wired (an agent restart), it
// checks the wiring and returns the same address.
func (n *Network) Setup(ctx context.Context, pod *v1.Pod, netnsPath string) (string, error) {
	uid := string(pod.UID)
	ip, err := n.ipam.allocate(uid)
	if err != nil {
		return "", fmt.Errorf("podnet: address for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := n.wire(uid, ip, netnsPath); err != nil {
		return "", fmt.Errorf("podnet: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return ip.String(), nil
}

func (n *Network) wire(uid string, ip netip.Addr, netnsPath string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl == nil {
		return errors.New("the pod network is not initialised")
	}
	br, err := n.nl.LinkByName(n.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", n.cfg.Bridge, err)
	}
	podNS, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer podNS.Close()
	ph, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	defer ph.Close()

	host := vethName(uid)
	podAddr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(ip, n.cfg.PodCIDR.Bits()))}
	if n.wired(ph, br, host, podAddr) {
		return nil
	}
	// Start over: an old pair (a previous sandbox of the pod, or a
	// half-made one) goes, deleting either end deletes both.
	if l, err := n.nl.LinkByName(host); err == nil {
		if err := n.nl.LinkDel(l); err != nil {
			return fmt.Errorf("remove old %s: %w", host, err)
		}
	}
	if l, err := ph.LinkByName(podInterface); err == nil {
		if err := ph.LinkDel(l); err != nil {
			return fmt.Errorf("remove old %s: %w", podInterface, err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = host
	attrs.MTU = n.cfg.MTU
	attrs.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         podInterface,
		PeerNamespace:    netlink.NsFd(int(podNS)),
		PeerHardwareAddr: macFor(ip),
	}
	if err := n.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", host, err)
	}
	hl, err := n.nl.LinkByName(host)
	if err != nil {
		return fmt.Errorf("find %s: %w", host, err)
	}
	// Hairpin lets a pod reach itself through a Service (the packet goes
	// back out of the port it came in on).
	if err := n.nl.LinkSetHairpin(hl, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", host, err)
	}
	if err := n.nl.LinkSetUp(hl); err != nil {
		return fmt.Errorf("set %s up: %w", host, err)
	}
	pl, err := ph.LinkByName(podInterface)
	if err != nil {
		return fmt.Errorf("find %s in the pod: %w", podInterface, err)
	}
	if err := ph.AddrAdd(pl, podAddr); err != nil {
		return fmt.Errorf("address %s on %s: %w", podAddr.IPNet, podInterface, err)
	}
	if err := ph.LinkSetUp(pl); err != nil {
		return fmt.Errorf("set %s up: %w", podInterface, err)
	}
	def := &netlink.Route{LinkIndex: pl.Attrs().Index, Gw: n.gateway.AsSlice(), Dst: prefixNet(netip.MustParsePrefix("0.0.0.0/0"))}
	if err := ph.RouteReplace(def); err != nil {
		return fmt.Errorf("default route via %s: %w", n.gateway, err)
	}
	return nil
}

// wired reports whether the pod's namespace already has its eth0 with
// addr and a default route, and the host end is up on the bridge.
func (n *Network) wired(ph *netlink.Handle, br netlink.Link, host string, addr *netlink.Addr) bool {
	hl, err := n.nl.LinkByName(host)
	if err != nil || hl.Attrs().MasterIndex != br.Attrs().Index || hl.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	pl, err := ph.LinkByName(podInterface)
	if err != nil || pl.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := ph.AddrList(pl, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	found := false
	for _, a := range addrs {
		if a.IPNet.String() == addr.IPNet.String() {
			found = true
		}
	}
	if !found {
		return false
	}
	routes, err := ph.RouteList(pl, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(n.gateway.AsSlice()) {
			return true
		}
	}
	return false
}

// Teardown removes the pod's veth pair and frees its address. The pod's
// namespace may already be gone (its end went with it).
func (n *Network) Teardown(ctx context.Context, pod *v1.Pod, netnsPath string) error {
	uid := string(pod.UID)
	if err := n.removeVeth(uid); err != nil {
		return fmt.Errorf("podnet: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := n.ipam.release(uid); err != nil {
		return fmt.Errorf("podnet: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func (n *Network) removeVeth(uid string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl == nil {
		return errors.New("the pod network is not initialised")
	}
	l, err := n.nl.LinkByName(vethName(uid))
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %s: %w", vethName(uid), err)
	}
	if err := n.nl.LinkDel(l); err != nil {
		return fmt.Errorf("remove %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// ReleaseUnknown frees the addresses and veths of pods not in live (pod
// UIDs): pods deleted while the agent was down. The agent calls it once
// it knows every pod it runs.
func (n *Network) ReleaseUnknown(live map[string]bool) []string {
	var released []string
	for _, uid := range n.ipam.ownerList() {
		if live[uid] {
			continue
		}
		if err := n.removeVeth(uid); err != nil {
			n.log.Warn("cannot remove the veth of a gone pod", "uid", uid, "err", err)
			continue
		}
		if err := n.ipam.release(uid); err != nil {
			n.log.Warn("cannot release the address of a gone pod", "uid", uid, "err", err)
			continue
		}
		released = append(released, uid)
	}
	return released
}
