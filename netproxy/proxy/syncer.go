package proxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/netproxy/keyed"
	"github.com/orch-dev/orch/netproxy/nftwatch"
)

// RuleWriter puts a ruleset into effect. NFTables is the real one; tests
// use fakes.
type RuleWriter interface {
	// Apply atomically replaces the table named rs.Table with rs.
	Apply(rs *Ruleset) error
	// Exists reports whether the table is present in the kernel.
	Exists(table string) (bool, error)
	// Forget drops the writer's record of the kernel's copy of table,
	// so that its next Apply writes the whole table instead of a
	// difference against rules that are no longer there.
	Forget(table string)
}

// SyncerOptions tune the Syncer. Zero values pick the defaults.
type SyncerOptions struct {
	// MinSyncInterval is the least time between two writes, so a burst of
	// endpoint changes becomes one write. Default 100ms.
	MinSyncInterval time.Duration
	// RetryInterval is the wait after a failed write. Default 1s.
	RetryInterval time.Duration
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Tables, if set, tells the Syncer when another program deleted or
	// changed its table (`nft flush ruleset`), which it then writes
	// again. Without it the table is only written on changes.
	Tables TableWatcher
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
// the Run loop (a SyncLoop) rebuilds and writes the table, at most once
// per MinSyncInterval.
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

	loop    *SyncLoop
	results Results[SyncResult]
}

// NewSyncer returns a Syncer writing through w. It writes nothing until
// Replace has given it the initial state, so a restarting agent never
// wipes working rules with an empty table.
func NewSyncer(cfg Config, w RuleWriter, opts SyncerOptions) *Syncer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Syncer{
		cfg:     cfg,
		writer:  w,
		opts:    opts,
		builder: NewBuilder(cfg),
		loop: NewSyncLoop(w, cfg.table(), LoopOptions{
			MinSyncInterval: opts.MinSyncInterval,
			RetryInterval:   opts.RetryInterval,
			Now:             opts.Now,
			Tables:          opts.Tables,
		}),
	}
}

// Results returns a channel that receives the outcome of every write. It
// must be called before Run; results are dropped when nobody reads.
func (s *Syncer) Results() <-chan SyncResult { return s.results.Chan() }

// Replace sets the complete state, e.g. after the agent's initial list.
// The objects must not be modified afterwards: unchanged objects are
// recognised by identity and their rules reused.
func (s *Syncer) Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services.Replace(services)
	s.slices.Replace(slices)
	s.loop.MarkDirty()
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
	s.loop.MarkDirty()
}

// snapshot returns the state to build from, or ok=false before Replace
// gave the initial state.
func (s *Syncer) snapshot() (svcs []*v1.Service, sls []*discoveryv1.EndpointSlice, hps []HostPort, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.services.Listed() {
		return nil, nil, nil, false
	}
	for _, m := range s.hostPorts {
		hps = append(hps, m...)
	}
	return s.services.Values(0), s.slices.Values(0), hps, true
}

// Run writes the rules until ctx is cancelled. It returns ctx.Err(); write
// failures are retried and reported on Results.
func (s *Syncer) Run(ctx context.Context) error {
	return s.loop.Run(ctx, s.syncOnce)
}

// syncOnce builds and writes the table if Replace gave the initial state,
// and reports the outcome on Results.
func (s *Syncer) syncOnce() (wrote bool, err error) {
	svcs, sls, hps, ok := s.snapshot()
	if !ok {
		return false, nil
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
		s.results.Send(res)
		return true, res.Err
	}
	res.Duration = s.opts.Now().Sub(start)
	if s.opts.Conntrack != nil {
		res.StaleFlows, res.CleanupErr = s.opts.Conntrack.DeleteFlows(staleUDPFlows(s.written, rs))
	}
	s.written = rs
	s.results.Send(res)
	return true, nil
}

// change makes one change to the objects under the lock and records it.
func (s *Syncer) change(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	s.loop.MarkDirty()
}

// LoopOptions tune a SyncLoop. Zero values pick the defaults.
type LoopOptions struct {
	// MinSyncInterval is the least time between two writes, so a burst
	// of changes becomes one write. Default 100ms.
	MinSyncInterval time.Duration
	// RetryInterval is the wait after a failed write. Default 1s.
	RetryInterval time.Duration
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Tables, if set, reports changes of the table by other programs;
	// see SyncLoop.
	Tables TableWatcher
}

// TableWatcher reports changes of nftables tables by other programs;
// *nftwatch.Watcher is the real one.
type TableWatcher interface {
	// Watch calls notify, which must not block, whenever t may have
	// been changed, until cancel is called.
	Watch(t nftwatch.Table, notify func(nftwatch.Reason)) (cancel func())
}

var _ TableWatcher = (*nftwatch.Watcher)(nil)

// A SyncLoop runs the writes of one nftables table for its owner (the
// service proxy's and the NetworkPolicy Syncers, the pod masquerade
// table): the owner keeps its state and calls MarkDirty on every change
// that matters; Run calls the owner's sync function when the state is
// dirty, at most once per MinSyncInterval so that a burst of changes is
// written once, and again after RetryInterval while writes fail.
//
// With LoopOptions.Tables it also keeps the table in place against other
// programs, without polling: when the watcher reports the table Changed
// (deleted by `nft flush ruleset`, emptied by `nft flush table`) the
// loop makes the writer forget its copy, so the next write is the whole
// table, and marks the state dirty; when it reports Lost (events were
// missed) the loop asks the writer whether the table still exists and
// marks the state dirty if not. The owner's own writes are never
// reported (see package nftwatch), so they cause no second write.
type SyncLoop struct {
	writer RuleWriter
	table  string
	opts   LoopOptions

	mu     sync.Mutex
	dirty  bool
	reason nftwatch.Reason // the strongest unhandled watcher report
	kick   chan struct{}
}

// NewSyncLoop returns a loop for table, written through w.
func NewSyncLoop(w RuleWriter, table string, opts LoopOptions) *SyncLoop {
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = 100 * time.Millisecond
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &SyncLoop{writer: w, table: table, opts: opts, kick: make(chan struct{}, 1)}
}

// MarkDirty schedules a write. It never blocks.
func (l *SyncLoop) MarkDirty() {
	l.mu.Lock()
	l.dirty = true
	l.mu.Unlock()
	l.wake()
}

func (l *SyncLoop) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// tableEvent records a watcher report; Changed outranks Lost.
func (l *SyncLoop) tableEvent(r nftwatch.Reason) {
	l.mu.Lock()
	l.reason = max(l.reason, r)
	l.mu.Unlock()
	l.wake()
}

// Run calls sync whenever the state is dirty, until ctx is cancelled, and
// returns ctx.Err(). sync reports whether it wrote (false: nothing to
// write yet, e.g. before the owner's first full list) and the write's
// error; a failed write is tried again after RetryInterval.
func (l *SyncLoop) Run(ctx context.Context, sync func() (wrote bool, err error)) error {
	if l.opts.Tables != nil {
		defer l.opts.Tables.Watch(nftwatch.Table{Family: nftables.TableFamilyIPv4, Name: l.table}, l.tableEvent)()
	}
	var last time.Time
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.kick:
		case <-retry:
			retry = nil
		}
		l.checkTable()
		// Batch: wait out the rest of the minimum interval, collecting
		// whatever else changes meanwhile.
		if wait := l.opts.MinSyncInterval - l.opts.Now().Sub(last); !last.IsZero() && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		l.mu.Lock()
		dirty := l.dirty
		l.dirty = false
		l.mu.Unlock()
		if !dirty {
			continue
		}
		wrote, err := sync()
		if !wrote {
			continue
		}
		last = l.opts.Now()
		if err != nil {
			// Dirty again, but not kicked: the retry timer wakes the
			// loop, so a failing write is not hammered.
			l.mu.Lock()
			l.dirty = true
			l.mu.Unlock()
			retry = time.After(l.opts.RetryInterval)
		}
	}
}

// checkTable handles a pending watcher report.
func (l *SyncLoop) checkTable() {
	l.mu.Lock()
	r := l.reason
	l.reason = 0
	l.mu.Unlock()
	switch r {
	case nftwatch.Changed:
		l.writer.Forget(l.table)
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
	case nftwatch.Lost:
		// Exists also makes the writer forget a table that is gone.
		if ok, err := l.writer.Exists(l.table); err == nil && !ok {
			l.mu.Lock()
			l.dirty = true
			l.mu.Unlock()
		}
	}
}

// Results delivers the outcome of each write to at most one reader,
// dropping outcomes nobody reads so that writes never wait for a logger.
// The zero value is ready to use.
type Results[T any] struct {
	mu sync.Mutex
	ch chan T
}

// Chan returns the channel of outcomes; call it before the writes start.
func (r *Results[T]) Chan() <-chan T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil {
		r.ch = make(chan T, 16)
	}
	return r.ch
}

// Send delivers v if there is room and someone asked for the channel.
func (r *Results[T]) Send(v T) {
	r.mu.Lock()
	ch := r.ch
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- v:
	default:
	}
}
