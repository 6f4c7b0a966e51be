package namespace

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newController(api *fakeapi.API) *Controller {
	return New(api, informer.NewFactory(api, quiet), Options{Logger: quiet})
}

func createNamespace(api *fakeapi.API, name string, finalizers ...corev1.FinalizerName) {
	if len(finalizers) == 0 {
		finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
	}
	api.MustCreate(fakeapi.Namespaces, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NamespaceSpec{Finalizers: finalizers},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	})
}

func deleteNamespace(t *testing.T, api *fakeapi.API, name string) {
	t.Helper()
	if _, err := api.Delete(context.Background(), fakeapi.Namespaces, "", name, nil); err != nil {
		t.Fatal(err)
	}
}

func getNamespace(t *testing.T, api *fakeapi.API, name string) *corev1.Namespace {
	t.Helper()
	obj, err := api.Get(context.Background(), fakeapi.Namespaces, "", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Namespace)
}

func condition(ns *corev1.Namespace, t corev1.NamespaceConditionType) corev1.NamespaceCondition {
	if c := findCondition(ns.Status.Conditions, t); c != nil {
		return *c
	}
	return corev1.NamespaceCondition{}
}

func configMap(ns, name string, finalizers ...string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: finalizers}}
}

func requeueDelay(t *testing.T, err error) time.Duration {
	t.Helper()
	if err == nil {
		t.Fatal("reconcile returned nil, want a requeue")
	}
	d, ok := queue.RequeueDelay(err)
	if !ok {
		t.Fatalf("reconcile error %q is not a requeue", err)
	}
	return d
}

func TestTerminatingNamespaceIsEmptiedThenFinalized(t *testing.T) {
	api := fakeapi.New()
	ctx := context.Background()
	createNamespace(api, "doomed")
	createNamespace(api, "other")
	api.MustCreate(fakeapi.ConfigMaps, configMap("doomed", "cm"))
	api.MustCreate(fakeapi.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "doomed", Name: "s"}})
	api.MustCreate(fakeapi.Events, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "doomed", Name: "e"}})
	api.MustCreate(fakeapi.Pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "doomed", Name: "unscheduled"}})
	grace := int64(30)
	api.MustCreate(fakeapi.Pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "doomed", Name: "running"},
		Spec:       corev1.PodSpec{NodeName: "node1", TerminationGracePeriodSeconds: &grace},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})
	api.MustCreate(fakeapi.ConfigMaps, configMap("other", "survivor"))
	deleteNamespace(t, api, "doomed")

	c := newController(api)
	// The running pod waits for its grace period: requeue after half of it.
	err := c.reconcile(ctx, "doomed")
	if d := requeueDelay(t, err); d != 16*time.Second {
		t.Fatalf("requeue after %v, want 16s (grace 30 s / 2 + 1)", d)
	}
	for _, gone := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{fakeapi.ConfigMaps, "cm"}, {fakeapi.Secrets, "s"}, {fakeapi.Events, "e"}, {fakeapi.Pods, "unscheduled"}} {
		if api.Exists(gone.gvr, "doomed", gone.name) {
			t.Errorf("%s %s not deleted", gone.gvr.Resource, gone.name)
		}
	}
	if !api.Exists(fakeapi.Pods, "doomed", "running") {
		t.Fatal("running pod deleted before its grace period")
	}
	if !api.Exists(fakeapi.ConfigMaps, "other", "survivor") {
		t.Fatal("object in another namespace deleted")
	}
	ns := getNamespace(t, api, "doomed")
	if ns.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("phase %q, want Terminating", ns.Status.Phase)
	}
	wantConditions := []struct {
		typ             corev1.NamespaceConditionType
		status          corev1.ConditionStatus
		reason, message string
	}{
		{corev1.NamespaceDeletionDiscoveryFailure, corev1.ConditionFalse, "ResourcesDiscovered", "All resources successfully discovered"},
		{corev1.NamespaceDeletionGVParsingFailure, corev1.ConditionFalse, "ParsedGroupVersions", "All legacy kube types successfully parsed"},
		{corev1.NamespaceDeletionContentFailure, corev1.ConditionFalse, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"},
		{corev1.NamespaceContentRemaining, corev1.ConditionTrue, "SomeResourcesRemain", "Some resources are remaining: pods. has 1 resource instances"},
		{corev1.NamespaceFinalizersRemaining, corev1.ConditionFalse, "ContentRemoved", "All content successfully removed"},
	}
	for _, w := range wantConditions {
		got := condition(ns, w.typ)
		if got.Status != w.status || got.Reason != w.reason || got.Message != w.message {
			t.Errorf("condition %s = %s/%s/%q, want %s/%s/%q", w.typ, got.Status, got.Reason, got.Message, w.status, w.reason, w.message)
		}
		if got.LastTransitionTime.IsZero() {
			t.Errorf("condition %s has no lastTransitionTime", w.typ)
		}
	}
	// Aliases are skipped: events were deleted through core/v1 only.
	for _, a := range api.Actions() {
		if a.Resource == "events.events.k8s.io" {
			t.Errorf("acted on an alias resource: %s", a)
		}
		if a.Verb == "delete" && a.Namespace == "doomed" && a.Propagation != metav1.DeletePropagationBackground {
			t.Errorf("content deleted without background propagation: %s", a)
		}
	}

	// The node's agent finishes the pod.
	zero := int64(0)
	if _, err := api.Delete(ctx, fakeapi.Pods, "doomed", "running", &metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(ctx, "doomed"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if api.Exists(fakeapi.Namespaces, "", "doomed") {
		t.Fatal("namespace still exists after it was emptied")
	}
	var finalized bool
	for _, a := range api.Actions() {
		if a.Verb == "update" && a.Resource == "namespaces" && a.Subresource == "finalize" && a.Name == "doomed" {
			finalized = true
		}
	}
	if !finalized {
		t.Fatal("namespace not finalized through the finalize subresource")
	}
	if !api.Exists(fakeapi.Namespaces, "", "other") {
		t.Fatal("other namespace gone")
	}
	// Nothing left to do.
	if err := c.reconcile(ctx, "doomed"); err != nil {
		t.Fatalf("reconcile of a deleted namespace: %v", err)
	}
}

func TestObjectsHeldByFinalizers(t *testing.T) {
	api := fakeapi.New()
	ctx := context.Background()
	createNamespace(api, "ns")
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "held", "example.com/hold"))
	deleteNamespace(t, api, "ns")
	c := newController(api)

	if d := requeueDelay(t, c.reconcile(ctx, "ns")); d != 8*time.Second {
		t.Fatalf("requeue after %v, want 8s (finalizer estimate 15 s / 2 + 1)", d)
	}
	ns := getNamespace(t, api, "ns")
	if got := condition(ns, corev1.NamespaceFinalizersRemaining); got.Status != corev1.ConditionTrue ||
		got.Reason != "SomeFinalizerRemain" || got.Message != "Some finalizers are remaining: example.com/hold in 1 resource instances" {
		t.Fatalf("NamespaceFinalizersRemaining = %+v", got)
	}
	if got := condition(ns, corev1.NamespaceContentRemaining); got.Message != "Some resources are remaining: configmaps. has 1 resource instances" {
		t.Fatalf("NamespaceContentRemaining = %+v", got)
	}

	// Its owner removes the finalizer: the object goes, then the namespace.
	obj, _ := api.Get(ctx, fakeapi.ConfigMaps, "ns", "held")
	obj.(*corev1.ConfigMap).Finalizers = nil
	if _, err := api.Update(ctx, fakeapi.ConfigMaps, obj, "", "test"); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(ctx, "ns"); err != nil {
		t.Fatal(err)
	}
	if api.Exists(fakeapi.Namespaces, "", "ns") {
		t.Fatal("namespace not deleted")
	}
}

func TestOtherSpecFinalizersKeepNamespace(t *testing.T) {
	api := fakeapi.New()
	ctx := context.Background()
	createNamespace(api, "ns", corev1.FinalizerKubernetes, "example.com/other")
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "cm"))
	deleteNamespace(t, api, "ns")
	c := newController(api)
	if err := c.reconcile(ctx, "ns"); err != nil {
		t.Fatal(err)
	}
	ns := getNamespace(t, api, "ns")
	if !slices.Equal(ns.Spec.Finalizers, []corev1.FinalizerName{"example.com/other"}) {
		t.Fatalf("spec.finalizers = %v, want only the other token", ns.Spec.Finalizers)
	}
	if api.Exists(fakeapi.ConfigMaps, "ns", "cm") {
		t.Fatal("content not deleted")
	}
	// Already finalized by us: nothing more to do, no further writes.
	before := len(api.Actions())
	if err := c.reconcile(ctx, "ns"); err != nil {
		t.Fatal(err)
	}
	if after := len(api.Actions()); after != before {
		t.Fatalf("reconcile of a finalized namespace wrote: %v", api.Actions()[before:])
	}
}

func TestActiveNamespaceIsLeftAlone(t *testing.T) {
	api := fakeapi.New()
	createNamespace(api, "ns")
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "cm"))
	before := len(api.Actions())
	if err := newController(api).reconcile(context.Background(), "ns"); err != nil {
		t.Fatal(err)
	}
	if after := len(api.Actions()); after != before {
		t.Fatalf("acted on an active namespace: %v", api.Actions()[before:])
	}
}

func TestDeleteFailuresAreReported(t *testing.T) {
	tests := []struct {
		name        string
		fail        error
		wantErr     string
		wantMessage string
	}{
		{
			name:        "delete error",
			fail:        errors.New("disk on fire"),
			wantErr:     "disk on fire",
			wantMessage: "Failed to delete all resource types, 1 remaining: delete secrets ns/s: disk on fire",
		},
		{
			// A resource that refuses deletes: its objects remain without
			// finalizers, which Kubernetes reports as unexpected.
			name:        "remains without finalizers",
			fail:        apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "secrets"}, "delete"),
			wantErr:     "unexpected items still remain in namespace: ns for gvr: /v1, Resource=secrets",
			wantMessage: "Failed to delete all resource types, 1 remaining: unexpected items still remain in namespace: ns for gvr: /v1, Resource=secrets",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := fakeapi.New()
			ctx := context.Background()
			createNamespace(api, "ns")
			api.MustCreate(fakeapi.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}})
			api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "cm"))
			deleteNamespace(t, api, "ns")
			api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, _ string) error {
				if verb == "delete" && gvr == fakeapi.Secrets {
					return tt.fail
				}
				return nil
			})
			c := newController(api)
			err := c.reconcile(ctx, "ns")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("reconcile error %v, want %q", err, tt.wantErr)
			}
			if api.Exists(fakeapi.ConfigMaps, "ns", "cm") {
				t.Error("other content not deleted after one resource failed")
			}
			ns := getNamespace(t, api, "ns")
			got := condition(ns, corev1.NamespaceDeletionContentFailure)
			if got.Status != corev1.ConditionTrue || got.Reason != "ContentDeletionFailed" || got.Message != tt.wantMessage {
				t.Fatalf("NamespaceDeletionContentFailure = %s/%s/%q, want True/ContentDeletionFailed/%q", got.Status, got.Reason, got.Message, tt.wantMessage)
			}

			// Once deletes work again, the failure is cleared and the
			// namespace goes.
			api.SetFail(nil)
			if err := c.reconcile(ctx, "ns"); err != nil {
				t.Fatal(err)
			}
			if api.Exists(fakeapi.Namespaces, "", "ns") {
				t.Fatal("namespace not deleted after recovery")
			}
		})
	}
}

func TestConditionsClearOnRecovery(t *testing.T) {
	now := time.Unix(1000, 0)
	u := conditionUpdater{now: func() time.Time { return now }}
	u.deleteContentErrors = []error{errors.New("boom")}
	var status corev1.NamespaceStatus
	if !u.apply(&status) {
		t.Fatal("first apply reported no change")
	}
	if c := findCondition(status.Conditions, corev1.NamespaceDeletionContentFailure); c.Status != corev1.ConditionTrue {
		t.Fatalf("content failure = %+v", c)
	}
	now = now.Add(time.Minute)
	ok := conditionUpdater{now: func() time.Time { return now }}
	if !ok.apply(&status) {
		t.Fatal("recovery reported no change")
	}
	c := findCondition(status.Conditions, corev1.NamespaceDeletionContentFailure)
	if c.Status != corev1.ConditionFalse || c.Reason != "ContentDeleted" || !c.LastTransitionTime.Time.Equal(now) {
		t.Fatalf("after recovery = %+v", c)
	}
	if len(status.Conditions) != 5 {
		t.Fatalf("%d conditions, want 5", len(status.Conditions))
	}
	again := conditionUpdater{now: func() time.Time { return now.Add(time.Hour) }}
	if again.apply(&status) {
		t.Fatal("unchanged conditions reported a change")
	}
}

// TestRun drives the controller through its informer and queue.
func TestRun(t *testing.T) {
	api := fakeapi.New()
	createNamespace(api, "ns")
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "cm"))
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, Options{Logger: quiet, DeletionDelay: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = factory.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	defer func() {
		cancel()
		<-done
		<-done
	}()
	deleteNamespace(t, api, "ns")
	if !controllertest.WaitUntil(10*time.Second, func() bool { return !api.Exists(fakeapi.Namespaces, "", "ns") }) {
		t.Fatalf("namespace not deleted; actions: %v", api.Actions())
	}
	if api.Exists(fakeapi.ConfigMaps, "ns", "cm") {
		t.Fatal("content left behind")
	}
}
