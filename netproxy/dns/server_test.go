package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// startServer runs srv on random loopback ports and returns its address.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		// The same port may be taken for TCP; serve TCP elsewhere.
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v", err)
		}
	})
	// Wait until it answers.
	c := &mdns.Client{Timeout: 200 * time.Millisecond}
	m := new(mdns.Msg).SetQuestion("ready.cluster.local.", mdns.TypeA)
	for i := 0; i < 50; i++ {
		if _, _, err := c.Exchange(m, pc.LocalAddr().String()); err == nil {
			return pc.LocalAddr().String()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("dns server did not start")
	return ""
}

func service(ns, name, clusterIP string, ports ...v1.ServicePort) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{ClusterIP: clusterIP, Ports: ports}}
	if clusterIP != v1.ClusterIPNone {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	return s
}

func endpointSlice(ns, svc, name string, port *discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	if port != nil {
		s.Ports = []discoveryv1.EndpointPort{*port}
	}
	return s
}

func endpoint(ip, hostname string, ready bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	if hostname != "" {
		e.Hostname = ptr.To(hostname)
	}
	return e
}

func fixture() *Server { return fixtureWith(Config{}) }

// fixtureWith is the shop namespace's services on a server made with cfg.
func fixtureWith(cfg Config) *Server {
	srv := New(cfg)
	web := service("shop", "web", "10.43.0.20",
		v1.ServicePort{Name: "http", Protocol: v1.ProtocolTCP, Port: 80},
		v1.ServicePort{Protocol: v1.ProtocolTCP, Port: 8443})
	db := service("shop", "db", v1.ClusterIPNone, v1.ServicePort{Name: "pg", Protocol: v1.ProtocolTCP, Port: 5432})
	ext := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mail"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "mail.example.org"}}
	pgPort := &discoveryv1.EndpointPort{Name: ptr.To("pg"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](5432)}
	dbSlice := endpointSlice("shop", "db", "db-abc", pgPort,
		endpoint("10.42.0.5", "db-0", true), endpoint("10.42.1.6", "db-1", true), endpoint("10.42.2.7", "db-2", false))
	httpPort := &discoveryv1.EndpointPort{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8080)}
	webSlice := endpointSlice("shop", "web", "web-xyz", httpPort, endpoint("10.42.0.9", "", true), endpoint("10.42.1.9", "", false))
	// A pod with spec.hostname "cache" and spec.subdomain "db": the
	// EndpointSlice controller puts the hostname on its endpoint.
	dbSlice2 := endpointSlice("shop", "db", "db-def", pgPort, endpoint("10.42.2.8", "cache", true))
	srv.Replace([]*v1.Service{web, db, ext}, []*discoveryv1.EndpointSlice{dbSlice, dbSlice2, webSlice})
	return srv
}

func query(t *testing.T, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(name, qtype), addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return r
}

func rrStrings(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, strings.TrimPrefix(rr.String(), h.String()))
	}
	slices.Sort(out)
	return out
}

// withoutSerial replaces SOA serials (the time a view was built) in
// rrStrings' output by SERIAL.
func withoutSerial(rrs []string) []string {
	for i, s := range rrs {
		if f := strings.Fields(s); len(f) == 7 && strings.HasPrefix(f[0], "ns.dns.") {
			f[2] = "SERIAL"
			rrs[i] = strings.Join(f, " ")
		}
	}
	return rrs
}

func TestClusterNames(t *testing.T) {
	addr := startServer(t, fixture())
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
		soa    bool // SOA in the authority section (negative answer)
	}{
		{name: "web.shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.43.0.20"}},
		{name: "WEB.Shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.43.0.20"}},
		{name: "web.shop.svc.cluster.local.", qtype: mdns.TypeAAAA, soa: true},
		{name: "web.shop.svc.cluster.local.", qtype: mdns.TypeTXT, soa: true},
		// SRV: named ports, and every port for the bare service name.
		{name: "_http._tcp.web.shop.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"0 100 80 web.shop.svc.cluster.local."}, extra: []string{"10.43.0.20"}},
		{name: "web.shop.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"0 100 80 web.shop.svc.cluster.local.", "0 100 8443 web.shop.svc.cluster.local."}, extra: []string{"10.43.0.20"}},
		{name: "_http._udp.web.shop.svc.cluster.local.", qtype: mdns.TypeSRV, rcode: mdns.RcodeNameError, soa: true},
		{name: "_https._tcp.web.shop.svc.cluster.local.", qtype: mdns.TypeSRV, rcode: mdns.RcodeNameError, soa: true},
		// Endpoint names answer for ClusterIP services too (CoreDNS).
		{name: "10-42-0-9.web.shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.42.0.9"}},
		{name: "10-42-1-9.web.shop.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		// Headless: every ready endpoint, per-endpoint names, SRV to them.
		{name: "db.shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.42.0.5", "10.42.1.6", "10.42.2.8"}},
		{name: "db-1.db.shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.42.1.6"}},
		{name: "cache.db.shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.42.2.8"}},
		{name: "db-2.db.shop.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		{name: "_pg._tcp.db.shop.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"0 100 5432 cache.db.shop.svc.cluster.local.", "0 100 5432 db-0.db.shop.svc.cluster.local.", "0 100 5432 db-1.db.shop.svc.cluster.local."},
			extra:  []string{"10.42.0.5", "10.42.1.6", "10.42.2.8"}},
		{name: "db.shop.svc.cluster.local.", qtype: mdns.TypeSRV,
			answer: []string{"0 100 5432 cache.db.shop.svc.cluster.local.", "0 100 5432 db-0.db.shop.svc.cluster.local.", "0 100 5432 db-1.db.shop.svc.cluster.local."},
			extra:  []string{"10.42.0.5", "10.42.1.6", "10.42.2.8"}},
		// Pod names ("pods insecure"): any well-formed address answers.
		{name: "10-42-0-9.shop.pod.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.42.0.9"}},
		{name: "10-42-0-99.shop.pod.cluster.local.", qtype: mdns.TypeA, answer: []string{"10.42.0.99"}},
		{name: "10-42-0-99.shop.pod.cluster.local.", qtype: mdns.TypeAAAA, soa: true},
		{name: "fd00--5.shop.pod.cluster.local.", qtype: mdns.TypeAAAA, answer: []string{"fd00::5"}},
		{name: "10-42-0.shop.pod.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		{name: "web.shop.pod.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		{name: "x.10-42-0-9.shop.pod.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		{name: "shop.pod.cluster.local.", qtype: mdns.TypeA, soa: true},
		{name: "pod.cluster.local.", qtype: mdns.TypeA, soa: true},
		{name: "mail.shop.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{"mail.example.org."}},
		{name: "nope.shop.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		{name: "a.b.c.web.shop.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		{name: "shop.svc.cluster.local.", qtype: mdns.TypeA, soa: true},
		{name: "svc.cluster.local.", qtype: mdns.TypeA, soa: true},
		{name: "cluster.local.", qtype: mdns.TypeA, soa: true},
		{name: "cluster.local.", qtype: mdns.TypeSOA, answer: []string{"ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"}},
		{name: "nothing.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, soa: true},
		// PTR: the service for a cluster IP; for an endpoint address its
		// hostnamed names, else its dashed ones.
		{name: "20.0.43.10.in-addr.arpa.", qtype: mdns.TypePTR, answer: []string{"web.shop.svc.cluster.local."}},
		{name: "5.0.42.10.in-addr.arpa.", qtype: mdns.TypePTR, answer: []string{"db-0.db.shop.svc.cluster.local."}},
		{name: "8.2.42.10.in-addr.arpa.", qtype: mdns.TypePTR, answer: []string{"cache.db.shop.svc.cluster.local."}},
		{name: "9.0.42.10.in-addr.arpa.", qtype: mdns.TypePTR, answer: []string{"10-42-0-9.web.shop.svc.cluster.local."}},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+mdns.TypeToString[tc.qtype], func(t *testing.T) {
			r := query(t, addr, tc.name, tc.qtype)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if got := withoutSerial(rrStrings(r.Answer)); !slices.Equal(got, tc.answer) {
				t.Errorf("answer %q, want %q", got, tc.answer)
			}
			if tc.extra != nil {
				if got := rrStrings(r.Extra); !slices.Equal(got, tc.extra) {
					t.Errorf("extra %q, want %q", got, tc.extra)
				}
			}
			gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == mdns.TypeSOA
			if gotSOA != tc.soa {
				t.Errorf("authority %v, want SOA: %v", r.Ns, tc.soa)
			}
			if gotSOA && r.Ns[0].(*mdns.SOA).Minttl != DefaultNegativeTTL {
				t.Errorf("negative TTL %d, want %d", r.Ns[0].(*mdns.SOA).Minttl, DefaultNegativeTTL)
			}
			if !r.Authoritative {
				t.Error("cluster answers must be authoritative")
			}
		})
	}
}

func TestUpdatesChangeAnswers(t *testing.T) {
	srv := fixture()
	addr := startServer(t, srv)
	if r := query(t, addr, "web.shop.svc.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("before delete: %v", r)
	}
	srv.DeleteService("shop", "web")
	if r := query(t, addr, "web.shop.svc.cluster.local.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("after delete: rcode %s", mdns.RcodeToString[r.Rcode])
	}
	srv.UpdateService(service("shop", "api", "10.43.0.30"))
	if r := query(t, addr, "api.shop.svc.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("after add: %v", r)
	}
	srv.UpdateEndpointSlice(endpointSlice("shop", "db", "db-abc", nil, endpoint("10.42.3.3", "", true)))
	if got := rrStrings(query(t, addr, "db.shop.svc.cluster.local.", mdns.TypeA).Answer); !slices.Equal(got, []string{"10.42.2.8", "10.42.3.3"}) {
		t.Fatalf("after slice update (db-def unchanged): %v", got)
	}
	// Endpoints without a hostname get a dashed-IP name.
	if got := rrStrings(query(t, addr, "10-42-3-3.db.shop.svc.cluster.local.", mdns.TypeA).Answer); !slices.Equal(got, []string{"10.42.3.3"}) {
		t.Fatalf("dashed endpoint name: %v", got)
	}
}

// TestConcurrentQueriesSeeEarlierChanges pins the node-local DNS hang
// of the pod network e2e: a resolver sends A and AAAA at once, so the
// first queries after a change race each other into the lazy rebuild.
// One of them used to answer from the view as it was before the change,
// and on a fresh server from no view at all (a nil dereference that took
// the whole agent down). Every query must see every change made before
// it was asked.
func TestConcurrentQueriesSeeEarlierChanges(t *testing.T) {
	const queriers = 8
	for round := range 50 {
		srv := New(Config{})
		name := "svc" + strconv.Itoa(round) + ".default.svc.cluster.local."
		srv.Replace([]*v1.Service{service("default", "svc"+strconv.Itoa(round), "10.43.0.20")}, nil)
		start := make(chan struct{})
		errs := make(chan error, queriers)
		for range queriers {
			go func() {
				<-start
				r := srv.answer(new(mdns.Msg).SetQuestion(name, mdns.TypeA), "udp")
				if len(r.Answer) != 1 {
					errs <- fmt.Errorf("round %d: %s answered %s with %d records", round, name, mdns.RcodeToString[r.Rcode], len(r.Answer))
					return
				}
				errs <- nil
			}()
		}
		close(start)
		for range queriers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}

	// Changes racing with queries: a name added before a query is asked
	// is in its answer.
	srv := New(Config{})
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			srv.answer(new(mdns.Msg).SetQuestion("noise.default.svc.cluster.local.", mdns.TypeA), "udp")
			if i%64 == 0 {
				runtime.Gosched()
			}
		}
	}()
	for i := range 200 {
		n := "s" + strconv.Itoa(i)
		srv.UpdateService(service("default", n, "10.43.1."+strconv.Itoa(i%250+1)))
		if r := srv.answer(new(mdns.Msg).SetQuestion(n+".default.svc.cluster.local.", mdns.TypeA), "udp"); len(r.Answer) != 1 {
			t.Fatalf("%s asked after it was added: %s with %d records", n, mdns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	close(stop)
	<-stopped
}

// panickyWriter fails inside ServeDNS (no remote address) and records
// what is written.
type panickyWriter struct {
	mdns.ResponseWriter
	written []*mdns.Msg
}

func (w *panickyWriter) RemoteAddr() net.Addr       { return nil }
func (w *panickyWriter) WriteMsg(m *mdns.Msg) error { w.written = append(w.written, m); return nil }

func TestPanicAnswersServerFailure(t *testing.T) {
	var logs strings.Builder
	srv := New(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	w := &panickyWriter{}
	q := new(mdns.Msg).SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	srv.ServeDNS(w, q) // must not panic
	if len(w.written) != 1 || w.written[0].Rcode != mdns.RcodeServerFailure || w.written[0].Id != q.Id {
		t.Fatalf("answers %v, want one SERVFAIL to the query", w.written)
	}
	if !strings.Contains(logs.String(), "panic answering a DNS query") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

func TestForwarding(t *testing.T) {
	good := newRecordingUpstream(t, func(r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg).SetReply(r)
		m.Answer = append(m.Answer, rr(t, r.Question[0].Name+" 60 IN A 192.0.2.1"))
		return m
	}).addr
	silent := newRecordingUpstream(t, nil).addr
	tests := []struct {
		name      string
		upstreams []string
		rcode     int
		answer    []string
	}{
		{name: "answer from upstream", upstreams: []string{good}, answer: []string{"192.0.2.1"}},
		{name: "falls through a silent upstream", upstreams: []string{silent, good}, answer: []string{"192.0.2.1"}},
		{name: "silent upstream is SERVFAIL", upstreams: []string{silent}, rcode: mdns.RcodeServerFailure},
		{name: "no upstream is SERVFAIL", rcode: mdns.RcodeServerFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, New(Config{Upstreams: tc.upstreams, ForwardTimeout: time.Second}))
			r := query(t, addr, "example.org.", mdns.TypeA)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if got := rrStrings(r.Answer); !slices.Equal(got, tc.answer) {
				t.Errorf("answer %q, want %q", got, tc.answer)
			}
		})
	}
}

func TestTCPAndTruncation(t *testing.T) {
	srv := New(Config{})
	var eps []discoveryv1.Endpoint
	for i := 0; i < 100; i++ {
		eps = append(eps, endpoint(netip.AddrFrom4([4]byte{10, 42, 5, byte(i + 1)}).String(), "", true))
	}
	srv.Replace([]*v1.Service{service("big", "many", v1.ClusterIPNone)},
		[]*discoveryv1.EndpointSlice{endpointSlice("big", "many", "many-1", nil, eps...)})
	addr := startServer(t, srv)
	r := query(t, addr, "many.big.svc.cluster.local.", mdns.TypeA)
	if !r.Truncated {
		t.Errorf("100 A records over UDP without EDNS: want TC set, got %d answers", len(r.Answer))
	}
	c := &mdns.Client{Net: "tcp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(new(mdns.Msg).SetQuestion("many.big.svc.cluster.local.", mdns.TypeA), addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 100 || r.Truncated {
		t.Fatalf("TCP: %d answers, truncated %v; want 100", len(r.Answer), r.Truncated)
	}
}

func TestMalformedQueries(t *testing.T) {
	srv := fixture()
	for _, m := range []*mdns.Msg{
		{MsgHdr: mdns.MsgHdr{Opcode: mdns.OpcodeUpdate}, Question: []mdns.Question{{Name: "a.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}}},
		{},
		{Question: []mdns.Question{{Name: "a.", Qtype: mdns.TypeA}, {Name: "b.", Qtype: mdns.TypeA}}},
	} {
		if r := srv.answer(m, "udp"); r.Rcode != mdns.RcodeNotImplemented {
			t.Errorf("%v: rcode %s, want NOTIMP", m.Question, mdns.RcodeToString[r.Rcode])
		}
	}
}

// BenchmarkQueries measures cluster A queries per second over loopback
// UDP with parallel clients.
func BenchmarkQueries(b *testing.B) {
	srv := New(Config{})
	var svcs []*v1.Service
	for i := 0; i < 1000; i++ {
		svcs = append(svcs, service("bench", "svc-"+strconv.Itoa(i), netip.AddrFrom4([4]byte{10, 43, byte(i / 250), byte(i%250 + 1)}).String()))
	}
	srv.Replace(svcs, nil)
	addr := startServer(b, srv)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := mdns.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		i := 0
		for pb.Next() {
			m := new(mdns.Msg).SetQuestion("svc-"+strconv.Itoa(i%1000)+".bench.svc.cluster.local.", mdns.TypeA)
			i++
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			if err := conn.WriteMsg(m); err != nil {
				b.Error(err)
				return
			}
			r, err := conn.ReadMsg()
			if err != nil || len(r.Answer) != 1 {
				b.Errorf("query: %v %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// TestAnswersCompressed: ten addresses of a headless service fit a
// plain 512-byte UDP answer only with name compression.
func TestAnswersCompressed(t *testing.T) {
	srv := New(Config{})
	var eps []discoveryv1.Endpoint
	for i := range 10 {
		eps = append(eps, endpoint(netip.AddrFrom4([4]byte{10, 42, 5, byte(i + 1)}).String(), "", true))
	}
	srv.Replace([]*v1.Service{service("a-long-namespace-name", "a-long-service-name", v1.ClusterIPNone)},
		[]*discoveryv1.EndpointSlice{endpointSlice("a-long-namespace-name", "a-long-service-name", "s-1", nil, eps...)})
	addr := startServer(t, srv)
	r := query(t, addr, "a-long-service-name.a-long-namespace-name.svc.cluster.local.", mdns.TypeA)
	if r.Truncated || len(r.Answer) != 10 {
		t.Fatalf("%d answers, truncated %v; want all 10 in 512 bytes", len(r.Answer), r.Truncated)
	}
}

// BenchmarkRebuildAfterChange measures the first answer after one
// EndpointSlice change in a cluster of 1,000 services with 10 endpoints
// each: the view is rebuilt whole, lazily, by that query.
func BenchmarkRebuildAfterChange(b *testing.B) {
	srv := New(Config{})
	var svcs []*v1.Service
	var sls []*discoveryv1.EndpointSlice
	for i := range 1000 {
		name := "svc-" + strconv.Itoa(i)
		svcs = append(svcs, service("bench", name, netip.AddrFrom4([4]byte{10, 43, byte(i / 250), byte(i%250 + 1)}).String(),
			v1.ServicePort{Name: "http", Protocol: v1.ProtocolTCP, Port: 80}))
		var eps []discoveryv1.Endpoint
		for j := range 10 {
			n := i*10 + j + 2
			eps = append(eps, endpoint(netip.AddrFrom4([4]byte{10, 42, byte(n >> 8), byte(n)}).String(), "", true))
		}
		sls = append(sls, endpointSlice("bench", name, name+"-x", nil, eps...))
	}
	srv.Replace(svcs, sls)
	q := new(mdns.Msg).SetQuestion("svc-1.bench.svc.cluster.local.", mdns.TypeA)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		srv.UpdateEndpointSlice(sls[i%len(sls)])
		if r := srv.answer(q, "udp"); len(r.Answer) != 1 {
			b.Fatal(r)
		}
	}
}

// TestViewReusesUnchangedServices: a change rebuilds only the names of
// the Service it touches; the others' fragments carry over, and answers
// (PTR included) follow the change.
func TestViewReusesUnchangedServices(t *testing.T) {
	srv := fixture()
	before := srv.current()
	web, db := before.frags["web.shop"], before.frags["db.shop"]
	srv.UpdateEndpointSlice(endpointSlice("shop", "web", "web-xyz", nil, endpoint("10.42.0.77", "", true)))
	after := srv.current()
	if after.frags["db.shop"] != db {
		t.Error("db's names were rebuilt though nothing of db changed")
	}
	if after.frags["web.shop"] == web {
		t.Fatal("web's names were not rebuilt after its slice changed")
	}
	if got := after.ptrs("77.0.42.10.in-addr.arpa."); !slices.Equal(got, []string{"10-42-0-77.web.shop.svc.cluster.local."}) {
		t.Errorf("PTR of the new endpoint: %q", got)
	}
	if got := after.ptrs("9.0.42.10.in-addr.arpa."); len(got) != 0 {
		t.Errorf("PTR of the removed endpoint: %q", got)
	}
	srv.DeleteService("shop", "db")
	if srv.current().frags["db.shop"] != nil {
		t.Error("a deleted service's names outlive it")
	}
}
