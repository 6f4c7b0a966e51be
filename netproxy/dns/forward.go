package dns

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Forwarding limits. The whole attempt stays under glibc's and musl's
// 5 s resolver timeout, so a client sees SERVFAIL rather than a timeout
// and does not resend into the same dead upstreams.
const (
	// forwardBudget is how many ForwardTimeouts one query may spend on
	// all upstreams together.
	forwardBudget = 2
	// maxFails consecutive failures mark an upstream down, as CoreDNS'
	// forward plugin's max_fails.
	maxFails = 2
	// Down upstreams are skipped for a back-off that doubles from
	// minDown up to maxDown; once it passes the next query tries again.
	minDown = time.Second
	maxDown = 16 * time.Second
)

// Cache limits as k3s' Corefile ("cache 30") gives CoreDNS: positive
// and negative answers at most 30 s, SERVFAIL 5 s (the cache plugin's
// default).
const (
	maxCacheTTL    = 30
	servFailTTL    = 5
	minCacheTTLSec = 1
)

// forwarder relays queries for names outside the cluster to the node's
// resolvers and caches their answers.
type forwarder struct {
	upstreams []*upstream
	timeout   time.Duration
	cache     *cache
	log       *slog.Logger
	now       func() time.Time // the clock, replaced in tests

	// flights coalesces identical queries that miss the cache: when many
	// pods ask the same outside name at once (a Deployment scaling up),
	// one query goes upstream and every asker gets its answer.
	flights singleflight.Group
	// waiting counts queries waiting on flights, leaders included.
	waiting atomic.Int64
}

// upstream is one resolver and its health.
type upstream struct {
	addr string

	mu        sync.Mutex
	fails     int
	downUntil time.Time
}

func newForwarder(addrs []string, timeout time.Duration, cacheSize int, log *slog.Logger) *forwarder {
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	f := &forwarder{timeout: timeout, cache: newCache(cacheSize), log: log, now: time.Now}
	for _, a := range addrs {
		f.upstreams = append(f.upstreams, &upstream{addr: a})
	}
	return f
}

// exchange answers r from the cache or the first upstream that answers
// in time, and SERVFAIL when none does. Upstreams that failed
// repeatedly are skipped while down, so with every upstream gone the
// answer is SERVFAIL at once instead of after the timeouts. Identical
// queries in flight at once share one upstream query.
func (f *forwarder) exchange(r *mdns.Msg, network string) *mdns.Msg {
	key := keyOf(r)
	if m := f.cache.get(key, f.now()); m != nil {
		m.Id = r.Id
		m.Question = r.Question // the client's spelling (0x20 case)
		return m
	}
	// UDP and TCP do not share: a UDP answer may be truncated, which a
	// client asking over TCP must never get.
	if network != "tcp" {
		network = "udp"
	}
	f.waiting.Add(1)
	v, _, _ := f.flights.Do(key.flight(network), func() (any, error) {
		return f.forward(r, key, network), nil
	})
	f.waiting.Add(-1)
	m := v.(*mdns.Msg).Copy() // each asker's own ID and question
	m.Id = r.Id
	m.Question = r.Question
	return m
}

// forward asks the upstreams for r and caches the answer under key.
func (f *forwarder) forward(r *mdns.Msg, key cacheKey, network string) *mdns.Msg {
	deadline := f.now().Add(forwardBudget * f.timeout)
	for _, up := range f.upstreams {
		now := f.now()
		if !up.usable(now) {
			continue
		}
		left := deadline.Sub(now)
		if left <= 0 {
			break
		}
		c := mdns.Client{Net: network, Timeout: min(f.timeout, left)}
		if network != "tcp" {
			c.Net = "udp"
		}
		resp, _, err := c.Exchange(r, up.addr)
		if err != nil || resp == nil {
			if down, until := up.failed(f.now()); down {
				f.log.Warn("upstream DNS server does not answer; names outside the cluster skip it for a while",
					"upstream", up.addr, "err", err, "until", until)
			}
			continue
		}
		if up.succeeded() {
			f.log.Info("upstream DNS server answers again", "upstream", up.addr)
		}
		f.cache.put(key, resp, f.now())
		return resp
	}
	return new(mdns.Msg).SetRcode(r, mdns.RcodeServerFailure)
}

func (u *upstream) usable(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !now.Before(u.downUntil)
}

// failed records a failed attempt; it reports whether the upstream has
// just been marked down (first of a run of failures, for the log), and
// until when.
func (u *upstream) failed(now time.Time) (down bool, until time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fails++
	if u.fails < maxFails {
		return false, time.Time{}
	}
	u.downUntil = now.Add(min(minDown<<min(u.fails-maxFails, 4), maxDown))
	return u.fails == maxFails, u.downUntil
}

// succeeded records an answer; it reports whether the upstream was down.
func (u *upstream) succeeded() (wasDown bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	wasDown = u.fails >= maxFails
	u.fails = 0
	u.downUntil = time.Time{}
	return wasDown
}

// cacheKey is what makes two queries share an answer: the name, type
// and class, and the EDNS0 bits that change what an upstream returns.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	edns, do, cd  bool
}

// flight is the key of k's queries in flight over network.
func (k cacheKey) flight(network string) string {
	b := make([]byte, 0, len(k.name)+24)
	b = append(b, network...)
	b = append(b, ' ')
	b = append(b, k.name...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(k.qtype), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(k.qclass), 10)
	for _, bit := range []bool{k.edns, k.do, k.cd} {
		b = strconv.AppendBool(append(b, ' '), bit)
	}
	return string(b)
}

func keyOf(r *mdns.Msg) cacheKey {
	q := r.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: r.CheckingDisabled}
	if opt := r.IsEdns0(); opt != nil {
		k.edns, k.do = true, opt.Do()
	}
	return k
}

// cache holds upstream answers until their TTL (capped) runs out. When
// full it drops an arbitrary entry, as CoreDNS' cache does.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[cacheKey]cacheEntry
}

type cacheEntry struct {
	msg     *mdns.Msg
	expires time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, entries: map[cacheKey]cacheEntry{}}
}

// get returns a copy of the cached answer, or nil. Its records' TTLs are
// the time it has left in the cache, as CoreDNS' cache gives them, so a
// client's own cache never outlives this one's.
func (c *cache) get(k cacheKey, now time.Time) *mdns.Msg {
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && !now.Before(e.expires) {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	m := e.msg.Copy()
	left := uint32((e.expires.Sub(now) + time.Second - 1) / time.Second)
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
				h.Ttl = left
			}
		}
	}
	return m
}

func (c *cache) put(k cacheKey, m *mdns.Msg, now time.Time) {
	ttl := cacheTTL(m)
	if ttl < minCacheTTLSec {
		return
	}
	e := cacheEntry{msg: m.Copy(), expires: now.Add(time.Duration(ttl) * time.Second)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = e
}

// cacheTTL is how long an upstream answer may be kept, in seconds: the
// smallest TTL of its records for an answer, the SOA's negative TTL
// (RFC 2308: the lesser of its TTL and minimum) for NXDOMAIN and NODATA,
// never without an SOA; all capped at maxCacheTTL.
func cacheTTL(m *mdns.Msg) uint32 {
	if m.Truncated {
		return 0 // the client retries over TCP for the whole answer
	}
	switch {
	case m.Rcode == mdns.RcodeServerFailure:
		return servFailTTL
	case m.Rcode == mdns.RcodeSuccess && len(m.Answer) > 0:
		ttl := uint32(maxCacheTTL)
		for _, sec := range [][]mdns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
		return ttl
	case m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				return min(soa.Hdr.Ttl, soa.Minttl, maxCacheTTL)
			}
		}
	}
	return 0
}
