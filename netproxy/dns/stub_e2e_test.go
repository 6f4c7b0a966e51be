package dns

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/netnstest"
)

// helperEnv makes TestStubResolverHelper serve instead of skipping.
const helperEnv = "ORCH_DNS_STUB_HELPER"

// TestStubResolversE2E asks the server through real stub resolvers —
// glibc's (getent) and busybox's nslookup — with the resolv.conf a
// ClusterFirst pod gets, as a pod would: short names go through the
// search list (ndots:5), so the server's NXDOMAIN and NODATA answers
// decide whether the resolver moves on to the next suffix or gives up.
// The server runs in a network namespace of its own on 127.0.0.1:53
// (stub resolvers take no port), in a helper process.
func TestStubResolversE2E(t *testing.T) {
	netnstest.Skip(t, "getent", "busybox", "mount")
	ns := netnstest.New(t, "orch-dns-e2e")
	// A pod has an address besides loopback; without one glibc's
	// getaddrinfo (AI_ADDRCONFIG) does not even ask for A records.
	ns.MustRun(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	ns.MustRun(t, "ip", "addr", "add", "198.18.53.1/32", "dev", "eth0")
	ns.MustRun(t, "ip", "link", "set", "eth0", "up")
	ns.MustRun(t, "ip", "link", "set", "eth1", "up")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	helper := ns.Command(ctx, os.Args[0], "-test.run=^TestStubResolverHelper$", "-test.v")
	helper.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper stops at EOF
		_ = helper.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "dns helper ready" {
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- sc.Err()
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the DNS helper did not start")
	}

	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "client"}}
	conf := ResolvConf(pod, ClusterDNS{Servers: []string{"127.0.0.1"}, Domain: DefaultDomain}, HostResolvConf{})
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	// ip netns exec gives each command a mount namespace of its own, so
	// the bind mount is the command's alone.
	resolve := func(cmd string) (string, error) {
		out, err := ns.Command(ctx, "sh", "-c", "mount --bind "+rc+" /etc/resolv.conf && exec "+cmd).CombinedOutput()
		return string(out), err
	}
	tests := []struct {
		name string
		cmd  string
		want []string // substrings of the output; nil: "not found"
	}{
		{"short service name, first search suffix", "getent ahostsv4 web", []string{"10.43.0.20"}},
		{"service.namespace after an NXDOMAIN", "getent ahostsv4 web.shop", []string{"10.43.0.20"}},
		{"A and AAAA at once: NODATA for AAAA is no failure", "getent ahosts web.shop.svc.cluster.local", []string{"10.43.0.20"}},
		{"StatefulSet pod name", "getent ahostsv4 db-0.db", []string{"10.42.0.5"}},
		{"headless service: every ready endpoint", "getent ahostsv4 db", []string{"10.42.0.5", "10.42.1.6", "10.42.2.8"}},
		{"pod name after the svc suffixes", "getent ahostsv4 10-42-0-9.shop.pod", []string{"10.42.0.9"}},
		{"PTR of a cluster IP", "getent hosts 10.43.0.20", []string{"web.shop.svc.cluster.local"}},
		{"outside name: search misses, then forwarded", "getent ahostsv4 www.example.org", []string{"192.0.2.1"}},
		{"outside name the upstream does not know", "getent ahostsv4 nope.example.org", nil},
		{"cluster name that does not exist", "getent ahostsv4 nope.shop.svc.cluster.local", nil},
		{"busybox: service name", "busybox nslookup web.shop.svc.cluster.local", []string{"10.43.0.20"}},
		{"busybox: SRV", "busybox nslookup -type=srv _http._tcp.web.shop.svc.cluster.local", []string{"80 web.shop.svc.cluster.local"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := resolve(tc.cmd)
			if tc.want == nil {
				// getent's exit status 2: the key was not found.
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
					t.Fatalf("%s: %v, want exit status 2 (not found): %s", tc.cmd, err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v: %s", tc.cmd, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s: %q missing from:\n%s", tc.cmd, w, out)
				}
			}
		})
	}
}

// TestStubResolverHelper is TestStubResolversE2E's server: the shop
// fixture on 127.0.0.1:53 of the namespace it is started in, with a fake
// upstream beside it that knows www.example.org only. It serves until
// its stdin closes.
func TestStubResolverHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestStubResolversE2E")
	}
	up := newRecordingUpstream(t, func(r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg).SetReply(r)
		q := r.Question[0]
		switch {
		case q.Name == "www.example.org." && q.Qtype == mdns.TypeA:
			m.Answer = append(m.Answer, rr(t, "www.example.org. 60 IN A 192.0.2.1"))
		case q.Name == "www.example.org.":
		default:
			m.Rcode = mdns.RcodeNameError
			m.Ns = append(m.Ns, rr(t, "example.org. 60 IN SOA ns.example.org. root.example.org. 1 7200 900 1209600 10"))
		}
		return m
	})
	srv := fixtureWith(Config{Upstreams: []string{up.addr}})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc, ln) }()
	if r := query(t, "127.0.0.1:53", "web.shop.svc.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("helper's own query: %v", r)
	}
	os.Stdout.WriteString("dns helper ready\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	<-done
}
