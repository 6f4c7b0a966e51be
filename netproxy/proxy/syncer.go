package proxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/netproxy/keyed"
)

// RuleWriter puts a ruleset into effect. NFTables is the real one; tests
// use fakes.
type RuleWriter interface {
	// Apply atomically replaces the table named rs.Table with rs.
	Apply(rs *Ruleset) error
	// Exists reports whether the table is present in the kernel.
	Exists(table string) (bool, error)
}

// SyncerOptions tune the Syncer. Zero values pick the defaults.
type SyncerOptions struct {
	// MinSyncInterval is the least time between two writes, so a burst of
	// endpoint changes becomes one write. Default 100ms.
	MinSyncInterval time.Duration
	// CheckInterval is how often the Syncer checks that its table still
	// exists (someone may have run `nft flush ruleset`). Default 5s.
	CheckInterval time.Duration
	// RetryInterval is the wait after a failed write. Default 1s.
	RetryInterval time.Duration
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Conntrack, if set, deletes the UDP conntrack entries each write
	// makes stale (see StaleUDPFlows).
	Conntrack FlowCleaner
}

// SyncResult describes one write, for logging and metrics.
type SyncResult struct {
	Services int
	Chains   int
	Duration time.Duration
	Err      error
	// StaleFlows is the number of conntrack entries deleted after the
	// write; CleanupErr is why that failed (the rules are written).
	StaleFlows int
	CleanupErr error
}

// Syncer keeps the kernel's table equal to Build of the latest Services
// and EndpointSlices. The agent feeds it objects from its watches; the
// Syncer never talks to the API server. Updates only mark the state dirty;
// the Run loop rebuilds and rewrites the whole table, at most once per
// MinSyncInterval.
type Syncer struct {
	cfg     Config
	writer  RuleWriter
	opts    SyncerOptions
	builder *Builder // used by Run only
	written *Ruleset // used by Run only: the last ruleset written

	mu        sync.Mutex
	services  keyed.Map[*v1.Service] // Listed once Replace gave a full picture
	slices    keyed.Map[*discoveryv1.EndpointSlice]
	hostPorts map[types.UID][]HostPort // by pod
	dirty     bool

	kick    chan struct{}
	results chan SyncResult
}

// NewSyncer returns a Syncer writing through w. It writes nothing until
// Replace has given it the initial state, so a restarting agent never
// wipes working rules with an empty table.
func NewSyncer(cfg Config, w RuleWriter, opts SyncerOptions) *Syncer {
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = 100 * time.Millisecond
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 5 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Syncer{
		cfg:     cfg,
		writer:  w,
		opts:    opts,
		builder: NewBuilder(cfg),
		kick:    make(chan struct{}, 1),
	}
}

// Results returns a channel that receives the outcome of every write. It
// must be called before Run; results are dropped when nobody reads.
func (s *Syncer) Results() <-chan SyncResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results == nil {
		s.results = make(chan SyncResult, 16)
	}
	return s.results
}

func (s *Syncer) markDirty() {
	s.dirty = true
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Replace sets the complete state, e.g. after the agent's initial list.
// The objects must not be modified afterwards: unchanged objects are
// recognised by identity and their rules reused.
func (s *Syncer) Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services.Replace(services)
	s.slices.Replace(slices)
	s.markDirty()
}

// UpdateService records an added or changed Service. The object must not
// be modified afterwards.
func (s *Syncer) UpdateService(svc *v1.Service) { s.change(func() { s.services.Update(svc) }) }

// DeleteService forgets a Service.
func (s *Syncer) DeleteService(namespace, name string) {
	s.change(func() { s.services.Delete(namespace, name) })
}

// UpdateEndpointSlice records an added or changed EndpointSlice. The
// object must not be modified afterwards.
func (s *Syncer) UpdateEndpointSlice(sl *discoveryv1.EndpointSlice) {
	s.change(func() { s.slices.Update(sl) })
}

// DeleteEndpointSlice forgets an EndpointSlice.
func (s *Syncer) DeleteEndpointSlice(namespace, name string) {
	s.change(func() { s.slices.Delete(namespace, name) })
}

// SetPodHostPorts sets the hostPort mappings of the pod with uid (see
// PodHostPorts); none removes the pod's mappings. The agent calls it as
// its pods get and lose their addresses.
func (s *Syncer) SetPodHostPorts(uid types.UID, hps []HostPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(s.hostPorts[uid], hps) {
		return
	}
	if len(hps) == 0 {
		delete(s.hostPorts, uid)
	} else {
		if s.hostPorts == nil {
			s.hostPorts = map[types.UID][]HostPort{}
		}
		s.hostPorts[uid] = slices.Clone(hps)
	}
	s.markDirty()
}

// snapshot returns the state to build from and clears the dirty flag, or
// ok=false when there is nothing to do.
func (s *Syncer) snapshot() (svcs []*v1.Service, sls []*discoveryv1.EndpointSlice, hps []HostPort, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.services.Listed() || !s.dirty {
		return nil, nil, nil, false
	}
	s.dirty = false
	for _, m := range s.hostPorts {
		hps = append(hps, m...)
	}
	return s.services.Values(0), s.slices.Values(0), hps, true
}

// Run writes the rules until ctx is cancelled. It returns ctx.Err(); write
// failures are retried and reported on Results.
func (s *Syncer) Run(ctx context.Context) error {
	check := time.NewTicker(s.opts.CheckInterval)
	defer check.Stop()
	var last time.Time
	retry := (<-chan time.Time)(nil)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.kick:
		case <-retry:
			retry = nil
		case <-check.C:
			s.checkTable()
		}
		// Batch: wait out the rest of the minimum interval, collecting
		// whatever else changes meanwhile.
		if wait := s.opts.MinSyncInterval - s.opts.Now().Sub(last); !last.IsZero() && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		res, did := s.syncOnce()
		if !did {
			continue
		}
		last = s.opts.Now()
		if res.Err != nil {
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
			retry = time.After(s.opts.RetryInterval)
		}
		s.report(res)
	}
}

// checkTable marks the state dirty if the table vanished.
func (s *Syncer) checkTable() {
	s.mu.Lock()
	init := s.services.Listed()
	s.mu.Unlock()
	if !init {
		return
	}
	ok, err := s.writer.Exists(s.cfg.table())
	if err != nil || ok {
		return
	}
	s.mu.Lock()
	s.markDirty()
	s.mu.Unlock()
}

func (s *Syncer) syncOnce() (SyncResult, bool) {
	svcs, sls, hps, ok := s.snapshot()
	if !ok {
		return SyncResult{}, false
	}
	start := s.opts.Now()
	rs := s.builder.BuildWithHostPorts(svcs, sls, hps)
	res := SyncResult{Services: len(svcs), Chains: len(rs.Chains)}
	if err := s.writer.Apply(rs); err != nil {
		// The kernel's table is unknown now: the next cleanup treats
		// every UDP frontend as new.
		s.written = nil
		res.Err = fmt.Errorf("sync service rules: %w", err)
		res.Duration = s.opts.Now().Sub(start)
		return res, true
	}
	res.Duration = s.opts.Now().Sub(start)
	if s.opts.Conntrack != nil {
		res.StaleFlows, res.CleanupErr = s.opts.Conntrack.DeleteFlows(staleUDPFlows(s.written, rs))
	}
	s.written = rs
	return res, true
}

func (s *Syncer) report(r SyncResult) {
	s.mu.Lock()
	ch := s.results
	s.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- r:
	default:
	}
}

// change makes one change to the objects under the lock and records it.
func (s *Syncer) change(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	s.markDirty()
}
