// Package dns is orch's node-local cluster DNS server. It answers
// <svc>.<ns>.svc.<domain>, SRV, StatefulSet pod names, <a-b-c-d>.<ns>.pod.
// <domain> and PTR records from an in-memory view of Services,
// EndpointSlices and Pods that the agent feeds it, and forwards every
// other name to the node's upstream resolvers. It also writes pods'
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
	// Logger receives errors the server survives; nil discards them.
	Logger *slog.Logger
}

// Server answers DNS queries. It implements mdns.Handler; Serve runs it
// on UDP and TCP listeners.
type Server struct {
	cfg    Config
	domain string // fully qualified, lower case
	client *mdns.Client

	mu       sync.Mutex
	services keyed.Map[*v1.Service]
	slices   keyed.Map[*discoveryv1.EndpointSlice]
	pods     keyed.Map[*v1.Pod]
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
		client: &mdns.Client{Timeout: cfg.ForwardTimeout},
	}
	// Never nil: the first queries (a resolver sends A and AAAA at once)
	// must not race the first build.
	s.view.Store(buildView(s.domain, cfg.TTL, 0, snapshot{}))
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

// UpdatePod records an added or changed Pod (for pod and StatefulSet names).
func (s *Server) UpdatePod(pod *v1.Pod) { s.change(func() { s.pods.Update(pod) }) }

// DeletePod forgets a Pod.
func (s *Server) DeletePod(namespace, name string) {
	s.change(func() { s.pods.Delete(namespace, name) })
}

// Replace sets the complete state at once.
func (s *Server) Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice, pods []*v1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services.Replace(services)
	s.slices.Replace(slices)
	s.pods.Replace(pods)
	s.changed()
}

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
	v := buildView(s.domain, s.cfg.TTL, gen, snapshot{services: &s.services, slices: &s.slices, pods: &s.pods})
	s.view.Store(v)
	return v
}

// Serve answers on the given UDP and TCP listeners (either may be nil)
// until ctx is cancelled.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var servers []*mdns.Server
	if pc != nil {
		servers = append(servers, &mdns.Server{PacketConn: pc, Handler: s})
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
	if q.Qclass == mdns.ClassINET && (name == s.domain || strings.HasSuffix(name, "."+s.domain)) {
		return s.cluster(v, r, q, name)
	}
	if target, ok := v.ptr[name]; ok && q.Qclass == mdns.ClassINET {
		m.SetReply(r)
		m.Authoritative = true
		if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: s.hdr(q.Name, mdns.TypePTR), Ptr: target})
		}
		return m
	}
	return s.forward(r, network)
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
}

func (s *Server) soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.domain, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.cfg.NegativeTTL},
		Ns:      "ns.dns." + s.domain,
		Mbox:    "hostmaster." + s.domain,
		Serial:  uint32(time.Now().Unix()),
		Refresh: 7200, Retry: 1800, Expire: 86400,
		Minttl: s.cfg.NegativeTTL,
	}
}

// cluster answers a name inside the cluster domain.
func (s *Server) cluster(v *view, r *mdns.Msg, q mdns.Question, name string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	rec := v.names[name]
	if rec == nil {
		if !v.exists[name] && name != s.domain {
			m.Rcode = mdns.RcodeNameError
		}
		if name == s.domain && q.Qtype == mdns.TypeSOA {
			m.Answer = append(m.Answer, s.soa())
			return m
		}
		m.Ns = append(m.Ns, s.soa())
		return m
	}
	if rec.cname != "" {
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: s.hdr(q.Name, mdns.TypeCNAME), Target: rec.cname})
		return m
	}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeANY:
		for _, a := range rec.a {
			m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(q.Name, mdns.TypeA), A: a.AsSlice()})
		}
	case mdns.TypeSRV:
		for _, srv := range rec.srv {
			c := *srv
			c.Hdr.Name = q.Name
			m.Answer = append(m.Answer, &c)
			// Glue: the targets' addresses save a second round trip.
			if t := v.names[srv.Target]; t != nil {
				for _, a := range t.a {
					m.Extra = append(m.Extra, &mdns.A{Hdr: s.hdr(srv.Target, mdns.TypeA), A: a.AsSlice()})
				}
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa()) // NODATA
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	return m
}

// forward relays the query to the upstreams in order and answers
// SERVFAIL when none of them answers in time.
func (s *Server) forward(r *mdns.Msg, network string) *mdns.Msg {
	c := *s.client
	if network == "tcp" {
		c.Net = "tcp"
	}
	for _, up := range s.cfg.Upstreams {
		resp, _, err := c.Exchange(r, up)
		if err == nil && resp != nil {
			resp.Id = r.Id
			return resp
		}
	}
	m := new(mdns.Msg)
	return m.SetRcode(r, mdns.RcodeServerFailure)
}

// change makes one change to the objects under the lock and records it.
func (s *Server) change(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	s.changed()
}
