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

// SyncerOptions tune the Syncer: the minimum interval between writes, the
// wait after a failed one, and the table watcher that reports other
// programs' changes to the table (see proxy.SyncLoop).
type SyncerOptions = proxy.LoopOptions

// SyncResult describes one write, for logging.
type SyncResult struct {
	Policies, PodChains int
	Duration            time.Duration
	Warnings            []Warning
	Err                 error
}

// Syncer keeps the kernel's table equal to Build of the latest
// NetworkPolicies, Pods and Namespaces, which the agent feeds it from its
// watches. Changes only mark the state dirty; Run (the service proxy's
// SyncLoop) rebuilds and writes (the writer sends only what changed) at
// most once per MinSyncInterval. It writes nothing before all three kinds
// were listed: a restarting agent must not open isolated pods with a
// table built from a partial picture.
type Syncer struct {
	cfg    Config
	writer proxy.RuleWriter

	mu         sync.Mutex
	policies   keyed.Map[*networkingv1.NetworkPolicy]
	pods       keyed.Map[*v1.Pod]
	namespaces keyed.Map[*v1.Namespace]

	loop    *proxy.SyncLoop
	results proxy.Results[SyncResult]
}

// NewSyncer returns a Syncer writing through w (a *proxy.NFTables).
func NewSyncer(cfg Config, w proxy.RuleWriter, opts SyncerOptions) *Syncer {
	return &Syncer{cfg: cfg, writer: w, loop: proxy.NewSyncLoop(w, cfg.table(), opts)}
}

// Results returns a channel that receives the outcome of every write. It
// must be called before Run; results are dropped when nobody reads.
func (s *Syncer) Results() <-chan SyncResult { return s.results.Chan() }

// change applies f under the lock and, if it reports a change that
// matters, schedules a write.
func (s *Syncer) change(f func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f() {
		s.loop.MarkDirty()
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

// snapshot returns the state to build from, or ok=false before all three
// kinds were listed.
func (s *Syncer) snapshot() (st State, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.policies.Listed() || !s.pods.Listed() || !s.namespaces.Listed() {
		return State{}, false
	}
	return State{Policies: s.policies.Values(0), Pods: s.pods.Values(0), Namespaces: s.namespaces.Values(0)}, true
}

// Run writes the rules until ctx is cancelled and returns ctx.Err().
// Failed writes are retried and reported on Results; a table another
// program deleted or emptied is written again when Tables reports it.
func (s *Syncer) Run(ctx context.Context) error {
	return s.loop.Run(ctx, s.syncOnce)
}

// syncOnce builds and writes the table once all three kinds were listed,
// and reports the outcome on Results.
func (s *Syncer) syncOnce() (wrote bool, err error) {
	st, ok := s.snapshot()
	if !ok {
		return false, nil
	}
	start := time.Now()
	rs, warnings := Build(s.cfg, st)
	res := SyncResult{Policies: len(st.Policies), PodChains: len(rs.Chains) - 1, Warnings: warnings}
	if err := s.writer.Apply(rs); err != nil {
		res.Err = fmt.Errorf("sync network policy rules: %w", err)
	}
	res.Duration = time.Since(start)
	s.results.Send(res)
	return true, res.Err
}
