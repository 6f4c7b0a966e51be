package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/admission/quota"
	"github.com/orch-dev/orch/server/registry"
)

// QuotaLister reads the ResourceQuotas of a namespace.
// informer.Lister[*corev1.ResourceQuota] is one.
type QuotaLister interface {
	List(namespace string, sel labels.Selector) []*corev1.ResourceQuota
}

// QuotaOptions configure quota admission.
type QuotaOptions struct {
	// Now is the clock deciding whether a deleted pod still counts
	// (default time.Now).
	Now func() time.Time
	// MaxChangeAge bounds how long a committed change is kept without a
	// controller observation covering it (default 15 minutes, three full
	// resyncs of the quota controller): a safety net, not a mechanism.
	MaxChangeAge time.Duration
}

// Quota is the ResourceQuota admission check. A write to a namespaced
// resource is refused (403) when it would take a quota of its namespace
// over status.hard, with Kubernetes' messages.
//
// Usage is status.used as last computed by the quota controller plus the
// changes admitted since. A change is reserved when its write is admitted,
// so that concurrent writes cannot both take the last unit, and released
// when the write fails. The controller calls Snapshot before it lists the
// objects of a namespace and Observe with the usage it computed and what it
// listed; Observe drops the changes that listing includes: writes finished
// before the snapshot, and creates of objects it listed. Other updates may
// or may not be in the listing: they keep counting (quota never
// under-counts) and Observe asks the controller to look again shortly.
type Quota struct {
	quotas QuotaLister
	opts   QuotaOptions

	mu  sync.Mutex
	seq uint64
	// tracked holds, per namespace and quota uid, the usage observed by the
	// controller and the changes admitted since.
	tracked map[string]map[types.UID]*trackedQuota
}

type trackedQuota struct {
	observed   bool
	hard, used corev1.ResourceList
	changes    []*change
}

// change is one admitted write's usage.
type change struct {
	seq   uint64
	delta corev1.ResourceList
	at    time.Time
	// create: the write creates object name of resource gr.
	create bool
	gr     schema.GroupResource
	name   string
	// committed: the write is stored; done is the clock when it was.
	committed bool
	done      uint64
}

// NewQuota returns quota admission reading quotas through lister.
func NewQuota(lister QuotaLister, opts QuotaOptions) *Quota {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxChangeAge <= 0 {
		opts.MaxChangeAge = 15 * time.Minute
	}
	return &Quota{quotas: lister, opts: opts, tracked: map[string]map[types.UID]*trackedQuota{}}
}

// Attach makes r's creates and updates pass quota admission first, then the
// hooks r already has. Cluster-scoped resources are left alone. Entries
// that serve another entry's objects (Storage set) are counted as that
// resource.
func (q *Quota) Attach(r *registry.Resource) {
	if !r.Namespaced {
		return
	}
	gr := r.StorageResource().GroupVersionResource().GroupResource()
	served := r.GroupVersionResource().GroupResource()
	chainCreate(r, func(_ context.Context, obj runtime.Object) (registry.FinishFunc, error) {
		return q.admit(gr, served, obj, nil, quota.Create)
	})
	chainUpdate(r, func(_ context.Context, obj, old runtime.Object) (registry.FinishFunc, error) {
		return q.admit(gr, served, obj, old, quota.Update)
	})
}

// Snapshot returns the clock (admissions and finished writes) to pass to
// Observe; take it before listing.
func (q *Quota) Snapshot() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.seq
}

// Observe records the usage the quota controller computed for rq
// (rq.Status.Hard and rq.Status.Used) from a listing that began after
// Snapshot returned snapshot; listed reports whether the listing had the
// object name of resource gr in rq's namespace. recheck reports admitted
// updates the listing may or may not include: they are counted on top
// until an observation settles them, so observe again shortly.
func (q *Quota) Observe(rq *corev1.ResourceQuota, snapshot uint64, listed func(gr schema.GroupResource, name string) bool) (recheck bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.entryLocked(rq)
	t.observed = true
	t.hard = rq.Status.Hard.DeepCopy()
	t.used = rq.Status.Used.DeepCopy()
	kept := t.changes[:0]
	for _, c := range t.changes {
		switch {
		case c.committed && c.done <= snapshot:
			// Stored before the listing began.
		case c.create && listed != nil && listed(c.gr, c.name):
			// Listed: its create is stored (or the name was taken and the
			// create will fail), either way counted by the listing.
		default:
			// A create not listed is not in the usage: keep it. An update
			// may have been listed in its old or new state.
			recheck = recheck || !c.create
			kept = append(kept, c)
		}
	}
	clear(t.changes[len(kept):])
	t.changes = kept
	return recheck
}

// Forget drops what is tracked for a deleted quota.
func (q *Quota) Forget(namespace string, uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if byUID := q.tracked[namespace]; byUID != nil {
		delete(byUID, uid)
		if len(byUID) == 0 {
			delete(q.tracked, namespace)
		}
	}
}

func (q *Quota) entryLocked(rq *corev1.ResourceQuota) *trackedQuota {
	byUID := q.tracked[rq.Namespace]
	if byUID == nil {
		byUID = map[types.UID]*trackedQuota{}
		q.tracked[rq.Namespace] = byUID
	}
	t := byUID[rq.UID]
	if t == nil {
		t = &trackedQuota{}
		byUID[rq.UID] = t
	}
	return t
}

// pruneLocked drops entries of quotas that are gone from ns and changes
// that outlived MaxChangeAge.
func (q *Quota) pruneLocked(ns string, present []*corev1.ResourceQuota, now time.Time) {
	byUID := q.tracked[ns]
	for uid, t := range byUID {
		if !slices.ContainsFunc(present, func(rq *corev1.ResourceQuota) bool { return rq.UID == uid }) {
			delete(byUID, uid)
			continue
		}
		t.changes = slices.DeleteFunc(t.changes, func(c *change) bool {
			return c.committed && now.Sub(c.at) > q.opts.MaxChangeAge
		})
	}
}

// usageLocked is the current usage of rq: observed (or status) usage plus
// the changes admitted since, in flight or stored.
func (t *trackedQuota) usageLocked(rq *corev1.ResourceQuota) (hard, used corev1.ResourceList) {
	hard, used = rq.Status.Hard, rq.Status.Used
	if t.observed {
		hard, used = t.hard, t.used
	}
	for _, c := range t.changes {
		used = quota.Add(used, c.delta)
	}
	return hard, used
}

// charge is what one admitted write adds to one quota.
type charge struct {
	entry  *trackedQuota
	change *change
}

// admit checks one write against the quotas of its namespace and reserves
// its usage. served names the resource in error messages.
func (q *Quota) admit(gr, served schema.GroupResource, obj, old runtime.Object, op quota.Operation) (registry.FinishFunc, error) {
	if !quota.Handles(gr, op) {
		return nil, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	ns := m.GetNamespace()
	if ns == "" {
		return nil, nil
	}
	quotas := q.quotas.List(ns, labels.Everything())
	if len(quotas) == 0 {
		return nil, nil
	}
	slices.SortFunc(quotas, func(a, b *corev1.ResourceQuota) int { return strings.Compare(a.Name, b.Name) })
	now := q.opts.Now()
	input := quota.Usage(gr, obj, now)
	var prev corev1.ResourceList
	if op == quota.Update && old != nil {
		// An update is charged what it adds; "create on update" (no stored
		// version) is charged in full.
		if om, err := meta.Accessor(old); err == nil && om.GetResourceVersion() != "" {
			prev = quota.Usage(gr, old, now)
		}
	}
	forbidden := func(err error) error { return apierrors.NewForbidden(served, m.GetName(), err) }

	q.mu.Lock()
	defer q.mu.Unlock()
	q.pruneLocked(ns, quotas, now)
	var charges []charge
	for _, rq := range quotas {
		t := q.entryLocked(rq)
		hard, used := t.usageLocked(rq)
		restricted := quota.MatchingResources(gr, quota.ResourceNames(hard))
		if len(restricted) == 0 || !quota.MatchesScopes(rq, gr, obj) {
			continue
		}
		if err := quota.Constraints(gr, restricted, obj); err != nil {
			return nil, forbidden(fmt.Errorf("failed quota: %s: %w", rq.Name, err))
		}
		if missing := missingUsage(used, restricted); len(missing) > 0 {
			return nil, forbidden(fmt.Errorf("status unknown for quota: %s, resources: %s", rq.Name, quota.PrettyPrintNames(missing)))
		}
		d := input
		if prev != nil && quota.MatchesScopes(rq, gr, old) {
			d = quota.SubtractNonNegative(input, prev)
		}
		requested := quota.Mask(quota.RemoveZeros(d), quota.ResourceNames(hard))
		if len(requested) == 0 {
			continue
		}
		newUsage := quota.Mask(quota.Add(used, requested), quota.ResourceNames(requested))
		if ok, exceeded := quota.LessThanOrEqual(newUsage, hard); !ok {
			return nil, forbidden(fmt.Errorf("exceeded quota: %s, requested: %s, used: %s, limited: %s", rq.Name,
				quota.PrettyPrint(quota.Mask(requested, exceeded)),
				quota.PrettyPrint(quota.Mask(used, exceeded)),
				quota.PrettyPrint(quota.Mask(hard, exceeded))))
		}
		charges = append(charges, charge{entry: t, change: &change{delta: requested, at: now,
			create: op == quota.Create, gr: gr, name: m.GetName()}})
	}
	if len(charges) == 0 {
		return nil, nil
	}
	// Reserve only once every quota allowed the write.
	q.seq++
	for _, c := range charges {
		c.change.seq = q.seq
		c.entry.changes = append(c.entry.changes, c.change)
	}
	return func(_ context.Context, success bool) { q.finish(charges, success) }, nil
}

// finish commits the charges of a stored write, or releases them.
func (q *Quota) finish(charges []charge, success bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	for _, c := range charges {
		if success {
			c.change.committed, c.change.done = true, q.seq
			continue
		}
		c.entry.changes = slices.DeleteFunc(c.entry.changes, func(x *change) bool { return x == c.change })
	}
}

// missingUsage returns the names among restricted that used lacks: the
// controller has not computed them yet.
func missingUsage(used corev1.ResourceList, restricted []corev1.ResourceName) []corev1.ResourceName {
	var out []corev1.ResourceName
	for _, name := range restricted {
		if _, ok := used[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}
