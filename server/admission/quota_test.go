package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/registry"
)

// fakeQuotas is a QuotaLister over a fixed set of quotas.
type fakeQuotas []*corev1.ResourceQuota

func (f fakeQuotas) List(ns string, _ labels.Selector) []*corev1.ResourceQuota {
	var out []*corev1.ResourceQuota
	for _, q := range f {
		if q.Namespace == ns {
			out = append(out, q)
		}
	}
	return out
}

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

// resourceQuota returns a quota in "ns" as the controller leaves it:
// status.hard = spec.hard and status.used as given.
func resourceQuota(name string, hard, used corev1.ResourceList, scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard, Scopes: scopes},
		Status:     corev1.ResourceQuotaStatus{Hard: hard, Used: used},
	}
}

func podsEntry() *registry.Resource {
	return &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "pods", Kind: "Pod", Namespaced: true}
}

func servicesEntry() *registry.Resource {
	return &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "services", Kind: "Service", Namespaced: true}
}

func pod(name string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app"}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.PodSpec{Containers: containers}}
}

func withResources(name string, requests, limits corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits}}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// create runs r's BeginCreate and, when admitted, its FinishFunc with ok.
func create(t *testing.T, r *registry.Resource, obj runtime.Object, ok bool) error {
	t.Helper()
	f, err := r.BeginCreate(context.Background(), obj)
	if err == nil && f != nil {
		f(context.Background(), ok)
	}
	return err
}

func TestQuotaRefusal(t *testing.T) {
	deadline := int64(30)
	terminating := pod("batch")
	terminating.Spec.ActiveDeadlineSeconds = &deadline
	tests := []struct {
		name   string
		quotas fakeQuotas
		obj    runtime.Object
		want   string
	}{{
		name:   "no quota",
		quotas: nil,
		obj:    pod("web"),
	}, {
		name:   "within quota",
		quotas: fakeQuotas{resourceQuota("compute-resources", rl("pods", "2"), rl("pods", "1"))},
		obj:    pod("web"),
	}, {
		name:   "pods exceeded",
		quotas: fakeQuotas{resourceQuota("compute-resources", rl("pods", "2"), rl("pods", "2"))},
		obj:    pod("web"),
		want:   `pods "web" is forbidden: exceeded quota: compute-resources, requested: pods=1, used: pods=2, limited: pods=2`,
	}, {
		name: "only the exceeded resources are named",
		quotas: fakeQuotas{resourceQuota("compute-resources", rl("pods", "10", "requests.cpu", "1", "requests.memory", "1Gi"),
			rl("pods", "1", "requests.cpu", "800m", "requests.memory", "512Mi"))},
		obj:  pod("web", withResources("app", rl("cpu", "500m", "memory", "100Mi"), nil)),
		want: `pods "web" is forbidden: exceeded quota: compute-resources, requested: requests.cpu=500m, used: requests.cpu=800m, limited: requests.cpu=1`,
	}, {
		name:   "missing limits for a tracked resource",
		quotas: fakeQuotas{resourceQuota("compute-resources", rl("limits.cpu", "2", "requests.memory", "1Gi"), rl("limits.cpu", "0", "requests.memory", "0"))},
		obj:    pod("web", withResources("app", rl("memory", "10Mi"), nil), corev1.Container{Name: "sidecar"}),
		want:   `pods "web" is forbidden: failed quota: compute-resources: must specify limits.cpu for: app,sidecar; requests.memory for: sidecar`,
	}, {
		name:   "usage not computed yet",
		quotas: fakeQuotas{resourceQuota("q", rl("pods", "2", "count/pods", "3"), nil)},
		obj:    pod("web"),
		want:   `pods "web" is forbidden: status unknown for quota: q, resources: count/pods,pods`,
	}, {
		name:   "quota without status is not enforced yet",
		quotas: fakeQuotas{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "new"}, Spec: corev1.ResourceQuotaSpec{Hard: rl("pods", "0")}}},
		obj:    pod("web"),
	}, {
		name:   "other namespace",
		quotas: fakeQuotas{resourceQuota("q", rl("pods", "0"), rl("pods", "0"))},
		obj:    &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "web"}},
	}, {
		name:   "BestEffort scope refuses a best-effort pod",
		quotas: fakeQuotas{resourceQuota("best-effort", rl("pods", "0"), rl("pods", "0"), corev1.ResourceQuotaScopeBestEffort)},
		obj:    pod("web"),
		want:   `pods "web" is forbidden: exceeded quota: best-effort, requested: pods=1, used: pods=0, limited: pods=0`,
	}, {
		name:   "BestEffort scope ignores a burstable pod",
		quotas: fakeQuotas{resourceQuota("best-effort", rl("pods", "0"), rl("pods", "0"), corev1.ResourceQuotaScopeBestEffort)},
		obj:    pod("web", withResources("app", rl("memory", "1Mi"), nil)),
	}, {
		name:   "Terminating scope",
		quotas: fakeQuotas{resourceQuota("t", rl("pods", "0"), rl("pods", "0"), corev1.ResourceQuotaScopeTerminating)},
		obj:    terminating,
		want:   `pods "batch" is forbidden: exceeded quota: t, requested: pods=1, used: pods=0, limited: pods=0`,
	}, {
		name: "several quotas: the first exceeded by name",
		quotas: fakeQuotas{
			resourceQuota("b", rl("count/pods", "1"), rl("count/pods", "1")),
			resourceQuota("a", rl("pods", "5"), rl("pods", "1")),
		},
		obj:  pod("web"),
		want: `pods "web" is forbidden: exceeded quota: b, requested: count/pods=1, used: count/pods=1, limited: count/pods=1`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := podsEntry()
			NewQuota(tt.quotas, QuotaOptions{}).Attach(r)
			err := create(t, r, tt.obj, true)
			if got := errString(err); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
			if err != nil && !apierrors.IsForbidden(err) {
				t.Errorf("error is not 403 Forbidden: %#v", err)
			}
		})
	}
}

func TestQuotaObjectCountsAndServices(t *testing.T) {
	quotas := fakeQuotas{resourceQuota("objects",
		rl("configmaps", "1", "count/deployments.apps", "0", "services.nodeports", "1"),
		rl("configmaps", "1", "count/deployments.apps", "0", "services.nodeports", "1"))}
	q := NewQuota(quotas, QuotaOptions{})

	cms := &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "configmaps", Namespaced: true}
	q.Attach(cms)
	err := create(t, cms, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}}, true)
	if want := `configmaps "c" is forbidden: exceeded quota: objects, requested: configmaps=1, used: configmaps=1, limited: configmaps=1`; errString(err) != want {
		t.Errorf("configmap: got %q, want %q", errString(err), want)
	}

	deploys := &registry.Resource{GroupVersion: schema.GroupVersion{Group: "apps", Version: "v1"}, Name: "deployments", Namespaced: true}
	q.Attach(deploys)
	err = create(t, deploys, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"}}, true)
	if want := `deployments.apps "d" is forbidden: exceeded quota: objects, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0`; errString(err) != want {
		t.Errorf("deployment: got %q, want %q", errString(err), want)
	}

	// Updates are charged what they add: ClusterIP → NodePort adds a port.
	svcs := servicesEntry()
	q.Attach(svcs)
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", ResourceVersion: "5"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80}}}}
	updated := old.DeepCopy()
	updated.Spec.Type = corev1.ServiceTypeNodePort
	_, err = svcs.BeginUpdate(context.Background(), updated, old)
	if want := `services "web" is forbidden: exceeded quota: objects, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1`; errString(err) != want {
		t.Errorf("service update: got %q, want %q", errString(err), want)
	}
	// An update that adds nothing passes, and a pod update is never charged.
	if _, err := svcs.BeginUpdate(context.Background(), old.DeepCopy(), old); err != nil {
		t.Errorf("no-op service update: %v", err)
	}
	// Cluster-scoped resources are not touched.
	nodes := &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "nodes"}
	q.Attach(nodes)
	if nodes.BeginCreate != nil || nodes.BeginUpdate != nil {
		t.Error("quota attached to a cluster-scoped resource")
	}
}

func TestQuotaReservations(t *testing.T) {
	quotas := fakeQuotas{resourceQuota("q", rl("pods", "2"), rl("pods", "0"))}
	q := NewQuota(quotas, QuotaOptions{})
	r := podsEntry()
	q.Attach(r)
	ctx := context.Background()

	if err := create(t, r, pod("p1"), true); err != nil {
		t.Fatalf("p1: %v", err)
	}
	f2, err := r.BeginCreate(ctx, pod("p2"))
	if err != nil {
		t.Fatalf("p2: %v", err)
	}
	// p1 is stored and p2 in flight: both count.
	err = create(t, r, pod("p3"), true)
	if want := `pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`; errString(err) != want {
		t.Fatalf("p3: got %q, want %q", errString(err), want)
	}
	// p2's write fails: its reservation goes, p3 now fits.
	f2(ctx, false)
	if err := create(t, r, pod("p3"), true); err != nil {
		t.Fatalf("p3 after p2 failed: %v", err)
	}
	if err := create(t, r, pod("p4"), true); err == nil {
		t.Fatal("p4 admitted over quota")
	}

	// The controller lists p1 and p3 after a snapshot and reports them: the
	// admitted changes are dropped, not counted twice.
	snap := q.Snapshot()
	observed := quotas[0].DeepCopy()
	observed.Status.Used = rl("pods", "1") // one of them was deleted meanwhile
	q.Observe(observed, snap, nil)
	if err := create(t, r, pod("p5"), true); err != nil {
		t.Fatalf("p5 after the controller observed pods=1: %v", err)
	}
	if err := create(t, r, pod("p6"), true); err == nil {
		t.Fatal("p6 admitted over quota")
	}
}

func listedNames(names ...string) func(schema.GroupResource, string) bool {
	return func(_ schema.GroupResource, name string) bool {
		for _, n := range names {
			if n == name {
				return true
			}
		}
		return false
	}
}

func TestQuotaObserveDuringWrite(t *testing.T) {
	quotas := fakeQuotas{resourceQuota("q", rl("pods", "2"), rl("pods", "0"))}
	q := NewQuota(quotas, QuotaOptions{})
	r := podsEntry()
	q.Attach(r)
	ctx := context.Background()
	observed := quotas[0].DeepCopy()

	// A create is admitted, the controller snapshots, lists (already seeing
	// the new pod) and observes, and only then does the write finish: the
	// listing counts it, the change goes.
	f, err := r.BeginCreate(ctx, pod("p1"))
	if err != nil {
		t.Fatal(err)
	}
	snap := q.Snapshot()
	observed.Status.Used = rl("pods", "1")
	if q.Observe(observed, snap, listedNames("p1")) {
		t.Error("a listed create needs no recheck")
	}
	f(ctx, true)
	if err := create(t, r, pod("p2"), true); err != nil {
		t.Fatalf("p2: %v", err)
	}
	if err := create(t, r, pod("p3"), true); err == nil {
		t.Fatal("p3 admitted over quota")
	}

	// A create the listing missed (stored after it, or admitted after the
	// snapshot) keeps counting.
	q2 := NewQuota(quotas, QuotaOptions{})
	r2 := podsEntry()
	q2.Attach(r2)
	f, err = r2.BeginCreate(ctx, pod("a"))
	if err != nil {
		t.Fatal(err)
	}
	snap = q2.Snapshot()
	if err := create(t, r2, pod("b"), true); err != nil {
		t.Fatal(err)
	}
	observed.Status.Used = rl("pods", "0")
	q2.Observe(observed, snap, listedNames())
	f(ctx, true)
	err = create(t, r2, pod("c"), true)
	if want := `pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`; errString(err) != want {
		t.Fatalf("c: got %q, want %q", errString(err), want)
	}
	// Once both are listed, they count once.
	observed.Status.Used = rl("pods", "2")
	q2.Observe(observed, q2.Snapshot(), listedNames("a", "b"))
	if err := create(t, r2, pod("c"), true); err == nil {
		t.Fatal("c admitted over quota")
	}
	observed.Status.Used = rl("pods", "1")
	q2.Observe(observed, q2.Snapshot(), listedNames("a"))
	if err := create(t, r2, pod("c"), true); err != nil {
		t.Fatalf("c after b was deleted: %v", err)
	}

	// A deleted quota is forgotten: the lister's status counts again.
	q2.Forget("ns", quotas[0].UID)
	if err := create(t, r2, pod("d"), true); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

func TestQuotaObserveDuringUpdate(t *testing.T) {
	quotas := fakeQuotas{resourceQuota("q", rl("services.nodeports", "2"), rl("services.nodeports", "0"))}
	q := NewQuota(quotas, QuotaOptions{})
	r := servicesEntry()
	q.Attach(r)
	ctx := context.Background()
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", ResourceVersion: "5"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	nodePort := old.DeepCopy()
	nodePort.Spec.Type = corev1.ServiceTypeNodePort

	f, err := r.BeginUpdate(ctx, nodePort, old)
	if err != nil {
		t.Fatal(err)
	}
	snap := q.Snapshot()
	observed := quotas[0].DeepCopy()
	observed.Status.Used = rl("services.nodeports", "1") // it did see the new state
	if !q.Observe(observed, snap, listedNames("web")) {
		t.Error("an update in flight needs a recheck")
	}
	f(ctx, true)
	// Counted twice until the recheck: never less.
	_, err = r.BeginUpdate(ctx, nodePort, old)
	if want := `services "web" is forbidden: exceeded quota: q, requested: services.nodeports=1, used: services.nodeports=2, limited: services.nodeports=2`; errString(err) != want {
		t.Fatalf("got %q, want %q", errString(err), want)
	}
	if q.Observe(observed, q.Snapshot(), listedNames("web")) {
		t.Error("recheck asked for a finished update")
	}
	if _, err := r.BeginUpdate(ctx, nodePort, old); err != nil {
		t.Fatalf("after the recheck: %v", err)
	}
}

func TestQuotaChainsWithExistingHooks(t *testing.T) {
	type call struct {
		hook    string
		success bool
	}
	var calls []call
	var refuse error
	r := servicesEntry()
	r.BeginCreate = func(_ context.Context, obj runtime.Object) (registry.FinishFunc, error) {
		calls = append(calls, call{hook: "allocate"})
		if refuse != nil {
			return nil, refuse
		}
		return func(_ context.Context, ok bool) { calls = append(calls, call{"allocate-finish", ok}) }, nil
	}
	r.BeginUpdate = func(_ context.Context, obj, old runtime.Object) (registry.FinishFunc, error) {
		calls = append(calls, call{hook: "allocate-update"})
		return nil, nil
	}
	quotas := fakeQuotas{resourceQuota("q", rl("services", "1"), rl("services", "0"))}
	NewQuota(quotas, QuotaOptions{}).Attach(r)
	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	}

	// The allocator refuses: quota's reservation is released.
	refuse = apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "a", nil)
	if err := create(t, r, svc("a"), true); !errors.Is(err, refuse) {
		t.Fatalf("allocator error not passed through: %v", err)
	}
	refuse = nil
	calls = nil
	if err := create(t, r, svc("b"), true); err != nil {
		t.Fatalf("b after the allocator refused a: %v", err)
	}
	if want := []call{{"allocate", false}, {"allocate-finish", true}}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls = %v, want %v", calls, want)
	}

	// Quota refuses: the allocator is never asked.
	calls = nil
	if err := create(t, r, svc("c"), true); !apierrors.IsForbidden(err) {
		t.Fatalf("c: %v", err)
	}
	if len(calls) != 0 {
		t.Errorf("allocator called for a refused service: %v", calls)
	}

	// Updates reach the existing hook too.
	old := svc("b")
	old.ResourceVersion = "3"
	if _, err := r.BeginUpdate(context.Background(), old.DeepCopy(), old); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(calls) != fmt.Sprint([]call{{hook: "allocate-update"}}) {
		t.Errorf("update calls = %v", calls)
	}
}

func TestQuotaConcurrentCreates(t *testing.T) {
	quotas := fakeQuotas{resourceQuota("q", rl("pods", "5"), rl("pods", "0"))}
	q := NewQuota(quotas, QuotaOptions{})
	r := podsEntry()
	q.Attach(r)
	var admitted atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			f, err := r.BeginCreate(context.Background(), pod(fmt.Sprintf("p%d", i)))
			if err != nil {
				return
			}
			admitted.Add(1)
			f(context.Background(), true)
		})
		if i == 20 {
			wg.Go(func() { q.Observe(quotas[0], q.Snapshot(), nil) })
		}
	}
	wg.Wait()
	// The observation may drop changes it "saw" (the fake listing saw
	// none), so at least the quota's worth and never fewer were admitted.
	if n := admitted.Load(); n < 5 {
		t.Errorf("admitted %d pods, want at least 5", n)
	}
	q2 := NewQuota(quotas, QuotaOptions{})
	r2 := podsEntry()
	q2.Attach(r2)
	admitted.Store(0)
	for i := range 40 {
		wg.Go(func() {
			if _, err := r2.BeginCreate(context.Background(), pod(fmt.Sprintf("p%d", i))); err == nil {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 5 {
		t.Errorf("without observations admitted %d pods, want exactly 5", n)
	}
}
