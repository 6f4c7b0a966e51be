package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/orch-dev/orch/netproxy/nftwatch"
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

// TestE2ESyncerResyncsDeletedTable: another program deletes the table or
// empties it with nft(8); the table watcher reports it and the Syncer
// writes the whole table again at once (no periodic check), while its own
// writes cause no further write.
func TestE2ESyncerResyncsDeletedTable(t *testing.T) {
	tn := setupNet(t)
	tn.serve(t, 8080, "web-0")
	w := &NFTables{NetNSFd: int(tn.node)}
	cfg := e2eConfig()
	s := NewSyncer(cfg, w, SyncerOptions{MinSyncInterval: 10 * time.Millisecond, Tables: startTableWatcher(t, tn.node)})
	results := s.Results()
	runSyncer(t, s)

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
	want := listTable(t, w, cfg.Table)

	for _, args := range [][]string{
		{"delete", "table", "ip", cfg.Table},
		{"flush", "table", "ip", cfg.Table}, // the table stays, its rules go
	} {
		name := "nft " + strings.Join(args, " ")
		nftIn(t, tn.node, args...)
		// Nothing changed for the Syncer: a write now is its answer to
		// the watcher's report.
		waitResult(t, results)
		if got := listTable(t, w, cfg.Table); got != want {
			t.Fatalf("after %s the table is\n%s\n\nwant\n%s", name, got, want)
		}
		if got, err := get(tn.node, "198.19.0.10:80", time.Second); err != nil || got != "web-0" {
			t.Fatalf("after %s: got %q, %v", name, got, err)
		}
	}
	// Its own writes are not reported back: a change is one write, with
	// none after it.
	s.UpdateService(svc("other", "198.19.0.11", tcpPort("http", 80, 0)))
	waitResult(t, results)
	select {
	case r := <-results:
		t.Fatalf("a write after the Syncer's own (%+v): its own change was reported as another program's", r)
	case <-time.After(500 * time.Millisecond):
	}
}

// startTableWatcher runs an nftwatch.Watcher in ns until t ends.
func startTableWatcher(t *testing.T, ns netns.NsHandle) *nftwatch.Watcher {
	t.Helper()
	tw := nftwatch.New(nftwatch.Options{NetNSFd: int(ns)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return tw
}

// nftIn runs nft(8) with args in ns, as another program would.
func nftIn(t *testing.T, ns netns.NsHandle, args ...string) {
	t.Helper()
	if err := inNetns(ns, func() error {
		// A child forked on this thread starts in its namespace.
		out, err := exec.Command("nft", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("nft %s: %v", strings.Join(args, " "), err)
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

// benchNetns returns a scratch network namespace for the benchmark.
func benchNetns(b *testing.B) netns.NsHandle {
	b.Helper()
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
	b.Cleanup(func() { ns.Close() })
	return ns
}

// reportCPU adds the process's CPU time (user and system, which includes
// the kernel's work on the netlink batch) per operation to b's output: on
// a shared machine it varies much less with load than wall time does.
func reportCPU(b *testing.B) {
	b.Helper()
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpu()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		}
	})
}

// BenchmarkApply measures a whole-table rewrite of 1,000 services with
// 10,000 endpoints into a scratch network namespace: the time an
// endpoint change takes to reach the kernel, less the batching delay.
func BenchmarkApply(b *testing.B) {
	ns := benchNetns(b)
	svcs, sls := generate(1000, 10)
	cfg := unitConfig()
	reportCPU(b)
	for b.Loop() {
		// A fresh writer has no record of the kernel's table: this is
		// the first write after an agent start.
		w := &NFTables{NetNSFd: int(ns)}
		if err := w.Apply(Build(cfg, svcs, sls)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndpointChange measures what the target is about: one
// endpoint of one of 1,000 services (10,000 endpoints) changes, and the
// rules are rebuilt (as the Syncer does, reusing unchanged Services'
// rules) and written. The batching delay is not included.
func BenchmarkEndpointChange(b *testing.B) {
	ns := benchNetns(b)
	svcs, sls := generate(1000, 10)
	bld := NewBuilder(unitConfig())
	w := &NFTables{NetNSFd: int(ns)}
	if err := w.Apply(bld.Build(svcs, sls)); err != nil {
		b.Fatal(err)
	}
	// Alternate one endpoint of svc-500 between two addresses.
	moved := slices.Clone(sls)
	moved[500] = sls[500].DeepCopy()
	moved[500].Endpoints[0].Addresses = []string{"10.42.200.200"}
	states := [][]*discoveryv1.EndpointSlice{moved, sls}
	reportCPU(b)
	for i := 0; b.Loop(); i++ {
		if err := w.Apply(bld.Build(svcs, states[i%2])); err != nil {
			b.Fatal(err)
		}
	}
}

// listTable is `nft list table` of w's table, normalised so that two
// tables with the same content compare equal whatever order their chains
// and elements were created in.
func listTable(t *testing.T, w *NFTables, table string) string {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "nft", "list", "table", "ip", table)
	// A duplicate: closing the os.File must not close the namespace's fd.
	fd, err := unix.Dup(w.NetNSFd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table %s: %v\n%s", table, err, out)
	}
	// Top-level items (sets, maps, chains) are tab-indented blocks;
	// element lists wrap over lines.
	var blocks []string
	var cur []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "\tset ") || strings.HasPrefix(line, "\tmap ") || strings.HasPrefix(line, "\tchain "):
			cur = []string{line}
		case line == "\t}":
			blocks = append(blocks, normaliseElements(strings.Join(cur, " ")))
			cur = nil
		case cur != nil:
			cur = append(cur, strings.TrimSpace(line))
		}
	}
	slices.Sort(blocks)
	return strings.Join(blocks, "\n")
}

func normaliseElements(block string) string {
	head, rest, ok := strings.Cut(block, "elements = { ")
	if !ok {
		return block
	}
	elems, tail, _ := strings.Cut(rest, " }")
	parts := strings.Split(elems, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	slices.Sort(parts)
	return head + "elements = { " + strings.Join(parts, ", ") + " }" + tail
}

// TestE2EPartialWritesMatchFullWrites applies a sequence of changes with
// partial writes and checks after each that the kernel's table is what a
// whole-table write of the same ruleset gives.
func TestE2EPartialWritesMatchFullWrites(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (apt-get install -y nftables)")
	}
	cfg := unitConfig()
	cfg.Table = "orch-test"
	partial := &NFTables{NetNSFd: int(newNetns(t))}

	svcs, sls := generate(40, 3)
	clone := func() ([]*v1.Service, []*discoveryv1.EndpointSlice) {
		return slices.Clone(svcs), slices.Clone(sls)
	}
	steps := []struct {
		name   string
		change func(svcs []*v1.Service, sls []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice)
	}{
		{"initial", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			return s, e
		}},
		{"endpoint replaced", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			e[3] = slice("svc-3", "svc-3-abc", "http", 8080, ep("10.42.9.1", "node-a", true), ep("10.42.9.2", "node-b", true))
			return s, e
		}},
		{"endpoints gone, service refuses", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			return s, slices.Delete(e, 5, 6)
		}},
		{"service deleted with its affinity sets", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			return slices.Delete(s, 7, 8), e // svc-7 has session affinity
		}},
		{"service added with affinity and node port", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			n := svc("new", "10.43.5.5", tcpPort("http", 80, 31999))
			n.Spec.Type = v1.ServiceTypeNodePort
			n.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			return append(s, n), append(e, slice("new", "new-abc", "http", 8080, ep("10.42.8.1", "node-a", true)))
		}},
		{"cluster port changed", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			c := s[1].DeepCopy()
			c.Spec.Ports[0].Port = 8081
			s[1] = c
			return s, e
		}},
		{"everything gone", func([]*v1.Service, []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			return nil, nil
		}},
		{"everything back", func(s []*v1.Service, e []*discoveryv1.EndpointSlice) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
			return s, e
		}},
	}
	// The partial writer gets its rulesets from a Builder, as in the
	// Syncer (unchanged Services' chains are shared between rulesets);
	// the steps replace objects, never modify them.
	bld := NewBuilder(cfg)
	curSvcs, curSls := clone()
	for i, st := range steps {
		if st.name == "everything back" {
			curSvcs, curSls = clone()
		}
		curSvcs, curSls = st.change(curSvcs, curSls)
		rs := bld.Build(curSvcs, curSls)
		if err := partial.Apply(rs); err != nil {
			t.Fatalf("step %d (%s): %v", i, st.name, err)
		}
		if partial.fullWrites != 1 {
			t.Fatalf("step %d (%s): %d whole-table writes so far, want only the first", i, st.name, partial.fullWrites)
		}
		full := &NFTables{NetNSFd: int(newNetns(t))}
		if err := full.Apply(Build(cfg, curSvcs, curSls)); err != nil {
			t.Fatalf("step %d (%s): whole-table write: %v", i, st.name, err)
		}
		if got, want := listTable(t, partial, cfg.Table), listTable(t, full, cfg.Table); got != want {
			t.Fatalf("step %d (%s): partial writes give\n%s\n\nwhole-table write gives\n%s", i, st.name, got, want)
		}
	}
}

// TestE2EStaleUDPConntrackEntries: a UDP client whose first packet to a
// service address went out before the service had rules keeps its
// un-NATed conntrack entry for as long as it keeps sending, and so never
// reaches the endpoints; deleting the stale entries after the write
// fixes that (the node-local DNS case: a resolver retries on one socket).
func TestE2EStaleUDPConntrackEntries(t *testing.T) {
	tn := setupNet(t)
	cfg := e2eConfig()
	// Packets to addresses without rules pass instead of being dropped,
	// as they do on a node that has not yet programmed a new Service.
	cfg.ServiceCIDRs = nil
	w := &NFTables{NetNSFd: int(tn.node)}
	empty := Build(cfg, nil, nil)
	if err := w.Apply(empty); err != nil { // conntrack is active from here on
		t.Fatal(err)
	}

	var srv net.PacketConn
	if err := inNetns(tn.pod, func() (err error) {
		srv, err = net.ListenPacket("udp4", netip.AddrPortFrom(tn.podIP, 5353).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(append([]byte("re: "), buf[:n]...), from)
		}
	}()
	var client net.Conn
	if err := inNetns(tn.pod, func() (err error) {
		client, err = net.Dial("udp4", "198.19.0.53:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ask := func(q string, wait time.Duration) (string, error) {
		if _, err := client.Write([]byte(q)); err != nil {
			return "", err
		}
		client.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 64)
		n, err := client.Read(buf)
		return string(buf[:n]), err
	}

	if got, err := ask("before", 300*time.Millisecond); err == nil {
		t.Fatalf("answered %q before the service existed", got)
	}
	dns := svc("dns", "198.19.0.53", udpPort("dns", 53))
	rs := Build(cfg, []*v1.Service{dns}, []*discoveryv1.EndpointSlice{
		sliceProto("dns", "dns-a", "dns", v1.ProtocolUDP, 5353, ep(tn.podIP.String(), "node-a", true))})
	if err := w.Apply(rs); err != nil {
		t.Fatal(err)
	}
	// The kernel's behaviour this is about: the old entry still wins.
	if got, err := ask("stale", 300*time.Millisecond); err == nil {
		t.Fatalf("answered %q through a stale conntrack entry; the test's premise no longer holds", got)
	}
	n, err := (&Conntrack{NetNSFd: int(tn.node)}).DeleteFlows(staleUDPFlows(empty, rs))
	if err != nil || n < 1 {
		t.Fatalf("deleted %d entries, %v; want the stale one", n, err)
	}
	if got, err := ask("after", 2*time.Second); err != nil || got != "re: after" {
		t.Fatalf("after the cleanup: %q, %v", got, err)
	}
}
