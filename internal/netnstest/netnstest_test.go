package netnstest

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"198.18.0.1/24", true},
		{"198.19.255.1/30", true},
		{"198.18.0.1/15", true},
		{"198.18.0.1/14", false}, // the subnet would reach outside the range
		{"198.20.0.1/24", false},
		{"10.0.0.1/24", false},
		{"192.168.1.1/24", false},
		{"::1/128", false},
	} {
		err := checkAddr(netip.MustParsePrefix(tc.addr))
		if (err == nil) != tc.ok {
			t.Errorf("checkAddr(%s) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"orch-srv", true},
		{"n1", true},
		{"", false},
		{"much-too-long-name", false},
		{"Upper", false},
		{"a/b", false},
		{"a b", false},
	} {
		if err := checkName(tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestSwitch attaches two namespaces to a switch, checks they reach each
// other, and that an nft rule in one refuses new connections from the
// other.
func TestSwitch(t *testing.T) {
	Skip(t, "nft", "busybox")
	sw := NewSwitch(t, "nnt-sw")
	a, b := New(t, "nnt-a"), New(t, "nnt-b")
	sw.Attach(t, a, "eth0", netip.MustParsePrefix("198.18.7.1/24"))
	sw.Attach(t, b, "eth0", netip.MustParsePrefix("198.18.7.2/24"))

	if out, err := a.Run("busybox", "ping", "-c", "1", "-W", "10", "198.18.7.2"); err != nil {
		t.Fatalf("a cannot reach b: %v\n%s", err, out)
	}
	b.Listen(t, 7000)
	target := netip.MustParseAddrPort("198.18.7.2:7000")
	// The listener may not be up yet: a refused dial is retried.
	var err error
	for range 50 {
		if err = a.Dial(target, 10); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a cannot connect to b: %v", err)
	}
	b.Nft(t, `table inet nnt {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "eth0" ct state new tcp dport 7000 reject with tcp reset
	}
}`)
	if err := a.Dial(target, 10); err == nil {
		t.Fatal("a connected to b despite the reject rule in b")
	}
	if err := b.Dial(netip.MustParseAddrPort("127.0.0.1:7000"), 10); err != nil {
		t.Errorf("b cannot connect to itself on loopback with the rule: %v", err)
	}
	// NetCommand runs in the namespace's network but the host's mounts.
	if _, err := exec.LookPath("nsenter"); err == nil {
		out, err := a.NetCommand(context.Background(), "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "198.18.7.1/24") {
			t.Errorf("NetCommand ip addr: %v: %s", err, out)
		}
	}
	// Nothing of the test is in the host's namespace.
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "198.18.7.") {
		t.Errorf("a test address leaked into the host namespace:\n%s", out)
	}
}

// TestRefuseInboundAndCutLink: a namespace that refuses inbound
// connections can still open its own; a cut link passes nothing either
// way until it is restored.
func TestRefuseInboundAndCutLink(t *testing.T) {
	Skip(t, "nft", "busybox")
	sw := NewSwitch(t, "nnt-sw2")
	srv, edge := New(t, "nnt-srv"), New(t, "nnt-edge")
	sw.Attach(t, srv, "eth0", netip.MustParsePrefix("198.18.8.1/24"))
	sw.Attach(t, edge, "eth0", netip.MustParsePrefix("198.18.8.2/24"))
	srv.Listen(t, 7000)
	edge.Listen(t, 7000)
	toSrv, toEdge := netip.MustParseAddrPort("198.18.8.1:7000"), netip.MustParseAddrPort("198.18.8.2:7000")
	// The listeners may not be up yet: a refused dial is retried.
	for _, d := range []struct {
		from *NS
		to   netip.AddrPort
	}{{edge, toSrv}, {srv, toEdge}} {
		var err error
		for range 50 {
			if err = d.from.Dial(d.to, 10); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s cannot connect to %s: %v", d.from.Name, d.to, err)
		}
	}

	edge.RefuseInbound(t, "eth0")
	if err := srv.Dial(toEdge, 10); err == nil {
		t.Error("connected to a namespace that refuses inbound connections")
	}
	if err := edge.Dial(toSrv, 10); err != nil {
		t.Errorf("a namespace that refuses inbound connections cannot open its own: %v", err)
	}

	restore := edge.CutLink(t, "eth0")
	if out, err := edge.Run("busybox", "ping", "-c", "1", "-W", "2", "198.18.8.1"); err == nil {
		t.Errorf("ping over a cut link answered:\n%s", out)
	}
	if err := edge.Dial(toSrv, 2); err == nil {
		t.Error("connected over a cut link")
	}
	restore(t)
	if err := edge.Dial(toSrv, 10); err != nil {
		t.Errorf("no connection after the link was restored: %v", err)
	}
}
