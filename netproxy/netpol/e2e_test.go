package netpol

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/internal/netnstest"
	"github.com/orch-dev/orch/netproxy/nftwatch"
	"github.com/orch-dev/orch/netproxy/proxy"
)

// TestPolicyEnforcementE2E writes the rules into a namespace laid out like
// a node's pod network: "pods" (namespaces) on one bridge, with
// bridge-nf-call-iptables on as the pod network sets it, and checks which
// TCP connections get through. It proves that bridged pod-to-pod traffic
// passes the ip forward hook, that replies of allowed connections pass a
// deny-all ingress, and that the node itself still reaches isolated pods.
func TestPolicyEnforcementE2E(t *testing.T) {
	netnstest.Skip(t, "nft", "busybox", "sysctl")
	sw := netnstest.NewSwitch(t, "npol-node")
	sw.NS.MustRun(t, "ip", "addr", "add", "198.18.40.1/24", "dev", "br0")
	sw.NS.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if _, err := sw.NS.Run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"); err != nil {
		t.Skipf("no br_netfilter here: %v", err)
	}
	ips := map[string]string{"a": "198.18.40.2", "b": "198.18.40.3", "c": "198.18.40.4"}
	pods := map[string]*netnstest.NS{}
	for _, name := range []string{"a", "b", "c"} {
		ns := netnstest.New(t, "npol-"+name)
		sw.Attach(t, ns, "eth0", netip.MustParsePrefix(ips[name]+"/24"))
		pods[name] = ns
	}
	pods["a"].Listen(t, 8080)
	pods["b"].Listen(t, 8080)
	pods["b"].Listen(t, 9090)

	fd, err := os.Open(sw.NS.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	w := &proxy.NFTables{NetNSFd: int(fd.Fd())}

	st := State{
		Namespaces: []*v1.Namespace{testNS("app", nil)},
		Pods: []*v1.Pod{
			testPod("app", "a", node, ips["a"], map[string]string{"role": "a"}),
			testPod("app", "b", node, ips["b"], map[string]string{"role": "b"}, v1.ContainerPort{Name: "http", ContainerPort: 8080}),
			testPod("app", "c", node, ips["c"], map[string]string{"role": "c"}),
		},
	}
	apply := func(policies ...*networkingv1.NetworkPolicy) {
		t.Helper()
		st.Policies = policies
		rs, warnings := Build(Config{NodeName: node, Table: "npol-test"}, st)
		if len(warnings) > 0 {
			t.Fatalf("warnings: %v", warnings)
		}
		if err := w.Apply(rs); err != nil {
			t.Fatalf("apply:\n%s\n%v", rs, err)
		}
	}
	type conn struct {
		from, to string
		port     uint16
		allowed  bool
	}
	check := func(step string, conns ...conn) {
		t.Helper()
		for _, c := range conns {
			from := sw.NS
			if c.from != "node" {
				from = pods[c.from]
			}
			err := from.Dial(netip.AddrPortFrom(netip.MustParseAddr(ips[c.to]), c.port), 2)
			if (err == nil) != c.allowed {
				out, _ := sw.NS.Run("nft", "list", "table", "ip", "npol-test")
				t.Errorf("%s: %s -> %s:%d allowed=%v, want %v (%v)\n%s", step, c.from, c.to, c.port, err == nil, c.allowed, err, out)
			}
		}
	}

	// The listeners start in the background: wait until the node reaches
	// each (nothing filters yet).
	for _, l := range []struct {
		pod  string
		port uint16
	}{{"a", 8080}, {"b", 8080}, {"b", 9090}} {
		addr := netip.AddrPortFrom(netip.MustParseAddr(ips[l.pod]), l.port)
		deadline := time.Now().Add(30 * time.Second)
		for err := sw.NS.Dial(addr, 2); err != nil; err = sw.NS.Dial(addr, 2) {
			if time.Now().After(deadline) {
				t.Fatalf("listener %s never answered: %v", addr, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	apply()
	check("no policy", conn{"a", "b", 8080, true}, conn{"c", "b", 9090, true})

	onlyA := policy("app", "b-from-a", map[string]string{"role": "b"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "a"}}}},
		Ports: []networkingv1.NetworkPolicyPort{{Port: namedPort("http")}},
	}}, nil)
	apply(onlyA)
	check("ingress allowed from a on the named port",
		conn{"a", "b", 8080, true}, conn{"a", "b", 9090, false}, conn{"c", "b", 8080, false},
		// The node reaches isolated pods (kubelet probes).
		conn{"node", "b", 9090, true},
		// Pods no policy selects are not isolated.
		conn{"c", "a", 8080, true})

	// a may only talk to b:8080 and takes no connections at all: its
	// connections to b work because b's replies are established traffic.
	aLocked := policy("app", "a-locked", map[string]string{"role": "a"},
		[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, nil,
		[]networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.40.0/24", Except: []string{ips["c"] + "/32"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: port(8080)}},
		}})
	apply(onlyA, aLocked)
	check("egress by ipBlock, ingress deny-all",
		conn{"a", "b", 8080, true}, conn{"a", "b", 9090, false}, conn{"c", "a", 8080, false}, conn{"node", "a", 8080, true})

	// Egress by a named port, resolved on the destination pod, and an
	// ingress port range.
	aByName := policy("app", "a-by-name", map[string]string{"role": "a"}, egressOnly, nil,
		[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: namedPort("http")}}}})
	bRange := policy("app", "b-range", map[string]string{"role": "b"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(9000), EndPort: ptr.To[int32](9100)}},
	}}, nil)
	apply(aByName, bRange)
	check("egress named port, ingress port range",
		conn{"a", "b", 9090, false}, conn{"c", "b", 9090, true}, conn{"c", "b", 8080, false})
	apply(aByName)
	check("egress named port alone", conn{"a", "b", 8080, true}, conn{"a", "b", 9090, false})

	apply()
	check("policies removed", conn{"c", "b", 9090, true}, conn{"c", "a", 8080, true})
	if out := sw.NS.MustRun(t, "nft", "list", "table", "ip", "npol-test"); strings.Contains(out, "ingress-app") {
		t.Errorf("pod chains left after the policies went:\n%s", out)
	}
}

// TestSyncerRestoresTableE2E: another program deletes the policy table
// or empties it with nft(8); the table watcher reports it and the Syncer
// writes the table again, the same as before.
func TestSyncerRestoresTableE2E(t *testing.T) {
	netnstest.Skip(t, "nft")
	ns := netnstest.New(t, "npol-restore")
	fd, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	tables := nftwatch.New(nftwatch.Options{NetNSFd: int(fd.Fd())})
	cfg := Config{NodeName: node, Table: "npol-restore"}
	s := NewSyncer(cfg, &proxy.NFTables{NetNSFd: int(fd.Fd())}, SyncerOptions{MinSyncInterval: 10 * time.Millisecond, Tables: tables})
	results := s.Results()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = tables.Run(ctx) })
	wg.Go(func() { _ = s.Run(ctx) })

	wait := func(step string) {
		t.Helper()
		select {
		case r := <-results:
			if r.Err != nil {
				t.Fatalf("%s: %v", step, r.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no write", step)
		}
	}
	st := cluster()
	s.ReplaceNamespaces(st.Namespaces)
	s.ReplacePods(st.Pods)
	s.ReplacePolicies([]*networkingv1.NetworkPolicy{policy("app", "deny", nil, ingressOnly, nil, nil)})
	wait("first write")
	want := ns.MustRun(t, "nft", "list", "table", "ip", cfg.Table)
	if !strings.Contains(want, "ingress-app/web") {
		t.Fatalf("the policy's chain is missing:\n%s", want)
	}
	for _, args := range [][]string{
		{"delete", "table", "ip", cfg.Table},
		{"flush", "table", "ip", cfg.Table},
	} {
		ns.MustRun(t, "nft", args...)
		// Nothing changed for the Syncer: this write answers the report.
		wait("after nft " + strings.Join(args, " "))
		if got := ns.MustRun(t, "nft", "list", "table", "ip", cfg.Table); got != want {
			t.Fatalf("after nft %s the table is\n%s\nwant\n%s", strings.Join(args, " "), got, want)
		}
	}
}
