package podnet

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/internal/netnstest"
	"github.com/orch-dev/orch/netproxy/nftwatch"
	"github.com/orch-dev/orch/netproxy/proxy"
)

// The test network: "nodes" on one L2 segment (198.18.0.0/24) or behind
// a router, pods from 198.19.0.0/16. Everything lives in namespaces the
// test makes (netnstest), never in the test process's own.
var (
	testClusterCIDR = netip.MustParsePrefix("198.19.0.0/16")
	testNodeNet     = 24
)

// newNetns makes a namespace (lo up, removed when the test ends) with
// netnstest and opens it for netlink.
func newNetns(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	ns := netnstest.New(t, name)
	h, err := netns.GetFromPath(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// nsPath is a path that opens ns, as the agent passes /proc/<pid>/ns/net.
func nsPath(ns netns.NsHandle) string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns))
}

// hostState is what the test must leave as it found it in the test
// process's own namespace.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		fmt.Fprintln(&b, r.String())
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		fmt.Fprintln(&b, "link", l.Attrs().Name)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		fmt.Fprintln(&b, "table", tb.Family, tb.Name)
	}
	return b.String()
}

// testNode is one node namespace with its Network.
type testNode struct {
	name string
	ns   netns.NsHandle
	ip   netip.Addr
	cfg  Config
	net  *Network
}

// topology is how the test nodes are connected.
type topology int

const (
	// sameL2: all nodes on 198.18.0.0/24 through a bridge ("switch").
	sameL2 topology = iota
	// routed: node i alone on 198.18.<i+1>.0/24, all joined by a router,
	// which knows nothing of pod addresses.
	routed
)

// newNodes makes count nodes connected as topo, with pod networks of the
// given backend.
func newNodes(t *testing.T, count int, topo topology, backend string) []*testNode {
	t.Helper()
	mid := newNetns(t, "pn-mid") // the switch or router
	mh, err := netlink.NewHandleAt(mid)
	if err != nil {
		t.Fatal(err)
	}
	defer mh.Close()
	var master netlink.Link
	if topo == sameL2 {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "sw"
		if err := mh.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			t.Fatal(err)
		}
		master, _ = mh.LinkByName("sw")
		if err := mh.LinkSetUp(master); err != nil {
			t.Fatal(err)
		}
	} else if err := inNetNS(mid, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	var nodes []*testNode
	for i := range count {
		n := &testNode{name: fmt.Sprintf("node-%d", i)}
		n.ns = newNetns(t, "pn-"+n.name)
		var routerIP netip.Addr
		if topo == sameL2 {
			n.ip = netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)})
		} else {
			n.ip = netip.AddrFrom4([4]byte{198, 18, byte(i + 1), 1})
			routerIP = netip.AddrFrom4([4]byte{198, 18, byte(i + 1), 254})
		}
		la := netlink.NewLinkAttrs()
		la.Name = fmt.Sprintf("port%d", i)
		if master != nil {
			la.MasterIndex = master.Attrs().Index
		}
		if err := mh.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "uplink", PeerNamespace: netlink.NsFd(int(n.ns))}); err != nil {
			t.Fatal(err)
		}
		port, _ := mh.LinkByName(la.Name)
		if routerIP.IsValid() {
			if err := mh.AddrAdd(port, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(routerIP, testNodeNet))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := mh.LinkSetUp(port); err != nil {
			t.Fatal(err)
		}
		nh, err := netlink.NewHandleAt(n.ns)
		if err != nil {
			t.Fatal(err)
		}
		up, _ := nh.LinkByName("uplink")
		if err := nh.AddrAdd(up, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.ip, testNodeNet))}); err != nil {
			t.Fatal(err)
		}
		if err := nh.LinkSetUp(up); err != nil {
			t.Fatal(err)
		}
		if routerIP.IsValid() {
			// Only the test range goes to the router: no default route.
			r := &netlink.Route{Dst: prefixNet(netip.MustParsePrefix("198.18.0.0/16")), Gw: routerIP.AsSlice(), LinkIndex: up.Attrs().Index}
			if err := nh.RouteAdd(r); err != nil {
				t.Fatal(err)
			}
		}
		nh.Close()
		n.cfg = Config{
			PodCIDR:     netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i + 1), 0}), 24),
			ClusterCIDR: testClusterCIDR,
			StateDir:    filepath.Join(t.TempDir(), n.name),
			NetNS:       n.ns,
			Backend:     backend,
			NodeIP:      n.ip,
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		n.start(t)
		nodes = append(nodes, n)
	}
	return nodes
}

// start builds and initialises the node's Network (again, for restarts).
func (n *testNode) start(t *testing.T) {
	t.Helper()
	if n.net != nil {
		n.net.Close()
	}
	nw, err := New(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nw.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	n.net = nw
}

type testPod struct {
	pod *v1.Pod
	ns  netns.NsHandle
	ip  string
}

func (n *testNode) addPod(t *testing.T, name string) *testPod {
	t.Helper()
	p := &testPod{
		pod: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)}},
		ns:  newNetns(t, "pn-pod-"+name),
	}
	ip, err := n.net.Setup(context.Background(), p.pod, nsPath(p.ns))
	if err != nil {
		t.Fatalf("setup %s: %v", name, err)
	}
	if !n.cfg.PodCIDR.Contains(netip.MustParseAddr(ip)) {
		t.Fatalf("pod %s got %s, outside the node's %s", name, ip, n.cfg.PodCIDR)
	}
	p.ip = ip
	return p
}

// serve answers every TCP connection on port in ns with the peer's
// address as the server sees it.
func serve(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNetNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = c.Write([]byte(host))
			c.Close()
		}
	}()
}

// fetch connects from ns and returns what the server said (the client
// address it saw).
func fetch(ns netns.NsHandle, addr string) (string, error) {
	var c net.Conn
	if err := inNetNS(ns, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestPodNetworkE2E(t *testing.T) {
	netnstest.Skip(t)
	before := hostState(t)
	t.Cleanup(func() {
		if after := hostState(t); after != before {
			t.Errorf("the host namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	nodes := newNodes(t, 2, sameL2, BackendHostGW)
	n0, n1 := nodes[0], nodes[1]
	a := n0.addPod(t, "a")
	b := n0.addPod(t, "b")
	c := n1.addPod(t, "c")
	if a.ip != "198.19.1.2" || b.ip != "198.19.1.3" || c.ip != "198.19.2.2" {
		t.Fatalf("pod addresses %s %s %s", a.ip, b.ip, c.ip)
	}

	// The pod's link: MAC from the address, the node's MTU, default route.
	ph, err := netlink.NewHandleAt(a.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if got := eth0.Attrs().HardwareAddr.String(); got != "0a:58:c6:13:01:02" {
		t.Errorf("pod MAC = %s, want 0a:58:c6:13:01:02", got)
	}
	if eth0.Attrs().MTU != 1500 || n0.net.cfg.MTU != 1500 {
		t.Errorf("pod MTU = %d, node's %d", eth0.Attrs().MTU, n0.net.cfg.MTU)
	}

	// Same node: pod to pod keeps the source address.
	serve(t, b.ns, b.ip+":8080")
	if got, err := fetch(a.ns, b.ip+":8080"); err != nil || got != a.ip {
		t.Errorf("a → b on one node: %q, %v; want the server to see %s", got, err, a.ip)
	}
	// The node reaches its pods through the bridge.
	if got, err := fetch(n0.ns, b.ip+":8080"); err != nil || got != "198.19.1.1" {
		t.Errorf("node → b: %q, %v; want 198.19.1.1", got, err)
	}

	// Across nodes once routes exist (host-gw), still without NAT.
	peers := []Peer{
		{Name: n0.name, PodCIDR: n0.cfg.PodCIDR, NodeIP: n0.ip},
		{Name: n1.name, PodCIDR: n1.cfg.PodCIDR, NodeIP: n1.ip},
	}
	for _, n := range nodes {
		if err := n.net.SyncRoutes(peers); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	serve(t, c.ns, c.ip+":8080")
	if got, err := fetch(a.ns, c.ip+":8080"); err != nil || got != a.ip {
		t.Errorf("a → c across nodes: %q, %v; want the server to see %s", got, err, a.ip)
	}

	// Leaving the cluster CIDR is masqueraded to the node's address.
	serve(t, n1.ns, n1.ip.String()+":9090")
	if got, err := fetch(a.ns, n1.ip.String()+":9090"); err != nil || got != n0.ip.String() {
		t.Errorf("a → node-1: %q, %v; want the server to see %s", got, err, n0.ip)
	}

	// The masquerade table comes back when someone deletes it.
	w := &proxy.NFTables{NetNSFd: int(n0.ns)}
	if err := w.Delete(n0.net.cfg.Table); err != nil {
		t.Fatal(err)
	}
	if got, err := fetch(a.ns, n1.ip.String()+":9090"); err != nil || got != a.ip {
		t.Errorf("a → node-1 without the masquerade table: %q, %v; want the pod's own %s", got, err, a.ip)
	}
	// Started after the deletion, the keeper learns of it from the
	// watcher's first report (events before the subscription are lost);
	// afterwards another program's deletion or flush is an event.
	ctx, stop := context.WithCancel(context.Background())
	tables := nftwatch.New(nftwatch.Options{NetNSFd: int(n0.ns)})
	var kept sync.WaitGroup
	kept.Go(func() { _ = tables.Run(ctx) })
	kept.Go(func() { n0.net.KeepMasquerade(ctx, tables) })
	masqueraded := func(step string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := fetch(a.ns, n1.ip.String()+":9090")
			if err == nil && got == n0.ip.String() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("a → node-1 %s: %q, %v; want %s (the masquerade table did not come back)", step, got, err, n0.ip)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	masqueraded("after the keeper started")
	for _, args := range [][]string{
		{"delete", "table", "ip", n0.net.cfg.Table},
		{"flush", "table", "ip", n0.net.cfg.Table},
		{"flush", "ruleset"},
	} {
		cmd := append([]string{"--net=" + nsPath(n0.ns), "nft"}, args...)
		if out, err := exec.Command("nsenter", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
		masqueraded("after nft " + strings.Join(args, " "))
	}
	stop()
	kept.Wait()

	// Setup is idempotent, and a restarted agent gives the same addresses.
	if ip, err := n0.net.Setup(context.Background(), a.pod, nsPath(a.ns)); err != nil || ip != a.ip {
		t.Errorf("second Setup of a = %s, %v; want %s", ip, err, a.ip)
	}
	n0.start(t)
	if ip, err := n0.net.Setup(context.Background(), b.pod, nsPath(b.ns)); err != nil || ip != b.ip {
		t.Errorf("Setup of b after a restart = %s, %v; want %s", ip, err, b.ip)
	}
	if got, err := fetch(a.ns, b.ip+":8080"); err != nil || got != a.ip {
		t.Errorf("a → b after a restart: %q, %v", got, err)
	}

	// A node that goes away loses its route.
	if err := n0.net.SyncRoutes(peers[:1]); err != nil {
		t.Fatal(err)
	}
	nh, _ := netlink.NewHandleAt(n0.ns)
	defer nh.Close()
	ours, _ := nh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if len(ours) != 0 {
		t.Errorf("routes left after the peer went: %v", ours)
	}

	// Teardown leaves no veth and no address behind, and tolerates a
	// second call and a namespace that is gone.
	for _, p := range []*testPod{a, b} {
		if err := n0.net.Teardown(context.Background(), p.pod, nsPath(p.ns)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n0.net.Teardown(context.Background(), a.pod, "/nonexistent"); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	links, _ := nh.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "veth") {
			t.Errorf("link %s left after teardown", l.Attrs().Name)
		}
	}
	var files []string
	_ = filepath.WalkDir(filepath.Join(n0.cfg.StateDir, "ipam"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != lastReservedFile {
			files = append(files, d.Name())
		}
		return nil
	})
	if len(files) != 0 {
		t.Errorf("address files left after teardown: %v", files)
	}
}

func TestReleaseUnknown(t *testing.T) {
	netnstest.Skip(t)
	n := newNodes(t, 1, sameL2, BackendHostGW)[0]
	keep := n.addPod(t, "keep")
	gone := n.addPod(t, "gone")
	released := n.net.ReleaseUnknown(map[string]bool{string(keep.pod.UID): true})
	if !slices.Equal(released, []string{string(gone.pod.UID)}) {
		t.Errorf("released %v", released)
	}
	if _, ok := n.net.ipam.lookup(string(gone.pod.UID)); ok {
		t.Error("the gone pod still has an address")
	}
	if ip, _ := n.net.Setup(context.Background(), keep.pod, nsPath(keep.ns)); ip != keep.ip {
		t.Errorf("kept pod's address changed to %s", ip)
	}
}

// TestVXLAN: nodes behind a router that knows nothing of pod addresses
// reach each other's pods through the VXLAN device, without NAT, with
// the backend forced (vxlan) or chosen per peer (auto).
func TestVXLAN(t *testing.T) {
	netnstest.Skip(t)
	for _, backend := range []string{BackendVXLAN, BackendAuto} {
		t.Run(backend, func(t *testing.T) {
			nodes := newNodes(t, 2, routed, backend)
			n0, n1 := nodes[0], nodes[1]
			a, c := n0.addPod(t, "a"), n1.addPod(t, "c")
			peers := []Peer{
				{Name: n0.name, PodCIDR: n0.cfg.PodCIDR, NodeIP: n0.ip},
				{Name: n1.name, PodCIDR: n1.cfg.PodCIDR, NodeIP: n1.ip},
			}
			for _, n := range nodes {
				if err := n.net.SyncRoutes(peers); err != nil {
					t.Fatalf("%s: %v", n.name, err)
				}
			}
			ph, err := netlink.NewHandleAt(a.ns)
			if err != nil {
				t.Fatal(err)
			}
			defer ph.Close()
			if eth0, err := ph.LinkByName("eth0"); err != nil || eth0.Attrs().MTU != 1450 {
				t.Errorf("pod MTU with vxlan: %v, %v; want 1450", eth0, err)
			}
			serve(t, c.ns, c.ip+":8080")
			if got, err := fetch(a.ns, c.ip+":8080"); err != nil || got != a.ip {
				t.Errorf("a → c over vxlan: %q, %v; want the server to see %s", got, err, a.ip)
			}
			// A restarted agent keeps the device; a gone peer's entries go.
			n0.start(t)
			if err := n0.net.SyncRoutes(peers[:1]); err != nil {
				t.Fatal(err)
			}
			nh, _ := netlink.NewHandleAt(n0.ns)
			defer nh.Close()
			vx, err := nh.LinkByName(vxlanDevice)
			if err != nil {
				t.Fatal(err)
			}
			if arps, _ := nh.NeighList(vx.Attrs().Index, unix.AF_INET); len(arps) != 0 {
				t.Errorf("arp entries left: %v", arps)
			}
			if ours, _ := nh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL); len(ours) != 0 {
				t.Errorf("routes left: %v", ours)
			}
		})
	}
}

func TestHostGWReportsUnreachablePeers(t *testing.T) {
	netnstest.Skip(t)
	nodes := newNodes(t, 2, routed, BackendHostGW)
	err := nodes[0].net.SyncRoutes([]Peer{{Name: nodes[1].name, PodCIDR: nodes[1].cfg.PodCIDR, NodeIP: nodes[1].ip}})
	if err == nil || !strings.Contains(err.Error(), "behind a router") {
		t.Errorf("SyncRoutes to a routed peer with host-gw: %v", err)
	}
}
