// Package netnstest builds small networks of Linux network namespaces for
// end-to-end tests that run several orch nodes on one machine: one
// namespace per node, attached to a switch (a bridge in a namespace of its
// own), with addresses in 198.18.0.0/15.
//
// Nothing it creates lives in the host's namespace, and the namespaces get
// no default route, so traffic of the nodes under test cannot leave the
// machine. Every namespace is deleted in t.Cleanup (TB.Cleanup), and leftovers of a
// killed earlier run with the same names are removed first. It needs root
// and iproute2; nftables rules need nft, NetCommand nsenter (util-linux).
//
// It shells out to ip(8) and nft(8) rather than using netlink so that the
// commands in a failing test's log can be replayed by hand.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestRange is the only range addresses may come from: the benchmarking
// range (RFC 2544), which no real network routes.
var testRange = netip.MustParsePrefix("198.18.0.0/15")

// maxNameLen keeps names usable as interface names too (IFNAMSIZ-1, minus
// the prefixes this package adds).
const maxNameLen = 12

// TB is the part of testing.TB the helpers here use: *testing.T and
// *testing.B satisfy it, and a benchmark program (which has neither)
// supplies its own. Fatal and Fatalf must not return.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Skip skips t unless it runs as root with ip(8) available, the minimum
// for namespaces; tools lists further commands the test needs (e.g. "nft").
func Skip(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install -y iproute2 nftables)", tool)
		}
	}
}

// NS is a network namespace made by New.
type NS struct {
	Name string
}

// New creates the network namespace name with its loopback up, replacing
// a leftover of the same name, and deletes it when the test ends.
func New(t TB, name string) *NS {
	t.Helper()
	if err := checkName(name); err != nil {
		t.Fatal(err)
	}
	ns := &NS{Name: name}
	ns.remove()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(ns.remove)
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	return ns
}

// remove deletes the namespace; its veth ends go with it.
func (ns *NS) remove() { _ = exec.Command("ip", "netns", "delete", ns.Name).Run() }

// Command returns a command that runs name with args inside ns (through
// `ip netns exec`, which also gives it the namespace's /sys). Like
// exec.CommandContext, it is killed when ctx ends.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// NetCommand returns a command that runs name with args in ns's network
// namespace only (through nsenter): unlike Command it keeps the host's
// /sys and mounts, which a node agent needs for its cgroups. Like
// exec.CommandContext, it is killed when ctx ends.
func (ns *NS) NetCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.Path(), "--", name}, args...)...)
}

// Path is the namespace's file, for setns(2) and nsenter.
func (ns *NS) Path() string { return "/run/netns/" + ns.Name }

// Run runs a command inside ns and returns its combined output; err says
// which command failed and includes the output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := ns.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("in netns %s: %s %s: %w: %s", ns.Name, name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(t TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Nft loads an nftables ruleset (nft -f syntax) into ns. The rules die with
// the namespace.
func (ns *NS) Nft(t TB, ruleset string) {
	t.Helper()
	cmd := ns.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in netns %s: nft -f: %v: %s\nruleset:\n%s", ns.Name, err, out, ruleset)
	}
}

// RefuseInbound makes ns refuse every connection opened to it through
// ifname (TCP with a reset, anything else dropped), as a node behind NAT
// or a firewall: its own connections out, and their replies, still pass.
func (ns *NS) RefuseInbound(t TB, ifname string) {
	t.Helper()
	ns.Nft(t, fmt.Sprintf(`table inet netnstest_refuse_%[1]s {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname %[2]q ct state new meta l4proto tcp reject with tcp reset
		iifname %[2]q ct state new drop
	}
}`, nftName(ifname), ifname))
}

// CutLink drops every packet in and out of ns through ifname, as when a
// box loses its uplink (no reset, no ICMP: connections just go silent),
// until the returned function restores the link.
func (ns *NS) CutLink(t TB, ifname string) (restore func(TB)) {
	t.Helper()
	table := "netnstest_cut_" + nftName(ifname)
	ns.Nft(t, fmt.Sprintf(`table inet %[1]s {
	chain input { type filter hook input priority -10; policy accept; iifname %[2]q drop; }
	chain output { type filter hook output priority -10; policy accept; oifname %[2]q drop; }
}`, table, ifname))
	return func(t TB) {
		t.Helper()
		ns.MustRun(t, "nft", "delete", "table", "inet", table)
	}
}

// nftName makes an interface name usable in an nftables table name.
func nftName(ifname string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, ifname)
}

// greeting is what Listen's server says to every connection.
const greeting = "netnstest"

// Listen serves TCP on port inside ns until the test ends: each connection
// gets a greeting and is closed. It is the far end for Dial, to prove that
// a path is open or that a rule closes it. Needs busybox.
func (ns *NS) Listen(t TB, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, "busybox", "nc", "-ll", "-p", strconv.Itoa(port), "-e", "/bin/busybox", "echo", greeting)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("in netns %s: listen on port %d: %v", ns.Name, port, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// Dial connects from ns to addr (IP:PORT) served by Listen and returns nil
// once the greeting was read, or an error saying why not (refused, timed
// out after timeoutSeconds).
func (ns *NS) Dial(addr netip.AddrPort, timeoutSeconds int) error {
	out, err := ns.Run("busybox", "nc", "-w", strconv.Itoa(timeoutSeconds), addr.Addr().String(), strconv.Itoa(int(addr.Port())))
	if err != nil {
		return err
	}
	if !strings.Contains(out, greeting) {
		return fmt.Errorf("in netns %s: %s answered %q, not the Listen greeting", ns.Name, addr, out)
	}
	return nil
}

// Switch is a namespace with a bridge that other namespaces attach to: an
// Ethernet segment for the nodes of a test.
type Switch struct {
	NS     *NS
	bridge string
	ports  int
}

// NewSwitch creates a switch in a namespace of its own named name.
func NewSwitch(t TB, name string) *Switch {
	t.Helper()
	ns := New(t, name)
	sw := &Switch{NS: ns, bridge: "br0"}
	ns.MustRun(t, "ip", "link", "add", sw.bridge, "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", sw.bridge, "up")
	return sw
}

// Attach connects ns to the switch with a veth pair whose end in ns is
// named ifname (e.g. "eth0") and has address addr (e.g. 198.18.0.1/24),
// and brings both ends up. addr must lie in 198.18.0.0/15.
func (sw *Switch) Attach(t TB, ns *NS, ifname string, addr netip.Prefix) {
	t.Helper()
	if err := checkAddr(addr); err != nil {
		t.Fatal(err)
	}
	sw.ports++
	port := fmt.Sprintf("p%d-%s", sw.ports, ns.Name)
	if len(port) > 15 {
		port = port[:15]
	}
	// Both ends are created directly in their namespaces: nothing, not
	// even for a moment, in the host's.
	if out, err := exec.Command("ip", "link", "add", ifname, "netns", ns.Name, "type", "veth",
		"peer", "name", port, "netns", sw.NS.Name).CombinedOutput(); err != nil {
		t.Fatalf("create veth %s (netns %s) - %s (netns %s): %v: %s", ifname, ns.Name, port, sw.NS.Name, err, out)
	}
	sw.NS.MustRun(t, "ip", "link", "set", port, "master", sw.bridge)
	sw.NS.MustRun(t, "ip", "link", "set", port, "up")
	ns.MustRun(t, "ip", "addr", "add", addr.String(), "dev", ifname)
	ns.MustRun(t, "ip", "link", "set", ifname, "up")
}

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("netnstest: namespace name %q must have 1 to %d characters", name, maxNameLen)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("netnstest: namespace name %q may contain only a-z, 0-9 and '-'", name)
		}
	}
	return nil
}

func checkAddr(addr netip.Prefix) error {
	if !addr.IsValid() || !testRange.Contains(addr.Addr()) || !testRange.Overlaps(addr.Masked()) || addr.Bits() < testRange.Bits() {
		return fmt.Errorf("netnstest: address %s is outside %s, the only range tests may use", addr, testRange)
	}
	return nil
}
