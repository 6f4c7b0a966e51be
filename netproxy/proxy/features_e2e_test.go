package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// The feature tests extend setupNet's node and pod namespaces with a
// second pod namespace ("remote", whose endpoints belong to another node
// as far as the proxy knows) and with a client outside the cluster
// ("ext"), each on a link of its own to the node, so that the Local
// traffic policies and external IPs can be seen from the side they are
// about. Everything stays in 198.18.0.0/15.
var (
	e2eRemoteNodeIP = netip.MustParseAddr("198.18.3.1")
	e2eRemotePodIP  = netip.MustParseAddr("198.18.3.2") // an endpoint of node-b
	e2eRemoteCIDR   = netip.MustParsePrefix("198.18.3.0/24")
	e2eExtNodeIP    = netip.MustParseAddr("198.18.2.1") // the node's address towards ext
	e2eExtIP        = netip.MustParseAddr("198.18.2.2") // the outside client
	e2eExtNet       = netip.MustParsePrefix("198.18.2.0/24")
	e2eExternalIPs  = netip.MustParsePrefix("198.19.1.0/24") // Services' spec.externalIPs
)

// featureNet is setupNet's network plus the remote pod and the outside
// client.
type featureNet struct {
	*testNet
	remote, ext netns.NsHandle
}

func setupFeatureNet(t *testing.T) *featureNet {
	t.Helper()
	fn := &featureNet{testNet: setupNet(t), remote: newNetns(t), ext: newNetns(t)}
	nh, err := netlink.NewHandleAt(fn.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	attachToNode(t, nh, fn.remote, "vremote", e2eRemoteNodeIP, e2eRemotePodIP, e2ePodCIDR, e2eExtNet, e2eServiceNet, e2eExternalIPs)
	attachToNode(t, nh, fn.ext, "vext", e2eExtNodeIP, e2eExtIP, e2ePodCIDR, e2eRemoteCIDR, e2eExternalIPs)
	// The node reaches external IPs the way it reaches cluster IPs (the
	// route only has to exist for the output hook to see the packet).
	vpod, err := nh.LinkByName("vpod")
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: vpod.Attrs().Index, Dst: prefixIPNet(e2eExternalIPs)}); err != nil {
		t.Fatalf("external IP route in node netns: %v", err)
	}
	// The pod answers ext (whose address a Local policy preserves) and
	// reaches the remote pod through the node.
	ph, err := netlink.NewHandleAt(fn.pod)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.Prefix{e2eExtNet, e2eRemoteCIDR, e2eExternalIPs} {
		if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixIPNet(dst), Gw: fn.nodeIP.AsSlice()}); err != nil {
			t.Fatalf("route %s in pod netns: %v", dst, err)
		}
	}
	return fn
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// attachToNode links ns to the node namespace with a veth pair (name in
// the node, eth0 in ns) on a /24, and routes routes from ns via the node.
func attachToNode(t *testing.T, nh *netlink.Handle, ns netns.NsHandle, name string, nodeAddr, addr netip.Addr, routes ...netip.Prefix) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := nh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	for _, s := range []struct {
		h    *netlink.Handle
		name string
		addr netip.Addr
	}{{nh, name, nodeAddr}, {h, "eth0", addr}, {h, "lo", netip.Addr{}}} {
		l, err := s.h.LinkByName(s.name)
		if err != nil {
			t.Fatalf("link %s: %v", s.name, err)
		}
		if s.addr.IsValid() {
			if err := s.h.AddrAdd(l, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(s.addr, 24))}); err != nil {
				t.Fatalf("address %s on %s: %v", s.addr, s.name, err)
			}
		}
		if err := s.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range routes {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixIPNet(dst), Gw: nodeAddr.AsSlice()}); err != nil {
			t.Fatalf("route %s via %s: %v", dst, nodeAddr, err)
		}
	}
}

func featureConfig() Config {
	cfg := e2eConfig()
	cfg.NodeIPs = []netip.Addr{e2eNodeIP, e2eExtNodeIP, e2eRemoteNodeIP}
	cfg.ClusterCIDRs = []netip.Prefix{e2ePodCIDR, e2eRemoteCIDR}
	return cfg
}

// serveOn runs a TCP server on addr in ns that hands every connection to
// handle on a goroutine of its own and closes it afterwards.
func serveOn(t *testing.T, ns netns.NsHandle, addr netip.AddrPort, handle func(net.Conn)) {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr.String())
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// serveWho answers every connection to addr in ns with "NAME from
// CLIENT-IP": the client address shows whether the proxy masqueraded the
// connection.
func serveWho(t *testing.T, ns netns.NsHandle, addr netip.AddrPort, name string) {
	t.Helper()
	serveOn(t, ns, addr, func(c net.Conn) {
		from, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "%s from %s", name, from)
	})
}

// answers connects n times from ns to addr and counts the distinct
// answers; it fails the test on any error.
func answers(t *testing.T, ns netns.NsHandle, addr string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		got, err := get(ns, addr, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v (answers so far %v)", i, addr, err, seen)
		}
		seen[got]++
	}
	return seen
}

// wantDropped checks that a connection from ns to addr gets no answer at
// all: neither accepted nor refused.
func wantDropped(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	got, err := get(ns, addr, 500*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: got %q, %v; want the packets dropped (a timeout)", addr, got, err)
	}
}

// localRemote returns one slice of service with a local endpoint (the
// pod's address, on node-a) and a remote one (node-b) on port 8080.
func localRemote(service string) *discoveryv1.EndpointSlice {
	return slice(service, service+"-abc", "http", 8080,
		ep(e2ePodIP.String(), "node-a", true), ep(e2eRemotePodIP.String(), "node-b", true))
}

const (
	localAnswer  = "local"
	remoteAnswer = "remote"
)

func serveLocalRemote(t *testing.T, fn *featureNet) {
	t.Helper()
	serveWho(t, fn.pod, netip.AddrPortFrom(e2ePodIP, 8080), localAnswer)
	serveWho(t, fn.remote, netip.AddrPortFrom(e2eRemotePodIP, 8080), remoteAnswer)
}

func TestE2EExternalTrafficPolicyLocal(t *testing.T) {
	fn := setupFeatureNet(t)
	serveLocalRemote(t, fn)

	nodePortSvc := func(name, ip string, nodePort int32, policy v1.ServiceExternalTrafficPolicy) *v1.Service {
		s := svc(name, ip, tcpPort("http", 80, nodePort))
		s.Spec.Type = v1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = policy
		return s
	}
	services := []*v1.Service{
		nodePortSvc("etp-local", "198.19.0.20", 30081, v1.ServiceExternalTrafficPolicyLocal),
		nodePortSvc("etp-cluster", "198.19.0.21", 30082, v1.ServiceExternalTrafficPolicyCluster),
		nodePortSvc("etp-local-elsewhere", "198.19.0.22", 30083, v1.ServiceExternalTrafficPolicyLocal),
	}
	slices := []*discoveryv1.EndpointSlice{
		localRemote("etp-local"),
		localRemote("etp-cluster"),
		slice("etp-local-elsewhere", "etp-local-elsewhere-abc", "http", 8080, ep(e2eRemotePodIP.String(), "node-b", true)),
	}
	rs := Build(featureConfig(), services, slices)
	if err := (&NFTables{NetNSFd: int(fn.node)}).Apply(rs); err != nil {
		t.Fatalf("apply: %v\n%s", err, rs)
	}

	t.Run("outside client reaches only local endpoints with its own address", func(t *testing.T) {
		seen := answers(t, fn.ext, "198.18.2.1:30081", 20)
		want := localAnswer + " from " + e2eExtIP.String()
		if len(seen) != 1 || seen[want] != 20 {
			t.Fatalf("answers %v, want only %q", seen, want)
		}
	})
	t.Run("outside client of a Cluster policy is masqueraded and spread", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			for k, v := range answers(t, fn.ext, "198.18.2.1:30082", 1) {
				seen[k] += v
			}
		}
		// Masqueraded to the node's address on the link to each pod.
		want := map[string]bool{localAnswer + " from " + e2eNodeIP.String(): true, remoteAnswer + " from " + e2eRemoteNodeIP.String(): true}
		if len(seen) != 2 {
			t.Fatalf("40 connections gave %v, want both endpoints", seen)
		}
		for k := range seen {
			if !want[k] {
				t.Fatalf("answer %q, want one of %v", k, want)
			}
		}
	})
	t.Run("outside client with no local endpoint is dropped", func(t *testing.T) {
		wantDropped(t, fn.ext, "198.18.2.1:30083")
	})
	t.Run("pods keep using every endpoint", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			for k, v := range answers(t, fn.pod, "198.18.2.1:30081", 1) {
				seen[strings.Fields(k)[0]] += v
			}
		}
		if seen[localAnswer] == 0 || seen[remoteAnswer] == 0 {
			t.Fatalf("40 connections from a pod gave %v, want both endpoints", seen)
		}
	})
	t.Run("the node itself keeps using every endpoint", func(t *testing.T) {
		got, err := get(fn.node, "198.18.2.1:30083", 2*time.Second)
		if err != nil || !strings.HasPrefix(got, remoteAnswer) {
			t.Fatalf("got %q, %v; want the remote endpoint", got, err)
		}
	})
}

func TestE2EInternalTrafficPolicyLocal(t *testing.T) {
	fn := setupFeatureNet(t)
	serveLocalRemote(t, fn)

	itpLocal := func(name, ip string) *v1.Service {
		s := svc(name, ip, tcpPort("http", 80, 0))
		s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
		return s
	}
	services := []*v1.Service{itpLocal("itp-local", "198.19.0.30"), itpLocal("itp-elsewhere", "198.19.0.31")}
	slices := []*discoveryv1.EndpointSlice{
		localRemote("itp-local"),
		slice("itp-elsewhere", "itp-elsewhere-abc", "http", 8080, ep(e2eRemotePodIP.String(), "node-b", true)),
	}
	if err := (&NFTables{NetNSFd: int(fn.node)}).Apply(Build(featureConfig(), services, slices)); err != nil {
		t.Fatal(err)
	}

	t.Run("only the local endpoint answers", func(t *testing.T) {
		seen := answers(t, fn.pod, "198.19.0.30:80", 20)
		for k := range seen {
			if !strings.HasPrefix(k, localAnswer+" ") {
				t.Fatalf("answers %v, want only the local endpoint", seen)
			}
		}
	})
	t.Run("no local endpoint: dropped, not refused", func(t *testing.T) {
		// kube-proxy drops here: endpoints exist, just on other nodes.
		wantDropped(t, fn.pod, "198.19.0.31:80")
	})
}

func TestE2EExternalIPs(t *testing.T) {
	fn := setupFeatureNet(t)
	serveLocalRemote(t, fn)

	withExternal := func(name, clusterIP, externalIP string) *v1.Service {
		s := svc(name, clusterIP, tcpPort("http", 80, 0))
		s.Spec.ExternalIPs = []string{externalIP}
		return s
	}
	services := []*v1.Service{
		withExternal("ext", "198.19.0.40", "198.19.1.10"),
		withExternal("ext-empty", "198.19.0.41", "198.19.1.11"),
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("ext", "ext-abc", "http", 8080, ep(e2ePodIP.String(), "node-a", true)),
	}
	if err := (&NFTables{NetNSFd: int(fn.node)}).Apply(Build(featureConfig(), services, slices)); err != nil {
		t.Fatal(err)
	}

	t.Run("outside client reaches the endpoint, masqueraded", func(t *testing.T) {
		seen := answers(t, fn.ext, "198.19.1.10:80", 5)
		want := localAnswer + " from " + e2eNodeIP.String()
		if seen[want] != 5 {
			t.Fatalf("answers %v, want %q", seen, want)
		}
	})
	t.Run("from the node and from a pod", func(t *testing.T) {
		for name, ns := range map[string]netns.NsHandle{"node": fn.node, "pod": fn.pod} {
			if got, err := get(ns, "198.19.1.10:80", 2*time.Second); err != nil || !strings.HasPrefix(got, localAnswer) {
				t.Errorf("from the %s: got %q, %v", name, got, err)
			}
		}
	})
	t.Run("other ports of an external IP are not taken", func(t *testing.T) {
		// Only the Service's port is DNATed; 8080 on the external IP has
		// no route in the node and must not reach the endpoint.
		if got, err := get(fn.ext, "198.19.1.10:8080", 500*time.Millisecond); err == nil {
			t.Fatalf("port 8080 answered %q", got)
		}
	})
	t.Run("no endpoints: refused at once", func(t *testing.T) {
		_, err := get(fn.ext, "198.19.1.11:80", 3*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("got %v, want connection refused", err)
		}
	})
}

func TestE2ESessionAffinityTimeout(t *testing.T) {
	fn := setupFeatureNet(t)
	serveLocalRemote(t, fn)

	const timeout = 2 * time.Second
	sticky := svc("sticky", "198.19.0.50", tcpPort("http", 80, 0))
	sticky.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	sticky.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(timeout / time.Second))}}
	if err := (&NFTables{NetNSFd: int(fn.node)}).Apply(Build(featureConfig(), []*v1.Service{sticky}, []*discoveryv1.EndpointSlice{localRemote("sticky")})); err != nil {
		t.Fatal(err)
	}
	const addr = "198.19.0.50:80"

	// Within the timeout every connection goes where the first went
	// (each one also refreshes the entry, as kube-proxy's update does).
	first, err := get(fn.pod, addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if seen := answers(t, fn.pod, addr, 20); seen[first] != 20 {
		t.Fatalf("within the timeout: %v, want every answer %q", seen, first)
	}
	// After the timeout the choice is made again: connections spaced
	// further apart than the timeout reach the other endpoint too. Each
	// try has an even chance; 12 tries all missing it would be a 1 in
	// 4,096 event.
	for i := 0; i < 12; i++ {
		time.Sleep(timeout + 500*time.Millisecond)
		got, err := get(fn.pod, addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got != first {
			return
		}
	}
	t.Fatalf("12 connections each after the %v timeout all answered %q: the affinity does not expire", timeout, first)
}

// TestE2ERestartKeepsRules is an agent restart at the proxy's level: the
// old Syncer stops (the table stays, so established and new connections
// keep working while no agent runs) and a new Syncer with a fresh writer,
// which knows nothing of the kernel's table, takes over. The ruleset and
// session affinity survive, and an established connection is never cut.
func TestE2ERestartKeepsRules(t *testing.T) {
	fn := setupFeatureNet(t)
	serveLocalRemote(t, fn)
	echo := netip.AddrPortFrom(e2ePodIP, 9090)
	serveEcho(t, fn.pod, echo)

	cfg := featureConfig()
	sticky := svc("sticky", "198.19.0.60", tcpPort("http", 80, 0))
	sticky.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	services := []*v1.Service{sticky, svc("echo", "198.19.0.61", tcpPort("echo", 7, 0))}
	slices := []*discoveryv1.EndpointSlice{
		localRemote("sticky"),
		slice("echo", "echo-abc", "echo", int32(echo.Port()), ep(e2ePodIP.String(), "node-a", true)),
	}
	// A fresh writer each time: it knows nothing of the kernel's table.
	start := func(t *testing.T) *NFTables {
		w := &NFTables{NetNSFd: int(fn.node)}
		waitResult(t, startSyncer(t, cfg, w, services, slices, nil))
		return w
	}

	var before, first string
	var conn *echoConn
	// The first agent's Syncer stops when this subtest ends.
	if !t.Run("first agent", func(st *testing.T) {
		w := start(st)
		var err error
		if first, err = get(fn.pod, "198.19.0.60:80", 2*time.Second); err != nil {
			st.Fatal(err)
		}
		// With the pod's affinity entry in it; only its expiry may differ.
		before = withoutExpiry(listTable(st, w, cfg.Table))
		conn = dialEcho(t, fn.pod, "198.19.0.61:7") // open until the whole test ends
		conn.roundTrip(st, "before the restart")
	}) {
		t.FailNow()
	}

	// No agent: what the kernel has keeps serving.
	conn.roundTrip(t, "while stopped")
	if got, err := get(fn.pod, "198.19.0.60:80", 2*time.Second); err != nil || got != first {
		t.Fatalf("while stopped: got %q, %v; want %q", got, err, first)
	}

	w2 := start(t)
	if w2.fullWrites != 1 {
		t.Fatalf("the restarted writer made %d whole-table writes, want 1", w2.fullWrites)
	}
	if after := withoutExpiry(listTable(t, w2, cfg.Table)); after != before {
		t.Fatalf("table after the restart\n%s\n\nbefore\n%s", after, before)
	}
	conn.roundTrip(t, "after the restart")
	if seen := answers(t, fn.pod, "198.19.0.60:80", 10); seen[first] != 10 {
		t.Fatalf("after the restart: %v, want every answer %q (affinity kept)", seen, first)
	}
}

// startSyncer runs a Syncer writing through w, fed with services and
// slices, told of other programs' changes to its table by tables (nil:
// not told), until t ends, and returns its results.
func startSyncer(t *testing.T, cfg Config, w *NFTables, services []*v1.Service, slices []*discoveryv1.EndpointSlice, tables TableWatcher) <-chan SyncResult {
	t.Helper()
	s := NewSyncer(cfg, w, SyncerOptions{MinSyncInterval: 10 * time.Millisecond, Tables: tables})
	results := s.Results()
	runSyncer(t, s)
	s.Replace(services, slices)
	return results
}

// withoutExpiry drops the lifetimes of dynamic set elements ("10.0.0.1
// timeout 2h59m59s996ms expires 2h59m58s") from an nft listing: a
// whole-table write carries elements over with their remaining time as
// their own timeout.
func withoutExpiry(listing string) string {
	return expiresRE.ReplaceAllString(listing, "$1")
}

// expiresRE matches an element's timeout or expiry after its address (a
// set's own "timeout 3h" follows a word, not a digit).
var expiresRE = regexp.MustCompile(`([0-9])(?: (?:timeout|expires) [0-9hms]+)+`)

// serveEcho runs a line echo server on addr in ns.
func serveEcho(t *testing.T, ns netns.NsHandle, addr netip.AddrPort) {
	t.Helper()
	serveOn(t, ns, addr, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := c.Write([]byte(line)); err != nil {
				return
			}
		}
	})
}

type echoConn struct {
	net.Conn
	r *bufio.Reader
}

func dialEcho(t *testing.T, ns netns.NsHandle, addr string) *echoConn {
	t.Helper()
	var c net.Conn
	if err := inNetns(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &echoConn{Conn: c, r: bufio.NewReader(c)}
}

// roundTrip sends msg on the established connection and expects it back.
func (c *echoConn) roundTrip(t *testing.T, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		t.Fatalf("%s: write: %v", msg, err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != msg {
		t.Fatalf("%s: read %q, %v", msg, got, err)
	}
}

// TestE2EResyncAfterNftByHand: an administrator deletes the table with
// nft(8), or flushes the whole ruleset; the table watcher reports it and
// the Syncer writes the same table again.
func TestE2EResyncAfterNftByHand(t *testing.T) {
	tn := setupNet(t)
	tn.serve(t, 8080, "web-0")
	w := &NFTables{NetNSFd: int(tn.node)}
	cfg := e2eConfig()
	results := startSyncer(t, cfg, w, []*v1.Service{svc("web", "198.19.0.10", tcpPort("http", 80, 0))},
		[]*discoveryv1.EndpointSlice{slice("web", "web-abc", "http", 8080, ep("198.18.1.2", "node-a", true))}, startTableWatcher(t, tn.node))
	waitResult(t, results)
	want := listTable(t, w, cfg.Table)

	for _, args := range [][]string{{"delete", "table", "ip", cfg.Table}, {"flush", "ruleset"}} {
		name := "nft " + strings.Join(args, " ")
		nftIn(t, tn.node, args...)
		// The Syncer writes only when something changed: a write now is
		// its answer to the missing table. (Whether the table is gone
		// cannot be checked here: the Syncer may have restored it
		// already.)
		waitResult(t, results)
		if got := listTable(t, w, cfg.Table); got != want {
			t.Fatalf("after %s the table is\n%s\n\nwant\n%s", name, got, want)
		}
		if got, err := get(tn.node, "198.19.0.10:80", 2*time.Second); err != nil || got != "web-0" {
			t.Fatalf("after %s: got %q, %v", name, got, err)
		}
	}
}
