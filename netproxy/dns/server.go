// Package dns is orch's node-local cluster DNS server. It answers as
// CoreDNS' kubernetes plugin does with k3s' configuration ("pods
// insecure"): <svc>.<ns>.svc.<domain> A and SRV records, per-endpoint
// names (StatefulSet and hostname/subdomain pods), <a-b-c-d>.<ns>.pod.
// <domain>, and PTR records, from an in-memory view of Services,
// EndpointSlices and Namespaces that the agent feeds it. Every other name
// goes to the node's upstream resolvers, with a cache of their positive
// and negative answers (CoreDNS' "cache 30"). It also writes pods'
// resolv.conf (ResolvConf).
//
// The package never talks to the API server: callers push objects with
// the Update/Delete methods. It must not be given a real upstream in
// tests.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/orch-dev/orch/netproxy/keyed"
)

// Defaults, as CoreDNS' kubernetes plugin uses them.
const (
	DefaultDomain         = "cluster.local"
	DefaultTTL            = 5
	DefaultNegativeTTL    = 5
	DefaultForwardTimeout = 2 * time.Second
	DefaultCacheSize      = 10000
)

// Config configures a Server. Zero values pick the defaults.
type Config struct {
	// Domain is the cluster domain, "cluster.local" by default.
	Domain string
	// Upstreams are "host:port" resolvers for names outside the cluster,
	// tried in order. With none, such names answer SERVFAIL.
	Upstreams []string
	// ForwardTimeout bounds each upstream attempt.
	ForwardTimeout time.Duration
	// TTL of cluster answers, in seconds.
	TTL uint32
	// NegativeTTL is the SOA minimum of NXDOMAIN/NODATA answers: how
	// long resolvers cache that a cluster name does not exist.
	NegativeTTL uint32
	// CacheSize bounds the cache of upstream answers (entries); 0 means
	// DefaultCacheSize.
	CacheSize int
	// Logger receives errors the server survives; nil discards them.
	Logger *slog.Logger
}

// Server answers DNS queries. It implements mdns.Handler; Serve runs it
// on UDP and TCP listeners.
type Server struct {
	cfg    Config
	domain string // fully qualified, lower case
	// zones are the zones the server is authoritative for, as CoreDNS'
	// kubernetes plugin with k3s' Corefile ("kubernetes cluster.local
	// in-addr.arpa ip6.arpa"): the cluster domain and the reverse zones.
	zones []zone
	// listenAddr is the address Serve answers on over UDP, the name
	// servers' address when the kube-dns Service is not known.
	listenAddr atomic.Pointer[netip.Addr]

	fwd *forwarder

	mu         sync.Mutex
	services   keyed.Map[*v1.Service]
	slices     keyed.Map[*discoveryv1.EndpointSlice]
	namespaces keyed.Map[*v1.Namespace]
	// gen counts changes to the objects (written under mu). A view built
	// from generation g answers for every change up to g; a query that
	// sees a newer gen waits for a rebuild instead of answering from the
	// older view.
	gen  atomic.Uint64
	view atomic.Pointer[view]
}

var _ mdns.Handler = (*Server)(nil)

// New returns a Server with an empty view.
func New(cfg Config) *Server {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:    cfg,
		domain: mdns.Fqdn(strings.ToLower(cfg.Domain)),
		fwd:    newForwarder(cfg.Upstreams, cfg.ForwardTimeout, cfg.CacheSize, cfg.Logger),
	}
	for _, z := range []string{s.domain, "in-addr.arpa.", "ip6.arpa."} {
		s.zones = append(s.zones, zone{apex: z, ns: nsLabel + z})
	}
	// Never nil: the first queries (a resolver sends A and AAAA at once)
	// must not race the first build.
	s.view.Store(buildView(s.domain, cfg.TTL, 0, snapshot{}, nil))
	return s
}

func (s *Server) changed() { s.gen.Add(1) }

// UpdateService records an added or changed Service; the object must not
// be modified afterwards. The other Update/Delete methods work alike.
func (s *Server) UpdateService(svc *v1.Service) { s.change(func() { s.services.Update(svc) }) }

// DeleteService forgets a Service.
func (s *Server) DeleteService(namespace, name string) {
	s.change(func() { s.services.Delete(namespace, name) })
}

// UpdateEndpointSlice records an added or changed EndpointSlice.
func (s *Server) UpdateEndpointSlice(sl *discoveryv1.EndpointSlice) {
	s.change(func() { s.slices.Update(sl) })
}

// DeleteEndpointSlice forgets an EndpointSlice.
func (s *Server) DeleteEndpointSlice(namespace, name string) {
	s.change(func() { s.slices.Delete(namespace, name) })
}

// Replace sets all Services and EndpointSlices at once. Namespaces are
// kept: they come from a watch of their own (ReplaceNamespaces).
func (s *Server) Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice) {
	s.change(func() {
		s.services.Replace(services)
		s.slices.Replace(slices)
	})
}

// ReplaceNamespaces sets the cluster's namespaces. Until it is first
// called, names in every namespace are answered (pod names, NODATA for
// "ns.svc.<domain>"); afterwards names in a namespace that does not
// exist are NXDOMAIN, as in CoreDNS.
func (s *Server) ReplaceNamespaces(namespaces []*v1.Namespace) {
	s.change(func() { s.namespaces.Replace(namespaces) })
}

// UpdateNamespace records an added or changed Namespace.
func (s *Server) UpdateNamespace(ns *v1.Namespace) { s.change(func() { s.namespaces.Update(ns) }) }

// DeleteNamespace forgets a Namespace.
func (s *Server) DeleteNamespace(name string) { s.change(func() { s.namespaces.Delete("", name) }) }

// current returns a view that includes every change made before the
// call, rebuilding it first if objects changed. The rebuild is lazy so a
// burst of updates costs one rebuild; queries racing with a rebuild wait
// for it rather than answer from the older view.
func (s *Server) current() *view {
	if v := s.view.Load(); v.gen == s.gen.Load() {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Updates hold mu too, so gen and the maps agree here.
	gen := s.gen.Load()
	if v := s.view.Load(); v.gen == gen {
		return v // another query rebuilt it meanwhile
	}
	v := buildView(s.domain, s.cfg.TTL, gen, snapshot{services: &s.services, slices: &s.slices, namespaces: &s.namespaces}, s.view.Load())
	s.view.Store(v)
	return v
}

// Serve answers on the given UDP and TCP listeners (either may be nil)
// until ctx is cancelled.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var servers []*mdns.Server
	if pc != nil {
		servers = append(servers, &mdns.Server{PacketConn: pc, Handler: s})
		if ap, err := netip.ParseAddrPort(pc.LocalAddr().String()); err == nil && !ap.Addr().IsUnspecified() {
			a := ap.Addr().Unmap()
			s.listenAddr.Store(&a)
		}
	}
	if ln != nil {
		servers = append(servers, &mdns.Server{Listener: ln, Handler: s})
	}
	if len(servers) == 0 {
		return errors.New("dns: no listener to serve on")
	}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	if err != nil {
		return fmt.Errorf("dns server: %w", err)
	}
	return ctx.Err()
}

// ServeDNS answers one query. A panic while answering becomes SERVFAIL
// and a log line, as in CoreDNS: the server runs inside the node agent,
// and one bad query must not take the node's pods' supervisor down.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	defer func() {
		if rec := recover(); rec != nil {
			s.cfg.Logger.Error("panic answering a DNS query", "question", r.Question, "panic", rec, "stack", string(debug.Stack()))
			_ = w.WriteMsg(new(mdns.Msg).SetRcode(r, mdns.RcodeServerFailure))
		}
	}()
	network := w.RemoteAddr().Network()
	resp := s.answer(r, network)
	// Name compression, as CoreDNS always uses: a headless service's
	// addresses repeat its name in every record, and uncompressed ten of
	// them no longer fit a plain 512-byte UDP answer.
	resp.Compress = true
	if network == "udp" {
		// Fit the client's buffer; it retries over TCP on TC.
		size := mdns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

func (s *Server) answer(r *mdns.Msg, network string) *mdns.Msg {
	m := new(mdns.Msg)
	if r.Opcode != mdns.OpcodeQuery || len(r.Question) != 1 {
		return m.SetRcode(r, mdns.RcodeNotImplemented)
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	v := s.current()
	if q.Qclass == mdns.ClassINET {
		for _, z := range s.zones {
			if name == z.apex || name == z.ns {
				return s.zoneRecords(v, r, q, name, z)
			}
		}
	}
	if q.Qclass == mdns.ClassINET && (name == s.domain || strings.HasSuffix(name, "."+s.domain)) {
		return s.cluster(v, r, q, name)
	}
	if targets := s.reverse(v, name); len(targets) > 0 && q.Qclass == mdns.ClassINET {
		m.SetReply(r)
		m.Authoritative = true
		if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
			for _, t := range targets {
				m.Answer = append(m.Answer, &mdns.PTR{Hdr: s.hdr(q.Name, mdns.TypePTR), Ptr: t})
			}
		}
		return finish(r, m)
	}
	// Reverse names the cluster does not know fall through to the
	// upstreams, as with CoreDNS' "fallthrough in-addr.arpa ip6.arpa".
	return s.fwd.exchange(r, network)
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
}

// soa is the cluster domain's SOA (see soaOf).
func (s *Server) soa(v *view) *mdns.SOA { return s.soaOf(v, s.domain) }

// soaOf is a zone's SOA as CoreDNS writes it: its TTL and minimum are
// the negative TTL, so resolvers cache a missing name that long
// (RFC 2308), and the serial changes with the cluster's objects.
func (s *Server) soaOf(v *view, zone string) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.cfg.NegativeTTL},
		Ns:      nsLabel + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  v.serial,
		Refresh: 7200, Retry: 1800, Expire: 86400,
		Minttl: s.cfg.NegativeTTL,
	}
}

// finish echoes the client's EDNS0 buffer size, so the answer may use it.
func finish(r, m *mdns.Msg) *mdns.Msg {
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	return m
}

// cluster answers a name inside the cluster domain: NXDOMAIN for a name
// that does not exist (nor anything below it), NODATA for a name that
// exists without records of the asked type; both carry the SOA.
func (s *Server) cluster(v *view, r *mdns.Msg, q mdns.Question, name string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	rec := v.lookup(name)
	if rec == nil {
		if addr, ok := s.podName(v, name); ok {
			switch {
			case addr.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
				m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(q.Name, mdns.TypeA), A: addr.AsSlice()})
			case addr.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
				m.Answer = append(m.Answer, &mdns.AAAA{Hdr: s.hdr(q.Name, mdns.TypeAAAA), AAAA: addr.AsSlice()})
			default:
				m.Ns = append(m.Ns, s.soa(v)) // NODATA
			}
			return finish(r, m)
		}
		if !v.exists(name) {
			m.Rcode = mdns.RcodeNameError
		}
		m.Ns = append(m.Ns, s.soa(v))
		return finish(r, m)
	}
	if rec.cname != "" {
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: s.hdr(q.Name, mdns.TypeCNAME), Target: rec.cname})
		if q.Qtype != mdns.TypeCNAME {
			m.Answer = append(m.Answer, s.chase(v, rec.cname, q.Qtype)...)
		}
		return finish(r, m)
	}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeANY:
		for _, a := range rec.a {
			m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(q.Name, mdns.TypeA), A: a.AsSlice()})
		}
	case mdns.TypeSRV:
		glued := map[string]bool{}
		for _, srv := range rec.srv {
			c := *srv
			c.Hdr.Name = q.Name
			m.Answer = append(m.Answer, &c)
			// Glue: the targets' addresses save a second round trip.
			if t := v.lookup(srv.Target); t != nil && !glued[srv.Target] {
				glued[srv.Target] = true
				for _, a := range t.a {
					m.Extra = append(m.Extra, &mdns.A{Hdr: s.hdr(srv.Target, mdns.TypeA), A: a.AsSlice()})
				}
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa(v)) // NODATA
	}
	return finish(r, m)
}

// podName reads <a-b-c-d>.<ns>.pod.<domain> as CoreDNS' "pods insecure"
// does: any well-formed address in an existing namespace answers with
// itself, without looking for a pod (what k3s configures; a node does not
// hold every pod).
func (s *Server) podName(v *view, name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".pod."+s.domain)
	if !ok {
		return netip.Addr{}, false
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(ns, ".") || !v.namespaceExists(ns) {
		return netip.Addr{}, false
	}
	return undashed(label)
}

// reverse returns the PTR targets of name when it is a reverse name.
func (s *Server) reverse(v *view, name string) []string {
	if !strings.HasSuffix(name, ".in-addr.arpa.") && !strings.HasSuffix(name, ".ip6.arpa.") {
		return nil
	}
	return v.ptrs(name)
}

// chase resolves an ExternalName service's target the way CoreDNS does,
// so that stub resolvers, which do not follow a lone CNAME, get the
// addresses in the same answer: from the view inside the cluster, else
// from the upstreams. A failure leaves the answer with the CNAME only.
func (s *Server) chase(v *view, target string, qtype uint16) []mdns.RR {
	if target == s.domain || strings.HasSuffix(target, "."+s.domain) {
		t := v.lookup(target)
		if t == nil || (qtype != mdns.TypeA && qtype != mdns.TypeANY) {
			return nil
		}
		var out []mdns.RR
		for _, a := range t.a {
			out = append(out, &mdns.A{Hdr: s.hdr(target, mdns.TypeA), A: a.AsSlice()})
		}
		return out
	}
	resp := s.fwd.exchange(new(mdns.Msg).SetQuestion(target, qtype), "udp")
	if resp.Rcode != mdns.RcodeSuccess {
		return nil
	}
	return resp.Answer
}

// change makes one change to the objects under the lock and records it.
func (s *Server) change(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	s.changed()
}
