package dns

import (
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// recordingUpstream is a resolver on loopback that answers with answer
// (nil: never answers) and records the names it was asked.
type recordingUpstream struct {
	addr string

	mu    sync.Mutex
	asked []string
}

func newRecordingUpstream(t *testing.T, answer func(r *mdns.Msg) *mdns.Msg) *recordingUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{addr: pc.LocalAddr().String()}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.mu.Lock()
		u.asked = append(u.asked, r.Question[0].Name)
		u.mu.Unlock()
		if answer != nil {
			_ = w.WriteMsg(answer(r))
		}
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return u
}

func (u *recordingUpstream) names() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.asked)
}

// waitAsked polls until the upstream has seen name (packets on loopback
// arrive in order, so everything sent before it has been seen too).
func (u *recordingUpstream) waitAsked(t *testing.T, name string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := u.names(); slices.Contains(got, name) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("upstream never asked for %s; asked %v", name, u.names())
	return nil
}

func rr(t *testing.T, s string) mdns.RR {
	t.Helper()
	r, err := mdns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lockedBuffer is a log sink that server goroutines write while the
// test reads it.
type lockedBuffer struct {
	sync.Mutex
	strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.Lock()
	defer l.Unlock()
	return l.Builder.Write(p)
}
func (l *lockedBuffer) String() string { l.Lock(); defer l.Unlock(); return l.Builder.String() }

// fakeClock is the forwarder's clock in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestForwardCache(t *testing.T) {
	up := newRecordingUpstream(t, func(r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg).SetReply(r)
		switch r.Question[0].Name {
		case "www.example.org.":
			m.Answer = append(m.Answer, rr(t, "www.example.org. 3600 IN A 192.0.2.1"))
		case "short.example.org.":
			m.Answer = append(m.Answer, rr(t, "short.example.org. 8 IN A 192.0.2.2"))
		case "gone.example.org.":
			m.Rcode = mdns.RcodeNameError
			m.Ns = append(m.Ns, rr(t, "example.org. 3600 IN SOA ns.example.org. root.example.org. 1 7200 900 1209600 10"))
		case "nodata.example.org.":
			m.Ns = append(m.Ns, rr(t, "example.org. 3600 IN SOA ns.example.org. root.example.org. 1 7200 900 1209600 20"))
		case "nosoa.example.org.":
			m.Rcode = mdns.RcodeNameError // RFC 2308: not cacheable
		case "broken.example.org.":
			m.Rcode = mdns.RcodeServerFailure
		}
		return m
	})
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		ttl     uint32        // the first answer's TTL (answer or SOA)
		cached  time.Duration // asked once within this time, again after it; 0: never cached
		answers int
	}{
		{name: "www.example.org.", qtype: mdns.TypeA, ttl: 3600, cached: maxCacheTTL * time.Second, answers: 1},
		{name: "short.example.org.", qtype: mdns.TypeA, ttl: 8, cached: 8 * time.Second, answers: 1},
		{name: "gone.example.org.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ttl: 3600, cached: 10 * time.Second},
		{name: "nodata.example.org.", qtype: mdns.TypeAAAA, ttl: 3600, cached: 20 * time.Second},
		{name: "nosoa.example.org.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError},
		{name: "broken.example.org.", qtype: mdns.TypeA, rcode: mdns.RcodeServerFailure, cached: servFailTTL * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1_000_000, 0)}
			srv := New(Config{Upstreams: []string{up.addr}, ForwardTimeout: 5 * time.Second})
			srv.fwd.now = clock.Now
			addr := startServer(t, srv)
			count := func() int {
				n := 0
				for _, a := range up.names() {
					if a == tc.name {
						n++
					}
				}
				return n
			}
			before := count()
			r := query(t, addr, tc.name, tc.qtype)
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers {
				t.Fatalf("first answer %s with %d records, want %s with %d", mdns.RcodeToString[r.Rcode], len(r.Answer), mdns.RcodeToString[tc.rcode], tc.answers)
			}
			firstTTL := func(m *mdns.Msg) uint32 {
				for _, sec := range [][]mdns.RR{m.Answer, m.Ns} {
					if len(sec) > 0 {
						return sec[0].Header().Ttl
					}
				}
				return 0
			}
			if tc.ttl != 0 && firstTTL(r) != tc.ttl {
				t.Errorf("first TTL %d, want the upstream's %d", firstTTL(r), tc.ttl)
			}
			if tc.cached == 0 {
				query(t, addr, tc.name, tc.qtype)
				if got := count() - before; got != 2 {
					t.Fatalf("asked upstream %d times for two queries; the answer must not be cached", got)
				}
				return
			}
			clock.Advance(tc.cached - time.Second)
			// The client's spelling comes back (0x20 randomisation).
			mixed := []byte(tc.name)
			mixed[0] -= 'a' - 'A'
			r2 := query(t, addr, string(mixed), tc.qtype)
			if r2.Rcode != tc.rcode || len(r2.Answer) != tc.answers || r2.Question[0].Name != string(mixed) {
				t.Fatalf("cached answer %v", r2)
			}
			if got := count() - before; got != 1 {
				t.Fatalf("asked upstream %d times within the cache time, want 1", got)
			}
			if r2.Rcode != mdns.RcodeServerFailure && firstTTL(r2) != 1 {
				t.Errorf("cached TTL %d after %v, want 1 (the time left)", firstTTL(r2), tc.cached-time.Second)
			}
			clock.Advance(time.Second)
			query(t, addr, tc.name, tc.qtype)
			if got := count() - before; got != 2 {
				t.Fatalf("asked upstream %d times after the cache time, want 2", got)
			}
		})
	}
}

// TestForwardFailureIsFast: an upstream that stops answering is marked
// down after maxFails timeouts; while it is down queries answer
// SERVFAIL at once without asking it, and after the back-off it is
// asked again.
func TestForwardFailureIsFast(t *testing.T) {
	silent := newRecordingUpstream(t, nil)
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	var logs lockedBuffer
	srv := New(Config{Upstreams: []string{silent.addr}, ForwardTimeout: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	srv.fwd.now = clock.Now
	addr := startServer(t, srv)
	ask := func(name string) {
		t.Helper()
		if r := query(t, addr, name, mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
			t.Fatalf("%s: rcode %s, want SERVFAIL", name, mdns.RcodeToString[r.Rcode])
		}
	}
	for i := range maxFails {
		ask("q" + string(rune('1'+i)) + ".example.org.")
	}
	silent.waitAsked(t, "q2.example.org.")
	if got := strings.Count(logs.String(), "upstream DNS server does not answer"); got != 1 {
		t.Errorf("%d log lines about the upstream going down, want 1:\n%s", got, logs.String())
	}
	ask("q3.example.org.") // down: not asked
	clock.Advance(minDown)
	ask("q4.example.org.")
	if got := silent.waitAsked(t, "q4.example.org."); !slices.Equal(got, []string{"q1.example.org.", "q2.example.org.", "q4.example.org."}) {
		t.Fatalf("upstream asked %v; q3 came while it was down", got)
	}
	// SERVFAIL for our own failure is not cached: a working upstream
	// answers the next query. (A generous timeout: the good upstream
	// must answer within it on a loaded machine.)
	good := newRecordingUpstream(t, func(r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg).SetReply(r)
		m.Answer = append(m.Answer, rr(t, r.Question[0].Name+" 60 IN A 192.0.2.1"))
		return m
	})
	srv2 := New(Config{Upstreams: []string{silent.addr, good.addr}, ForwardTimeout: time.Second})
	addr2 := startServer(t, srv2)
	for _, n := range []string{"a.example.org.", "b.example.org.", "c.example.org."} {
		if r := query(t, addr2, n, mdns.TypeA); len(r.Answer) != 1 {
			t.Fatalf("%s: %v, want the second upstream's answer", n, r)
		}
	}
	// The silent one was skipped once down.
	if got := silent.names(); slices.Contains(got, "c.example.org.") {
		t.Errorf("silent upstream still asked after %d failures: %v", maxFails, got)
	}
}

func TestExternalNameChased(t *testing.T) {
	up := newRecordingUpstream(t, func(r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg).SetReply(r)
		if r.Question[0].Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, rr(t, r.Question[0].Name+" 60 IN A 192.0.2.7"))
		}
		return m
	})
	srv := New(Config{Upstreams: []string{up.addr}})
	srv.Replace([]*v1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mail"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "mail.example.org"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "alias"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "web.shop.svc.cluster.local"}},
		service("shop", "web", "10.43.0.20"),
	}, nil)
	addr := startServer(t, srv)
	tests := []struct {
		name   string
		answer []string
	}{
		{"mail.shop.svc.cluster.local.", []string{"192.0.2.7", "mail.example.org."}},
		{"alias.shop.svc.cluster.local.", []string{"10.43.0.20", "web.shop.svc.cluster.local."}},
	}
	for _, tc := range tests {
		if got := rrStrings(query(t, addr, tc.name, mdns.TypeA).Answer); !slices.Equal(got, tc.answer) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.answer)
		}
	}
}

func TestNamespaces(t *testing.T) {
	srv := fixture()
	addr := startServer(t, srv)
	ns := func(name string) *v1.Namespace { return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	// Before namespaces are known every namespace is taken to exist.
	if r := query(t, addr, "10-42-0-9.other.pod.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("namespaces unknown: %v", r)
	}
	srv.ReplaceNamespaces([]*v1.Namespace{ns("shop"), ns("empty")})
	// Replacing services and slices keeps them (it once wiped pods).
	srv.Replace([]*v1.Service{service("shop", "web", "10.43.0.20")}, nil)
	tests := []struct {
		name  string
		rcode int
		n     int
	}{
		{"10-42-0-9.shop.pod.cluster.local.", mdns.RcodeSuccess, 1},
		{"10-42-0-9.other.pod.cluster.local.", mdns.RcodeNameError, 0},
		{"other.svc.cluster.local.", mdns.RcodeNameError, 0},
		{"other.pod.cluster.local.", mdns.RcodeNameError, 0},
		{"empty.svc.cluster.local.", mdns.RcodeSuccess, 0},
		{"empty.pod.cluster.local.", mdns.RcodeSuccess, 0},
		{"web.shop.svc.cluster.local.", mdns.RcodeSuccess, 1},
	}
	for _, tc := range tests {
		if r := query(t, addr, tc.name, mdns.TypeA); r.Rcode != tc.rcode || len(r.Answer) != tc.n {
			t.Errorf("%s: %s with %d answers, want %s with %d", tc.name, mdns.RcodeToString[r.Rcode], len(r.Answer), mdns.RcodeToString[tc.rcode], tc.n)
		}
	}
	srv.UpdateNamespace(ns("other"))
	if r := query(t, addr, "10-42-0-9.other.pod.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("after the namespace was added: %v", r)
	}
	srv.DeleteNamespace("empty")
	if r := query(t, addr, "empty.svc.cluster.local.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("after the namespace was deleted: %s", mdns.RcodeToString[r.Rcode])
	}
}

// TestForwardCoalescesConcurrentQueries checks that identical queries
// waiting on the upstreams at once cost one upstream query (per name,
// type, class and DO bit), and that every asker gets the answer with its
// own ID and spelling. The upstream holds its answers until every asker
// waits, and answers with TTL 0, so the cache cannot stand in for the
// coalescing.
func TestForwardCoalescesConcurrentQueries(t *testing.T) {
	type asker struct {
		name  string
		qtype uint16
		do    bool
	}
	many := func(n int, a asker) []asker { return slices.Repeat([]asker{a}, n) }
	www := asker{name: "www.example.org.", qtype: mdns.TypeA}
	tests := []struct {
		name   string
		askers []asker
		want   int // upstream queries
	}{
		{"one question, many askers", many(20, www), 1},
		{"case does not matter (0x20)", append(many(5, www), many(5, asker{name: "WwW.Example.ORG.", qtype: mdns.TypeA})...), 1},
		{"DO bit splits", append(many(5, www), many(5, asker{name: www.name, qtype: mdns.TypeA, do: true})...), 2},
		{"types split", append(many(5, www), many(5, asker{name: www.name, qtype: mdns.TypeAAAA})...), 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			up := newRecordingUpstream(t, func(r *mdns.Msg) *mdns.Msg {
				<-release
				m := new(mdns.Msg).SetReply(r)
				if r.Question[0].Qtype == mdns.TypeA {
					m.Answer = append(m.Answer, rr(t, r.Question[0].Name+" 0 IN A 192.0.2.1"))
				}
				return m
			})
			f := newForwarder([]string{up.addr}, 10*time.Second, 0, slog.New(slog.DiscardHandler))
			answers := make([]*mdns.Msg, len(tc.askers))
			var wg sync.WaitGroup
			for i, a := range tc.askers {
				q := new(mdns.Msg).SetQuestion(a.name, a.qtype)
				q.Id = uint16(1000 + i)
				if a.do {
					q.SetEdns0(1232, true)
				}
				wg.Go(func() { answers[i] = f.exchange(q, "udp") })
			}
			deadline := time.Now().Add(10 * time.Second)
			for f.waiting.Load() != int64(len(tc.askers)) {
				if time.Now().After(deadline) {
					close(release)
					t.Fatalf("only %d of %d queries waiting", f.waiting.Load(), len(tc.askers))
				}
				time.Sleep(time.Millisecond)
			}
			close(release)
			wg.Wait()
			if got := up.names(); len(got) != tc.want {
				t.Errorf("upstream asked %d times (%v), want %d", len(got), got, tc.want)
			}
			for i, m := range answers {
				a := tc.askers[i]
				if m.Id != uint16(1000+i) || m.Rcode != mdns.RcodeSuccess || m.Question[0].Name != a.name || m.Question[0].Qtype != a.qtype {
					t.Errorf("asker %d got id %d rcode %s question %v", i, m.Id, mdns.RcodeToString[m.Rcode], m.Question)
				}
				if wantA := a.qtype == mdns.TypeA; wantA != (len(m.Answer) == 1) {
					t.Errorf("asker %d (%s) got answer %v", i, mdns.TypeToString[a.qtype], m.Answer)
				}
			}
			// Nothing is left in flight: the next query goes upstream again
			// (the answers were not cacheable).
			f.exchange(new(mdns.Msg).SetQuestion(www.name, mdns.TypeA), "udp")
			if got := len(up.names()); got != tc.want+1 {
				t.Errorf("after the flights: upstream asked %d times, want %d", got, tc.want+1)
			}
		})
	}
}
