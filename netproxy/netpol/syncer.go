package netpol

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/orch-dev/orch/netproxy/keyed"
	"github.com/orch-dev/orch/netproxy/proxy"
)

// SyncerOptions tune the Syncer. Zero values pick the defaults.
type SyncerOptions struct {
	// MinSyncInterval is the least time between two writes, so that a
	// burst of pod changes becomes one write. Default 100ms.
	MinSyncInterval time.Duration
	// CheckInterval is how often the Syncer checks that its table still
	// exists. Default 5s.
	CheckInterval time.Duration
	// RetryInterval is the wait after a failed write. Default 1s.
	RetryInterval time.Duration
}

// SyncResult describes one write, for logging.
type SyncResult struct {
	Policies, PodChains int
	Duration            time.Duration
	Warnings            []Warning
	Err                 error
}

// Syncer keeps the kernel's table equal to Build of the latest
// NetworkPolicies, Pods and Namespaces, which the agent feeds it from its
// watches. Changes only mark the state dirty; Run rebuilds and writes (the
// writer sends only what changed) at most once per MinSyncInterval. It
// writes nothing before all three kinds were listed: a restarting agent
// must not open isolated pods with a table built from a partial picture.
type Syncer struct {
	cfg    Config
	writer proxy.RuleWriter
	opts   SyncerOptions

	mu         sync.Mutex
	policies   keyed.Map[*networkingv1.NetworkPolicy]
	pods       keyed.Map[*v1.Pod]
	namespaces keyed.Map[*v1.Namespace]
	dirty      bool
	results    chan SyncResult

	kick chan struct{}
}

// NewSyncer returns a Syncer writing through w (a *proxy.NFTables).
func NewSyncer(cfg Config, w proxy.RuleWriter, opts SyncerOptions) *Syncer {
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = 100 * time.Millisecond
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 5 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	return &Syncer{cfg: cfg, writer: w, opts: opts, kick: make(chan struct{}, 1)}
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

// change applies f under the lock and, if it reports a change that
// matters, schedules a write.
func (s *Syncer) change(f func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !f() {
		return
	}
	s.dirty = true
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ReplacePolicies sets all NetworkPolicies, e.g. from a list. Objects
// passed to the Syncer must not be modified afterwards.
func (s *Syncer) ReplacePolicies(items []*networkingv1.NetworkPolicy) {
	s.change(func() bool { s.policies.Replace(items); return true })
}

// UpdatePolicy records an added or changed NetworkPolicy.
func (s *Syncer) UpdatePolicy(np *networkingv1.NetworkPolicy) {
	s.change(func() bool { s.policies.Update(np); return true })
}

// DeletePolicy forgets a NetworkPolicy.
func (s *Syncer) DeletePolicy(namespace, name string) {
	s.change(func() bool { s.policies.Delete(namespace, name); return true })
}

// ReplacePods sets all Pods of the cluster.
func (s *Syncer) ReplacePods(items []*v1.Pod) {
	s.change(func() bool { s.pods.Replace(items); return true })
}

// UpdatePod records an added or changed Pod. Most pod updates (status
// conditions, container states) change nothing the rules use and cause
// no write.
func (s *Syncer) UpdatePod(p *v1.Pod) {
	s.change(func() bool {
		old, ok := s.pods.Get(p.Namespace, p.Name)
		s.pods.Update(p)
		return !ok || !samePodForRules(old, p)
	})
}

// DeletePod forgets a Pod.
func (s *Syncer) DeletePod(namespace, name string) {
	s.change(func() bool { s.pods.Delete(namespace, name); return true })
}

// ReplaceNamespaces sets all Namespaces.
func (s *Syncer) ReplaceNamespaces(items []*v1.Namespace) {
	s.change(func() bool { s.namespaces.Replace(items); return true })
}

// UpdateNamespace records an added or changed Namespace; only label
// changes cause a write.
func (s *Syncer) UpdateNamespace(ns *v1.Namespace) {
	s.change(func() bool {
		old, ok := s.namespaces.Get("", ns.Name)
		s.namespaces.Update(ns)
		return !ok || !maps.Equal(old.Labels, ns.Labels)
	})
}

// DeleteNamespace forgets a Namespace.
func (s *Syncer) DeleteNamespace(name string) {
	s.change(func() bool { s.namespaces.Delete("", name); return true })
}

// samePodForRules reports whether two versions of a pod give the same
// rules: same addresses, labels, node and container ports.
func samePodForRules(a, b *v1.Pod) bool {
	if a.Spec.NodeName != b.Spec.NodeName || !maps.Equal(a.Labels, b.Labels) ||
		!slices.Equal(podIPs(a), podIPs(b)) || len(a.Spec.Containers) != len(b.Spec.Containers) {
		return false
	}
	for i := range a.Spec.Containers {
		if !slices.Equal(a.Spec.Containers[i].Ports, b.Spec.Containers[i].Ports) {
			return false
		}
	}
	return true
}

// snapshot returns the state to build from and clears the dirty flag,
// or ok=false when there is nothing to do.
func (s *Syncer) snapshot() (st State, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty || !s.listedLocked() {
		return State{}, false
	}
	s.dirty = false
	return State{Policies: s.policies.Values(0), Pods: s.pods.Values(0), Namespaces: s.namespaces.Values(0)}, true
}

func (s *Syncer) listedLocked() bool {
	return s.policies.Listed() && s.pods.Listed() && s.namespaces.Listed()
}

// Run writes the rules until ctx is cancelled and returns ctx.Err().
// Failed writes are retried and reported on Results; a table deleted by
// hand is written again within CheckInterval.
func (s *Syncer) Run(ctx context.Context) error {
	check := time.NewTicker(s.opts.CheckInterval)
	defer check.Stop()
	var retry <-chan time.Time
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
		res, did := s.syncOnce()
		if !did {
			continue
		}
		if res.Err != nil {
			s.change(func() bool { return true })
			retry = time.After(s.opts.RetryInterval)
		}
		s.report(res)
		// Let a burst of changes gather into the next write.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.opts.MinSyncInterval):
		}
	}
}

func (s *Syncer) checkTable() {
	s.mu.Lock()
	listed := s.listedLocked()
	s.mu.Unlock()
	if !listed {
		return
	}
	if ok, err := s.writer.Exists(s.cfg.table()); err == nil && !ok {
		s.change(func() bool { return true })
	}
}

func (s *Syncer) syncOnce() (SyncResult, bool) {
	st, ok := s.snapshot()
	if !ok {
		return SyncResult{}, false
	}
	start := time.Now()
	rs, warnings := Build(s.cfg, st)
	res := SyncResult{Policies: len(st.Policies), PodChains: len(rs.Chains) - 1, Warnings: warnings}
	if err := s.writer.Apply(rs); err != nil {
		res.Err = fmt.Errorf("sync network policy rules: %w", err)
	}
	res.Duration = time.Since(start)
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
