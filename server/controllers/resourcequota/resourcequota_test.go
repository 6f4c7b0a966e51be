package resourcequota

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/admission/quota"
	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var (
	podsGVR     = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	servicesGVR = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	claimsGVR   = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	cmGVR       = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	deployGVR   = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

func newAPI(t *testing.T) *fakeapi.API {
	t.Helper()
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	return fakeapi.New(table.Resources()...)
}

// observer records what the controller reports to quota admission.
type observer struct {
	mu        sync.Mutex
	seq       uint64
	observed  map[string]corev1.ResourceList
	snapshots map[string]uint64
	forgotten []types.UID
	// inFlight[name] Observe calls for name ask for a recheck.
	inFlight     map[string]int
	observations map[string]int
}

func (o *observer) Snapshot() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	return o.seq
}

func (o *observer) Observe(q *corev1.ResourceQuota, snapshot uint64, _ func(schema.GroupResource, string) bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.observed[q.Name] = q.Status.Used.DeepCopy()
	o.snapshots[q.Name] = snapshot
	o.observations[q.Name]++
	if o.inFlight[q.Name] > 0 {
		o.inFlight[q.Name]--
		return true
	}
	return false
}

func (o *observer) Forget(_ string, uid types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forgotten = append(o.forgotten, uid)
}

func (o *observer) used(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return quota.PrettyPrint(o.observed[name])
}

func run(t *testing.T, api *fakeapi.API, opts Options) *observer {
	t.Helper()
	obs := &observer{observed: map[string]corev1.ResourceList{}, snapshots: map[string]uint64{},
		inFlight: map[string]int{"recheck": 2}, observations: map[string]int{}}
	opts.Logger = quiet
	opts.Usage = obs
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, opts)
	controllertest.Run(t, factory.Run, c.Run)
	return obs
}

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func newQuota(ns, name string, hard corev1.ResourceList, scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ResourceQuotaSpec{Hard: hard, Scopes: scopes}}
}

func newPod(ns, name string, requests, limits corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app",
			Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits}}}}}
}

func getQuota(t *testing.T, api *fakeapi.API, ns, name string) *corev1.ResourceQuota {
	t.Helper()
	obj, err := api.Get(context.Background(), QuotasGVR, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.ResourceQuota)
}

// waitUsed waits until the stored quota's status.used prints as want.
func waitUsed(t *testing.T, api *fakeapi.API, ns, name, want string) *corev1.ResourceQuota {
	t.Helper()
	var q *corev1.ResourceQuota
	if !controllertest.WaitUntil(5*time.Second, func() bool {
		q = getQuota(t, api, ns, name)
		return quota.PrettyPrint(q.Status.Used) == want
	}) {
		t.Fatalf("quota %s/%s used:\n got %s\nwant %s", ns, name, quota.PrettyPrint(q.Status.Used), want)
	}
	return q
}

func TestUsageOfANamespace(t *testing.T) {
	api := newAPI(t)
	class := "gold"
	api.MustCreate(podsGVR, newPod("ns", "a", rl("cpu", "100m", "memory", "64Mi"), rl("cpu", "200m", "memory", "128Mi")))
	api.MustCreate(podsGVR, newPod("ns", "b", rl("cpu", "1"), rl("cpu", "1")))
	done := newPod("ns", "done", rl("cpu", "5"), nil)
	done.Status.Phase = corev1.PodSucceeded
	api.MustCreate(podsGVR, done)
	api.MustCreate(podsGVR, newPod("other", "elsewhere", rl("cpu", "7"), nil))
	api.MustCreate(servicesGVR, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "np"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}, {Port: 443}}}})
	api.MustCreate(servicesGVR, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cip"}})
	api.MustCreate(cmGVR, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}})
	api.MustCreate(claimsGVR, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: rl("storage", "5Gi")}}})
	api.MustCreate(deployGVR, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"}})

	hard := rl("pods", "10", "count/pods", "10", "requests.cpu", "4", "limits.memory", "1Gi",
		"services", "5", "services.nodeports", "5", "configmaps", "5", "secrets", "5",
		"persistentvolumeclaims", "5", "requests.storage", "50Gi", "gold.storageclass.storage.k8s.io/requests.storage", "10Gi",
		"count/deployments.apps", "2", "resourcequotas", "1")
	api.MustCreate(QuotasGVR, newQuota("ns", "all", hard))
	obs := run(t, api, Options{})

	want := "configmaps=1,count/deployments.apps=1,count/pods=3,gold.storageclass.storage.k8s.io/requests.storage=5Gi," +
		"limits.memory=128Mi,persistentvolumeclaims=1,pods=2,requests.cpu=1100m,requests.storage=5Gi,resourcequotas=1," +
		"secrets=0,services=2,services.nodeports=2"
	q := waitUsed(t, api, "ns", "all", want)
	if !quota.Equals(q.Status.Hard, hard) {
		t.Errorf("status.hard = %v, want spec.hard", quota.PrettyPrint(q.Status.Hard))
	}
	if got := obs.used("all"); got != want {
		t.Errorf("observed usage %s, want %s", got, want)
	}
}

func TestRecalculatesOnChanges(t *testing.T) {
	api := newAPI(t)
	api.MustCreate(QuotasGVR, newQuota("ns", "compute", rl("pods", "5", "requests.cpu", "2")))
	api.MustCreate(QuotasGVR, newQuota("ns", "objects", rl("configmaps", "5")))
	obs := run(t, api, Options{})
	waitUsed(t, api, "ns", "compute", "pods=0,requests.cpu=0")

	ctx := context.Background()
	api.MustCreate(podsGVR, newPod("ns", "a", rl("cpu", "500m"), nil))
	api.MustCreate(podsGVR, newPod("ns", "b", rl("cpu", "250m"), nil))
	waitUsed(t, api, "ns", "compute", "pods=2,requests.cpu=750m")

	// A pod that finishes stops counting.
	obj, err := api.Get(ctx, podsGVR, "ns", "a")
	if err != nil {
		t.Fatal(err)
	}
	finished := obj.(*corev1.Pod).DeepCopy()
	finished.Status.Phase = corev1.PodFailed
	if _, err := api.Update(ctx, podsGVR, finished, "status", "test"); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, api, "ns", "compute", "pods=1,requests.cpu=250m")

	// A deleted pod too.
	if _, err := api.Delete(ctx, podsGVR, "ns", "b", nil); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, api, "ns", "compute", "pods=0,requests.cpu=0")

	// Config maps are counted by the other quota.
	api.MustCreate(cmGVR, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}})
	waitUsed(t, api, "ns", "objects", "configmaps=1")

	// A spec change is reflected in status.hard and recomputed.
	q := getQuota(t, api, "ns", "compute")
	q.Spec.Hard = rl("pods", "1", "count/pods", "3")
	if _, err := api.Update(ctx, QuotasGVR, q, "", "test"); err != nil {
		t.Fatal(err)
	}
	q = waitUsed(t, api, "ns", "compute", "count/pods=1,pods=0")
	if got := quota.PrettyPrint(q.Status.Hard); got != "count/pods=3,pods=1" {
		t.Errorf("status.hard = %s", got)
	}

	// Deleting a quota tells admission to forget it.
	if _, err := api.Delete(ctx, QuotasGVR, "ns", "objects", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "the deleted quota to be forgotten", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.forgotten) == 1
	})
}

func TestScopedQuota(t *testing.T) {
	api := newAPI(t)
	deadline := int64(60)
	batch := newPod("ns", "batch", nil, nil)
	batch.Spec.ActiveDeadlineSeconds = &deadline
	api.MustCreate(podsGVR, batch)
	api.MustCreate(podsGVR, newPod("ns", "web", rl("memory", "1Gi"), rl("memory", "1Gi")))
	api.MustCreate(QuotasGVR, newQuota("ns", "best-effort", rl("pods", "5"), corev1.ResourceQuotaScopeBestEffort))
	api.MustCreate(QuotasGVR, newQuota("ns", "long-running", rl("pods", "5", "limits.memory", "4Gi"), corev1.ResourceQuotaScopeNotTerminating))
	api.MustCreate(QuotasGVR, newQuota("ns", "services", rl("services", "5"), corev1.ResourceQuotaScopeBestEffort))
	api.MustCreate(servicesGVR, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}})
	run(t, api, Options{})
	waitUsed(t, api, "ns", "best-effort", "pods=1")
	waitUsed(t, api, "ns", "long-running", "limits.memory=1Gi,pods=1")
	// Scopes select pods only.
	waitUsed(t, api, "ns", "services", "services=0")
}

func TestResync(t *testing.T) {
	api := newAPI(t)
	api.MustCreate(QuotasGVR, newQuota("ns", "deploys", rl("count/deployments.apps", "5")))
	run(t, api, Options{ResyncPeriod: 20 * time.Millisecond})
	waitUsed(t, api, "ns", "deploys", "count/deployments.apps=0")
	// Deployments are not watched: the periodic resync counts them.
	api.MustCreate(deployGVR, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"}})
	waitUsed(t, api, "ns", "deploys", "count/deployments.apps=1")
}

func TestRecalculatesAfterWritesInFlight(t *testing.T) {
	api := newAPI(t)
	api.MustCreate(QuotasGVR, newQuota("ns", "recheck", rl("pods", "5")))
	obs := run(t, api, Options{})
	waitUsed(t, api, "ns", "recheck", "pods=0")
	// The observer reported writes in flight twice: the quota is observed
	// a third time without any event.
	controllertest.Eventually(t, 5*time.Second, "a third observation", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.observations["recheck"] >= 3
	})
}
