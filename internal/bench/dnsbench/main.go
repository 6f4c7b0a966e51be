// Command dnsbench measures orch's node-local cluster DNS server
// (netproxy/dns) side by side with Debian's dnsmasq in the same run
// (issue 7's DNS benchmark): queries per second and p50/p99 latency on
// loopback for a cluster-sized view (1,000 services, 10,000 endpoints by
// default), with the same query mix sent by the same client to both.
// Each server runs as its own process (orch's from this binary, started
// again with -serve), so neither shares the client's CPU accounting; the
// servers' CPU time per query and RSS are printed too. A fake upstream on
// loopback answers names outside the cluster, which both servers cache.
//
// It prints a Markdown section and never fails on timing; it fails only
// when a server gives a wrong answer. Benchmarks only: nothing in the
// orch binary imports it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/netproxy/dns"
)

func main() {
	serve := flag.String("serve", "", "internal: serve orch's DNS on this address (the child process)")
	upstream := flag.String("upstream", "", "internal: the fake upstream for -serve")
	services := flag.Int("services", 1000, "services in the cluster view")
	perService := flag.Int("endpoints", 10, "endpoints per service")
	headlessEvery := flag.Int("headless-every", 10, "every n-th service is headless")
	duration := flag.Duration("duration", 5*time.Second, "length of each measured run")
	clients := flag.String("clients", "1,8", "concurrent clients of each run, comma separated")
	dir := flag.String("dir", "/tmp/orch-dnsbench", "scratch directory (emptied first)")
	flag.Parse()
	c := cluster{services: *services, perService: *perService, headlessEvery: *headlessEvery}
	if *serve != "" {
		if err := serveOrch(*serve, *upstream, c); err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench -serve:", err)
			os.Exit(1)
		}
		return
	}
	var counts []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "dnsbench: bad -clients %q\n", *clients)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	if err := run(c, *dir, *duration, counts); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

// cluster is the synthetic cluster both servers answer for: services
// spread over 20 namespaces, every headlessEvery-th one headless, each
// with perService ready endpoints (named pods for headless ones, as a
// StatefulSet's).
type cluster struct {
	services, perService, headlessEvery int
}

const namespaces = 20

func (c cluster) svcName(i int) (name, ns string) {
	return "svc-" + strconv.Itoa(i), "ns-" + strconv.Itoa(i%namespaces)
}

func (c cluster) headless(i int) bool { return c.headlessEvery > 0 && i%c.headlessEvery == 0 }

// clusterIP is 10.43.x.y for service i; endpointIP is 10.42.x.y for
// endpoint j of service i (one flat numbering, 65,000 at most).
func clusterIP(i int) netip.Addr {
	n := i + 11 // after the kube-dns address
	return netip.AddrFrom4([4]byte{10, 43, byte(n >> 8), byte(n)})
}

func (c cluster) endpointIP(i, j int) netip.Addr {
	n := i*c.perService + j + 2
	return netip.AddrFrom4([4]byte{10, 42, byte(n >> 8), byte(n)})
}

func fqdn(name, ns string) string { return name + "." + ns + ".svc.cluster.local." }

func (c cluster) objects() ([]*v1.Service, []*discoveryv1.EndpointSlice) {
	var svcs []*v1.Service
	var sls []*discoveryv1.EndpointSlice
	ready := true
	tcp := v1.ProtocolTCP
	for i := range c.services {
		name, ns := c.svcName(i)
		svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Protocol: tcp, Port: 80}}}}
		if c.headless(i) {
			svc.Spec.ClusterIP = v1.ClusterIPNone
		} else {
			svc.Spec.ClusterIP = clusterIP(i).String()
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		}
		svcs = append(svcs, svc)
		portName, port := "http", int32(8080)
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Protocol: &tcp, Port: &port}},
		}
		for j := range c.perService {
			ep := discoveryv1.Endpoint{Addresses: []string{c.endpointIP(i, j).String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
			if c.headless(i) {
				h := name + "-" + strconv.Itoa(j)
				ep.Hostname = &h
			}
			sl.Endpoints = append(sl.Endpoints, ep)
		}
		sls = append(sls, sl)
	}
	return svcs, sls
}

// serveOrch is the child process: orch's DNS server with the cluster's
// view, forwarding other names to upstream. It prints "ready" once it
// answers and serves until killed.
func serveOrch(addr, upstream string, c cluster) error {
	srv := dns.New(dns.Config{Upstreams: []string{upstream}})
	svcs, sls := c.objects()
	srv.Replace(svcs, sls)
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, pc, nil) }()
	// The first query builds the view; answer it before the parent
	// starts measuring.
	if err := waitAnswers(addr); err != nil {
		return err
	}
	fmt.Println("ready")
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func waitAnswers(addr string) error {
	cl := &mdns.Client{Timeout: 500 * time.Millisecond}
	m := new(mdns.Msg).SetQuestion("svc-1.ns-1.svc.cluster.local.", mdns.TypeA)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := cl.Exchange(m, addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeUpstream answers every A query for a name outside the cluster with
// 192.0.2.1 (TTL 300) and counts the queries it got.
type fakeUpstream struct {
	addr  string
	count atomic.Int64
	srv   *mdns.Server
}

func startUpstream() (*fakeUpstream, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &fakeUpstream{addr: pc.LocalAddr().String()}
	started := make(chan struct{})
	u.srv = &mdns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
			u.count.Add(1)
			m := new(mdns.Msg).SetReply(r)
			if r.Question[0].Qtype == mdns.TypeA {
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
					A: net.IPv4(192, 0, 2, 1)})
			}
			_ = w.WriteMsg(m)
		})}
	go func() { _ = u.srv.ActivateAndServe() }()
	<-started
	return u, nil
}

// server is one DNS server under test, run as a child process.
type server struct {
	name string
	addr string
	cmd  *exec.Cmd
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
}

func freeUDPAddr() (string, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer pc.Close()
	return pc.LocalAddr().String(), nil
}

func startOrch(c cluster, upstream string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeUDPAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve", addr, "-upstream", upstream,
		"-services", strconv.Itoa(c.services), "-endpoints", strconv.Itoa(c.perService), "-headless-every", strconv.Itoa(c.headlessEvery))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: "orch (netproxy/dns)", addr: addr, cmd: cmd}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		s.stop()
		return nil, fmt.Errorf("orch DNS child did not start: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return s, nil
}

// startDnsmasq serves the same names from dnsmasq: an additional hosts
// file gives A and PTR records (several lines per headless name give
// several addresses), --srv-host the SRV records, --local makes the
// cluster domain answer NXDOMAIN for names it does not have, and other
// names go to the fake upstream, cached.
func startDnsmasq(c cluster, dir, upstream string) (*server, error) {
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		for _, p := range []string{"/usr/sbin/dnsmasq", "/sbin/dnsmasq"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, errors.New("dnsmasq not found (apt-get install dnsmasq-base; scripts/install-deps.sh does)")
	}
	var hosts, conf strings.Builder
	for i := range c.services {
		name, ns := c.svcName(i)
		svcName := strings.TrimSuffix(fqdn(name, ns), ".")
		if !c.headless(i) {
			fmt.Fprintf(&hosts, "%s %s\n", clusterIP(i), svcName)
		}
		for j := range c.perService {
			ip := c.endpointIP(i, j)
			host := strings.ReplaceAll(ip.String(), ".", "-")
			if c.headless(i) {
				host = name + "-" + strconv.Itoa(j)
				fmt.Fprintf(&hosts, "%s %s\n", ip, svcName)
				fmt.Fprintf(&conf, "srv-host=_http._tcp.%s,%s.%s,8080\n", svcName, host, svcName)
			}
			fmt.Fprintf(&hosts, "%s %s.%s\n", ip, host, svcName)
		}
		if !c.headless(i) {
			fmt.Fprintf(&conf, "srv-host=_http._tcp.%s,%s,80\n", svcName, svcName)
		}
	}
	hostsFile, confFile := filepath.Join(dir, "cluster.hosts"), filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	addr, err := freeUDPAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	upHost, upPort, _ := net.SplitHostPort(upstream)
	cmd := exec.Command(bin, "--keep-in-foreground", "--conf-file="+confFile, "--no-resolv", "--no-hosts",
		"--addn-hosts="+hostsFile, "--listen-address="+host, "--port="+port, "--bind-interfaces",
		"--local=/cluster.local/", "--server="+upHost+"#"+upPort, "--cache-size=10000",
		"--user=root", "--pid-file=", "--log-facility="+filepath.Join(dir, "dnsmasq.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: "dnsmasq " + dnsmasqVersion(bin), addr: addr, cmd: cmd}
	if err := waitAnswers(addr); err != nil {
		s.stop()
		return nil, fmt.Errorf("dnsmasq: %w", err)
	}
	return s, nil
}

func dnsmasqVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(f) >= 3 {
		return f[2]
	}
	return "?"
}

// kindOrder names the kinds of queries in the mix.
var kindOrder = []string{"A service", "AAAA service (NODATA)", "NXDOMAIN search miss", "A headless", "SRV", "PTR", "A external (cached)"}

// query is one entry of the mix, with the answer both servers must give.
type query struct {
	kind    string
	name    string
	qtype   uint16
	rcode   int
	answers int
}

// mix returns the queries of the benchmark in their proportions (out of
// 20): what pods send — A and AAAA for service names (glibc asks both),
// the search-path misses ndots:5 causes before the hit, headless names,
// SRV, PTR, and 100 cached names outside the cluster.
func (c cluster) mix(n int) []query {
	var out []query
	weights := []int{6, 3, 4, 2, 2, 2, 1} // kindOrder's, out of 20
	kinds := make([]struct {
		kind   string
		weight int
	}, len(kindOrder))
	for i, k := range kindOrder {
		kinds[i].kind, kinds[i].weight = k, weights[i]
	}
	next := 0
	for len(out) < n {
		for _, k := range kinds {
			for range k.weight {
				next = (next + 7919) % c.services // a prime stride visits every service
				svc := next
				switch k.kind {
				case "A service", "AAAA service (NODATA)", "PTR":
					svc = c.pick(svc, false)
				case "A headless":
					svc = c.pick(svc, true)
				}
				name, ns := c.svcName(svc)
				var q query
				switch k.kind {
				case "A service":
					q = query{name: fqdn(name, ns), qtype: mdns.TypeA, answers: 1}
				case "AAAA service (NODATA)":
					q = query{name: fqdn(name, ns), qtype: mdns.TypeAAAA}
				case "NXDOMAIN search miss":
					// "svc-1.ns-1" asked in a pod of ns-x: ndots:5 tries
					// the pod's own namespace first.
					q = query{name: name + "." + ns + ".ns-x.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError}
				case "A headless":
					q = query{name: fqdn(name, ns), qtype: mdns.TypeA, answers: c.perService}
				case "SRV":
					q = query{name: "_http._tcp." + fqdn(name, ns), qtype: mdns.TypeSRV, answers: 1}
					if c.headless(svc) {
						q.answers = c.perService
					}
				case "PTR":
					rev, _ := mdns.ReverseAddr(clusterIP(svc).String())
					q = query{name: rev, qtype: mdns.TypePTR, answers: 1}
				case "A external (cached)":
					q = query{name: "host-" + strconv.Itoa(len(out)/20%100) + ".example.org.", qtype: mdns.TypeA, answers: 1}
				}
				q.kind = k.kind
				out = append(out, q)
			}
		}
	}
	return out[:n]
}

// pick returns the first service at or after i that is (or is not)
// headless.
func (c cluster) pick(i int, headless bool) int {
	for k := range c.services {
		j := (i + k) % c.services
		if c.headless(j) == headless {
			return j
		}
	}
	return i
}

// check asks every distinct kind of query once and compares the answer.
func check(addr string, qs []query) error {
	cl := &mdns.Client{Timeout: 2 * time.Second}
	seen := map[string]bool{}
	for _, q := range qs {
		if seen[q.name+strconv.Itoa(int(q.qtype))] {
			continue
		}
		seen[q.name+strconv.Itoa(int(q.qtype))] = true
		m := new(mdns.Msg).SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, false)
		r, _, err := cl.Exchange(m, addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", q.name, mdns.TypeToString[q.qtype], err)
		}
		if r.Rcode != q.rcode || len(r.Answer) != q.answers {
			return fmt.Errorf("%s %s (%s): %s with %d answers, want %s with %d", q.name, mdns.TypeToString[q.qtype], q.kind,
				mdns.RcodeToString[r.Rcode], len(r.Answer), mdns.RcodeToString[q.rcode], q.answers)
		}
	}
	return nil
}

// result is one measured run.
type result struct {
	clients    int
	queries    int
	errors     int
	elapsed    time.Duration
	lat        measure.Latencies
	byKind     map[string]measure.Latencies
	cpuPerQ    time.Duration
	rssAfter   int64
	cpuPercent float64
}

// load sends the mix from n clients, each with its own UDP socket and
// one query in flight, for d, and records every latency.
func load(s *server, qs []query, n int, d time.Duration) (result, error) {
	before, err := measure.ReadProc(s.cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	var (
		mu     sync.Mutex
		all    measure.Latencies
		byKind = map[string]measure.Latencies{}
		errs   atomic.Int64
		wg     sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := mdns.Dial("udp", s.addr)
			if err != nil {
				errs.Add(1)
				return
			}
			defer conn.Close()
			conn.UDPSize = 1232 // as advertised in the queries' EDNS0
			lat := make(measure.Latencies, 0, 1<<16)
			kinds := make([]string, 0, 1<<16)
			for i := c * 977; time.Now().Before(stop); i++ {
				q := qs[i%len(qs)]
				m := new(mdns.Msg).SetQuestion(q.name, q.qtype)
				m.SetEdns0(1232, false)
				t0 := time.Now()
				_ = conn.SetDeadline(t0.Add(2 * time.Second))
				if err := conn.WriteMsg(m); err != nil {
					errs.Add(1)
					continue
				}
				r, err := conn.ReadMsg()
				if err != nil || r.Id != m.Id {
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
				kinds = append(kinds, q.kind)
			}
			mu.Lock()
			all = append(all, lat...)
			for i, k := range kinds {
				byKind[k] = append(byKind[k], lat[i])
			}
			mu.Unlock()
		}()
	}
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	after, err := measure.ReadProc(s.cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	r := result{clients: n, queries: len(all), errors: int(errs.Load()), elapsed: elapsed, lat: all, byKind: byKind,
		rssAfter: after.RSSBytes, cpuPercent: measure.CPUPercent(before, after)}
	if len(all) > 0 {
		r.cpuPerQ = (after.CPU - before.CPU) / time.Duration(len(all))
	}
	return r, nil
}

func run(c cluster, dir string, d time.Duration, clientCounts []int) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer func() { _ = up.srv.Shutdown() }()
	qs := c.mix(20000)

	servers := []*server{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	o, err := startOrch(c, up.addr)
	if err != nil {
		return err
	}
	servers = append(servers, o)
	m, err := startDnsmasq(c, dir, up.addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench: no peer:", err)
	} else {
		servers = append(servers, m)
	}
	for _, s := range servers {
		if err := check(s.addr, qs); err != nil {
			return fmt.Errorf("%s answers wrongly: %w", s.name, err)
		}
	}

	fmt.Printf("### DNS: orch's node-local server vs dnsmasq on loopback\n\n")
	fmt.Printf("%s; load %s. View: %d services in %d namespaces (every %d-th headless), %d endpoints; "+
		"query mix of %d names (A 30%%, AAAA/NODATA 15%%, NXDOMAIN search misses 20%%, headless A 10%%, SRV 10%%, PTR 10%%, cached external A 5%%), "+
		"UDP with EDNS0, one query in flight per client, %v per run, servers as separate processes, same client.\n\n",
		measure.Machine(), measure.LoadAvg(), c.services, namespaces, c.headlessEvery, c.services*c.perService, len(qs), d)
	fmt.Println("| server | clients | queries/s | p50 | p99 | p99.9 | server CPU per query | server CPU | server RSS after | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	// Interleave the servers per client count so that drift on a shared
	// machine hits both alike.
	var first []result // each server's run with the fewest clients
	for ci, n := range clientCounts {
		for _, s := range servers {
			r, err := load(s, qs, n, d)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if ci == 0 {
				first = append(first, r)
			}
			fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %.1f µs | %.0f %% | %s | %d |\n", s.name, n,
				float64(r.queries)/r.elapsed.Seconds(), measure.Ms(r.lat.Percentile(50)), measure.Ms(r.lat.Percentile(99)),
				measure.Ms(r.lat.Percentile(99.9)), float64(r.cpuPerQ)/float64(time.Microsecond), r.cpuPercent, measure.MiB(r.rssAfter), r.errors)
		}
	}
	external := map[string]bool{}
	for _, q := range qs {
		if q.kind == "A external (cached)" {
			external[q.name] = true
		}
	}
	fmt.Printf("\nUpstream queries in all: %d for %d distinct external names (both servers answer repeats from their caches; orch keeps them at most 30 s).\n\n",
		up.count.Load(), len(external))
	fmt.Printf("Latency by query kind, %d client(s):\n\n| kind |", clientCounts[0])
	for _, s := range servers {
		fmt.Printf(" %s p50 | p99 |", s.name)
	}
	fmt.Printf("\n|---|%s\n", strings.Repeat("---|---|", len(servers)))
	for _, k := range kindOrder {
		fmt.Printf("| %s |", k)
		for _, r := range first {
			fmt.Printf(" %s | %s |", measure.Ms(r.byKind[k].Percentile(50)), measure.Ms(r.byKind[k].Percentile(99)))
		}
		fmt.Println()
	}
	fmt.Println()

	changed, steady, err := rebuildCost(c, 200)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	fmt.Printf("orch, first answer after one EndpointSlice change (the view rebuilds lazily; only the changed service's names are rebuilt), "+
		"in-process server on loopback, %d changes: p50 %s, p99 %s; the same query without a change: p50 %s, p99 %s.\n\n",
		len(changed), measure.Ms(changed.Percentile(50)), measure.Ms(changed.Percentile(99)),
		measure.Ms(steady.Percentile(50)), measure.Ms(steady.Percentile(99)))
	return nil
}

// rebuildCost changes one EndpointSlice (a new endpoint address) n times
// and times the query for the new endpoint's name that follows each
// change, beside the same kind of query without a change.
func rebuildCost(c cluster, n int) (changed, steady measure.Latencies, err error) {
	srv := dns.New(dns.Config{})
	svcs, sls := c.objects()
	srv.Replace(svcs, sls)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Serve(ctx, pc, nil) }()
	addr := pc.LocalAddr().String()
	if err := waitAnswers(addr); err != nil {
		return nil, nil, err
	}
	cl := &mdns.Client{Timeout: 5 * time.Second}
	ask := func(name string) (time.Duration, error) {
		t0 := time.Now()
		r, _, err := cl.Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), addr)
		if err != nil {
			return 0, err
		}
		if len(r.Answer) != 1 {
			return 0, fmt.Errorf("%s: %s with %d answers", name, mdns.RcodeToString[r.Rcode], len(r.Answer))
		}
		return time.Since(t0), nil
	}
	for i := range n {
		k := (i * 7919) % len(sls)
		if c.headless(k) {
			k = c.pick(k, false)
		}
		sl := sls[k].DeepCopy() // a changed object is a new one, as from a watch
		ip := netip.AddrFrom4([4]byte{10, 44, byte(i >> 8), byte(i)})
		sl.Endpoints[0].Addresses = []string{ip.String()}
		sls[k] = sl
		srv.UpdateEndpointSlice(sl)
		name, ns := c.svcName(k)
		d, err := ask(strings.ReplaceAll(ip.String(), ".", "-") + "." + fqdn(name, ns))
		if err != nil {
			return nil, nil, err
		}
		changed = append(changed, d)
		if d, err = ask(fqdn(name, ns)); err != nil {
			return nil, nil, err
		}
		steady = append(steady, d)
	}
	return changed, steady, nil
}
