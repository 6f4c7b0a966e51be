package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// testNet is a two-namespace network built by the e2e tests: a "node"
// namespace where the rules go and a "pod" namespace joined to it by a
// veth pair. All addresses are in 198.18.0.0/15 and both namespaces are
// unnamed, so they vanish with the test process even if it is killed.
type testNet struct {
	node, pod netns.NsHandle
	nodeIP    netip.Addr // node end of the veth
	podIP     netip.Addr
}

var (
	e2eNodeIP     = netip.MustParseAddr("198.18.1.1")
	e2ePodIP      = netip.MustParseAddr("198.18.1.2")
	e2ePodCIDR    = netip.MustParsePrefix("198.18.1.0/24")
	e2eServiceNet = netip.MustParsePrefix("198.19.0.0/24")
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and nftables")
	}
}

// inNetns runs fn on a thread switched into ns. Sockets created by fn stay
// in ns after it returns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of
		// running other goroutines in the wrong namespace.
		return errors.Join(ferr, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err = netns.New()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to original netns: %v", err)
	}
	// Closing the last fd frees the namespace with its veth and tables.
	t.Cleanup(func() { h.Close() })
	return h
}

func writeSysctl(ns netns.NsHandle, path, value string) error {
	// /proc/sys/net resolves to the namespace of the opening thread.
	return inNetns(ns, func() error { return os.WriteFile(path, []byte(value), 0o644) })
}

func setupNet(t *testing.T) *testNet {
	t.Helper()
	requireRoot(t)
	tn := &testNet{node: newNetns(t), pod: newNetns(t), nodeIP: e2eNodeIP, podIP: e2ePodIP}

	nh, err := netlink.NewHandleAt(tn.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	ph, err := netlink.NewHandleAt(tn.pod)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vpod"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(tn.pod))}
	if err := nh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	setup := func(h *netlink.Handle, name string, addr netip.Addr) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
	}
	setup(nh, "vpod", tn.nodeIP)
	setup(ph, "eth0", tn.podIP)

	// The service range is routed only inside the test namespaces: from
	// the node towards the pod link, from the pod to the node.
	svcNet := &net.IPNet{IP: e2eServiceNet.Addr().AsSlice(), Mask: net.CIDRMask(e2eServiceNet.Bits(), 32)}
	vpod, _ := nh.LinkByName("vpod")
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: vpod.Attrs().Index, Dst: svcNet}); err != nil {
		t.Fatalf("service route in node netns: %v", err)
	}
	eth0, _ := ph.LinkByName("eth0")
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: svcNet, Gw: tn.nodeIP.AsSlice()}); err != nil {
		t.Fatalf("service route in pod netns: %v", err)
	}
	for path, v := range map[string]string{
		"/proc/sys/net/ipv4/ip_forward":               "1",
		"/proc/sys/net/ipv4/conf/all/route_localnet":  "1",
		"/proc/sys/net/ipv4/conf/vpod/route_localnet": "1",
	} {
		if err := writeSysctl(tn.node, path, v); err != nil {
			t.Fatalf("sysctl %s: %v", path, err)
		}
	}
	return tn
}

// serve runs a TCP server in the pod namespace that writes name to every
// connection.
func (tn *testNet) serve(t *testing.T, port uint16, name string) {
	t.Helper()
	var ln net.Listener
	err := inNetns(tn.pod, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(tn.podIP, port).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in pod netns: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
}

// get connects from ns to addr and returns what the server wrote.
func get(ns netns.NsHandle, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		// DialTimeout creates the socket on this thread before it blocks.
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

func e2eConfig() Config {
	return Config{
		Table:              "orch-test",
		NodeName:           "node-a",
		NodeIPs:            []netip.Addr{e2eNodeIP},
		LocalhostNodePorts: true,
		ClusterCIDRs:       []netip.Prefix{e2ePodCIDR},
		ServiceCIDRs:       []netip.Prefix{e2eServiceNet},
	}
}

func TestE2EServiceProxy(t *testing.T) {
	tn := setupNet(t)
	tn.serve(t, 8080, "web-0")
	tn.serve(t, 8081, "web-1")

	w := &NFTables{NetNSFd: int(tn.node)}
	cfg := e2eConfig()
	web := svc("web", "198.19.0.10", tcpPort("http", 80, 0))
	web.Spec.Type = v1.ServiceTypeNodePort
	web.Spec.Ports[0].NodePort = 30080
	sticky := svc("sticky", "198.19.0.12", tcpPort("http", 80, 0))
	sticky.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	services := []*v1.Service{web, svc("empty", "198.19.0.11", tcpPort("http", 80, 0)), sticky}
	slices := []*discoveryv1.EndpointSlice{
		slice("web", "web-abc", "http", 8080, ep("198.18.1.2", "node-a", true)),
		slice("sticky", "sticky-abc", "http", 8080, ep("198.18.1.2", "node-a", true)),
		slice("sticky", "sticky-def", "http", 8081, ep("198.18.1.2", "node-a", true)),
	}
	rs := Build(cfg, services, slices)
	if err := w.Apply(rs); err != nil {
		t.Fatalf("apply: %v\n%s", err, rs)
	}
	// Apply twice: the second write must replace, not conflict.
	if err := w.Apply(rs); err != nil {
		t.Fatalf("second apply: %v", err)
	}

	t.Run("cluster IP from node", func(t *testing.T) {
		got, err := get(tn.node, "198.19.0.10:80", 2*time.Second)
		if err != nil || got != "web-0" {
			t.Fatalf("got %q, %v; want web-0", got, err)
		}
	})
	t.Run("node port on node IP and localhost", func(t *testing.T) {
		for _, a := range []string{"198.18.1.1:30080", "127.0.0.1:30080"} {
			got, err := get(tn.node, a, 2*time.Second)
			if err != nil || got != "web-0" {
				t.Errorf("%s: got %q, %v; want web-0", a, got, err)
			}
		}
	})
	t.Run("hairpin from the pod itself", func(t *testing.T) {
		got, err := get(tn.pod, "198.19.0.10:80", 2*time.Second)
		if err != nil || got != "web-0" {
			t.Fatalf("got %q, %v; want web-0", got, err)
		}
	})
	t.Run("no endpoints is refused at once", func(t *testing.T) {
		start := time.Now()
		_, err := get(tn.node, "198.19.0.11:80", 3*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("got %v, want connection refused", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusal took %v", d)
		}
	})
	t.Run("unallocated service IP is dropped", func(t *testing.T) {
		_, err := get(tn.node, "198.19.0.99:80", 300*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %v, want a timeout", err)
		}
	})
	t.Run("session affinity", func(t *testing.T) {
		first, err := get(tn.node, "198.19.0.12:80", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			got, err := get(tn.node, "198.19.0.12:80", 2*time.Second)
			if err != nil || got != first {
				t.Fatalf("connection %d: got %q, %v; want %q", i, got, err, first)
			}
		}
		// A rewrite keeps the affinity entries.
		if err := w.Apply(rs); err != nil {
			t.Fatal(err)
		}
		if got, err := get(tn.node, "198.19.0.12:80", 2*time.Second); err != nil || got != first {
			t.Fatalf("after rewrite: got %q, %v; want %q", got, err, first)
		}
	})
	t.Run("random balancing reaches every endpoint", func(t *testing.T) {
		rs2 := Build(cfg, services, append(slices[1:], slice("web", "web-abc", "http", 8080, ep("198.18.1.2", "node-a", true)),
			slice("web", "web-def", "http", 8081, ep("198.18.1.2", "node-a", true))))
		if err := w.Apply(rs2); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			got, err := get(tn.node, "198.19.0.10:80", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[got]++
		}
		if len(seen) != 2 {
			t.Fatalf("40 connections reached only %v", seen)
		}
	})
}

func TestE2ESyncerResyncsDeletedTable(t *testing.T) {
	tn := setupNet(t)
	tn.serve(t, 8080, "web-0")
	w := &NFTables{NetNSFd: int(tn.node)}
	cfg := e2eConfig()
	s := NewSyncer(cfg, w, SyncerOptions{MinSyncInterval: 10 * time.Millisecond, CheckInterval: 50 * time.Millisecond})
	results := s.Results()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	s.Replace([]*v1.Service{svc("web", "198.19.0.10", tcpPort("http", 80, 0))}, nil)
	waitResult(t, results)
	if _, err := get(tn.node, "198.19.0.10:80", time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("before endpoints: %v, want connection refused", err)
	}
	s.UpdateEndpointSlice(slice("web", "web-abc", "http", 8080, ep("198.18.1.2", "node-a", true)))
	waitResult(t, results)
	if got, err := get(tn.node, "198.19.0.10:80", time.Second); err != nil || got != "web-0" {
		t.Fatalf("got %q, %v", got, err)
	}

	if err := w.Delete(cfg.table()); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Exists(cfg.table()); err != nil || ok {
		t.Fatalf("after delete: exists=%v err=%v", ok, err)
	}
	waitResult(t, results)
	if ok, err := w.Exists(cfg.table()); err != nil || !ok {
		t.Fatalf("after resync: exists=%v err=%v", ok, err)
	}
	if got, err := get(tn.node, "198.19.0.10:80", time.Second); err != nil || got != "web-0" {
		t.Fatalf("after resync: got %q, %v", got, err)
	}
}

func waitResult(t *testing.T, results <-chan SyncResult) {
	t.Helper()
	select {
	case r := <-results:
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no sync within 5s")
	}
}

// BenchmarkApply measures a whole-table rewrite of 1,000 services with
// 10,000 endpoints into a scratch network namespace: the time an
// endpoint change takes to reach the kernel, less the batching delay.
func BenchmarkApply(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	var ns netns.NsHandle
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err == nil {
		ns, err = netns.New()
		if err == nil {
			err = netns.Set(orig)
		}
		orig.Close()
	}
	runtime.UnlockOSThread()
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	svcs, sls := generate(1000, 10)
	cfg := unitConfig()
	w := &NFTables{NetNSFd: int(ns)}
	b.ResetTimer()
	for b.Loop() {
		if err := w.Apply(Build(cfg, svcs, sls)); err != nil {
			b.Fatal(err)
		}
	}
}
