package garbagecollector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs a collector over api until the test ends.
func start(t *testing.T, api *fakeapi.API) *Controller {
	t.Helper()
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, &controllertest.Recorder{}, Options{Logger: quiet})
	controllertest.Run(t, c.Run, factory.Run)
	return c
}

func ownerRef(obj runtime.Object, block bool) metav1.OwnerReference {
	m, _ := meta.Accessor(obj)
	gvk := obj.GetObjectKind().GroupVersionKind()
	return metav1.OwnerReference{
		APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: m.GetName(), UID: m.GetUID(),
		Controller: new(true), BlockOwnerDeletion: new(block),
	}
}

func replicaSet(name string, owners ...metav1.OwnerReference) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, OwnerReferences: owners}}
}

// pod makes a pod; on a node it waits for its grace period when deleted.
func pod(name, node string, owners ...metav1.OwnerReference) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, OwnerReferences: owners},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func configMap(name string, owners ...metav1.OwnerReference) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, OwnerReferences: owners}}
}

func deleteWith(t *testing.T, api *fakeapi.API, gvr schema.GroupVersionResource, name string, policy metav1.DeletionPropagation) {
	t.Helper()
	if _, err := api.Delete(context.Background(), gvr, "ns", name, &metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatal(err)
	}
}

func exists(api *fakeapi.API, gvr schema.GroupVersionResource, name string) func() bool {
	return func() bool { return api.Exists(gvr, "ns", name) }
}

func gone(api *fakeapi.API, gvr schema.GroupVersionResource, name string) func() bool {
	return func() bool { return !api.Exists(gvr, "ns", name) }
}

// inGraph reports whether the collector has observed every object.
func inGraph(c *Controller, objs ...runtime.Object) func() bool {
	return func() bool {
		for _, obj := range objs {
			m, err := meta.Accessor(obj)
			if err != nil || c.graph.get(m.GetUID()) == nil {
				return false
			}
		}
		return true
	}
}

func get(t *testing.T, api *fakeapi.API, gvr schema.GroupVersionResource, name string) metav1.Object {
	t.Helper()
	obj, err := api.Get(context.Background(), gvr, "ns", name)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := meta.Accessor(obj)
	return m
}

func TestBackgroundDeletionDeletesDependents(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	rs := api.MustCreate(fakeapi.ReplicaSets, replicaSet("rs"))
	for i := range 3 {
		api.MustCreate(fakeapi.Pods, pod(fmt.Sprintf("p%d", i), "", ownerRef(rs, true)))
	}
	api.MustCreate(fakeapi.Pods, pod("unowned", ""))

	deleteWith(t, api, fakeapi.ReplicaSets, "rs", metav1.DeletePropagationBackground)
	for i := range 3 {
		controllertest.Eventually(t, 5*time.Second, "pod deleted", gone(api, fakeapi.Pods, fmt.Sprintf("p%d", i)))
	}
	controllertest.Never(t, 200*time.Millisecond, "unowned pod deleted", gone(api, fakeapi.Pods, "unowned"))
	for _, a := range api.Actions() {
		if a.Verb == "delete" && a.Resource == "pods" && a.Propagation != metav1.DeletePropagationBackground {
			t.Errorf("dependent deleted with %q, want Background", a.Propagation)
		}
	}
}

func TestDependentsOfOwnersGoneBeforeStartAreCollected(t *testing.T) {
	api := fakeapi.New()
	rs := api.MustCreate(fakeapi.ReplicaSets, replicaSet("rs"))
	api.MustCreate(fakeapi.Pods, pod("p", "", ownerRef(rs, false)))
	deleteWith(t, api, fakeapi.ReplicaSets, "rs", metav1.DeletePropagationBackground)

	start(t, api)
	controllertest.Eventually(t, 5*time.Second, "orphaned pod collected", gone(api, fakeapi.Pods, "p"))
}

func TestOwnerIsMatchedByUID(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	api.MustCreate(fakeapi.ConfigMaps, configMap("owner"))
	// Refers to an "owner" that was deleted and recreated: another uid.
	stale := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: types.UID("old-uid")}
	api.MustCreate(fakeapi.ConfigMaps, configMap("dependent", stale))

	controllertest.Eventually(t, 5*time.Second, "dependent of a recreated owner deleted", gone(api, fakeapi.ConfigMaps, "dependent"))
	if !api.Exists(fakeapi.ConfigMaps, "ns", "owner") {
		t.Error("the new owner was deleted")
	}
}

func TestDanglingReferenceRemovedWhileAnotherOwnerRemains(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	keep := api.MustCreate(fakeapi.ConfigMaps, configMap("keep"))
	lose := api.MustCreate(fakeapi.ConfigMaps, configMap("lose"))
	api.MustCreate(fakeapi.ConfigMaps, configMap("dependent", ownerRef(keep, false), ownerRef(lose, false)))

	deleteWith(t, api, fakeapi.ConfigMaps, "lose", metav1.DeletePropagationBackground)
	controllertest.Eventually(t, 5*time.Second, "dangling reference removed", func() bool {
		return len(get(t, api, fakeapi.ConfigMaps, "dependent").GetOwnerReferences()) == 1
	})
	if refs := get(t, api, fakeapi.ConfigMaps, "dependent").GetOwnerReferences(); refs[0].Name != "keep" {
		t.Errorf("owner references = %v, want only keep", refs)
	}
}

func TestForegroundDeletionWaitsForBlockingDependents(t *testing.T) {
	api := fakeapi.New()
	c := start(t, api)
	deploy := api.MustCreate(fakeapi.Deployments, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}})
	rs := api.MustCreate(fakeapi.ReplicaSets, replicaSet("web-1", ownerRef(deploy, true)))
	// A pod on a node stays Terminating until its node's agent deletes it.
	a := api.MustCreate(fakeapi.Pods, pod("web-1-a", "node1", ownerRef(rs, true)))
	b := api.MustCreate(fakeapi.Pods, pod("web-1-b", "", ownerRef(rs, true)))
	// The collector knows dependents only once its informers have shown
	// them; an owner deleted before that has none, as in Kubernetes.
	controllertest.Eventually(t, 5*time.Second, "objects in the collector's graph", inGraph(c, deploy, rs, a, b))

	deleteWith(t, api, fakeapi.Deployments, "web", metav1.DeletePropagationForeground)

	controllertest.Eventually(t, 5*time.Second, "pod without node deleted", gone(api, fakeapi.Pods, "web-1-b"))
	controllertest.Eventually(t, 5*time.Second, "pod on a node terminating", func() bool {
		return get(t, api, fakeapi.Pods, "web-1-a").GetDeletionTimestamp() != nil
	})
	rsMeta := get(t, api, fakeapi.ReplicaSets, "web-1")
	if rsMeta.GetDeletionTimestamp() == nil || !slices.Contains(rsMeta.GetFinalizers(), metav1.FinalizerDeleteDependents) {
		t.Fatalf("replica set with dependents not deleted in the foreground: finalizers %v", rsMeta.GetFinalizers())
	}
	controllertest.Never(t, 200*time.Millisecond, "deployment deleted while its pods terminate", gone(api, fakeapi.Deployments, "web"))

	// The agent finishes the pod.
	zero := int64(0)
	if _, err := api.Delete(context.Background(), fakeapi.Pods, "ns", "web-1-a", &metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "replica set deleted", gone(api, fakeapi.ReplicaSets, "web-1"))
	controllertest.Eventually(t, 5*time.Second, "deployment deleted", gone(api, fakeapi.Deployments, "web"))
}

func TestForegroundDeletionDoesNotWaitForNonBlockingDependents(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	rs := api.MustCreate(fakeapi.ReplicaSets, replicaSet("rs"))
	api.MustCreate(fakeapi.Pods, pod("p", "node1", ownerRef(rs, false)))

	deleteWith(t, api, fakeapi.ReplicaSets, "rs", metav1.DeletePropagationForeground)
	controllertest.Eventually(t, 5*time.Second, "owner deleted", gone(api, fakeapi.ReplicaSets, "rs"))
	controllertest.Eventually(t, 5*time.Second, "non-blocking dependent deleted", func() bool {
		return get(t, api, fakeapi.Pods, "p").GetDeletionTimestamp() != nil
	})
}

func TestForegroundDeletionWithoutDependents(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	api.MustCreate(fakeapi.ReplicaSets, replicaSet("rs"))
	deleteWith(t, api, fakeapi.ReplicaSets, "rs", metav1.DeletePropagationForeground)
	controllertest.Eventually(t, 5*time.Second, "owner deleted", gone(api, fakeapi.ReplicaSets, "rs"))
}

func TestOrphanDeletionReleasesDependents(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	rs := api.MustCreate(fakeapi.ReplicaSets, replicaSet("rs"))
	other := api.MustCreate(fakeapi.ConfigMaps, configMap("other"))
	api.MustCreate(fakeapi.Pods, pod("p1", "", ownerRef(rs, true)))
	api.MustCreate(fakeapi.Pods, pod("p2", "", ownerRef(rs, true), ownerRef(other, false)))

	deleteWith(t, api, fakeapi.ReplicaSets, "rs", metav1.DeletePropagationOrphan)
	controllertest.Eventually(t, 5*time.Second, "owner deleted", gone(api, fakeapi.ReplicaSets, "rs"))
	if refs := get(t, api, fakeapi.Pods, "p1").GetOwnerReferences(); len(refs) != 0 {
		t.Errorf("p1 owner references = %v, want none", refs)
	}
	if refs := get(t, api, fakeapi.Pods, "p2").GetOwnerReferences(); len(refs) != 1 || refs[0].Name != "other" {
		t.Errorf("p2 owner references = %v, want only other", refs)
	}
	controllertest.Never(t, 200*time.Millisecond, "orphaned pod deleted", gone(api, fakeapi.Pods, "p1"))
}

func TestOwnerOfUnknownKindKeepsDependent(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	ref := metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Widget", Name: "w", UID: "w-uid"}
	api.MustCreate(fakeapi.ConfigMaps, configMap("dependent", ref))
	controllertest.Never(t, 200*time.Millisecond, "dependent of an unknown kind deleted", gone(api, fakeapi.ConfigMaps, "dependent"))
}

func TestClusterScopedDependentOfNamespacedOwnerIsLeftAlone(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "cm-uid"}
	api.MustCreate(fakeapi.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", OwnerReferences: []metav1.OwnerReference{ref}}})
	controllertest.Never(t, 200*time.Millisecond, "node deleted", func() bool { return !api.Exists(fakeapi.Nodes, "", "n1") })
}

func TestClusterScopedOwner(t *testing.T) {
	api := fakeapi.New()
	start(t, api)
	node := api.MustCreate(fakeapi.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	api.MustCreate(fakeapi.ConfigMaps, configMap("dependent", ownerRef(node, false)))
	controllertest.Never(t, 200*time.Millisecond, "dependent of a live cluster-scoped owner deleted", gone(api, fakeapi.ConfigMaps, "dependent"))
	if _, err := api.Delete(context.Background(), fakeapi.Nodes, "", "n1", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "dependent deleted", gone(api, fakeapi.ConfigMaps, "dependent"))
}

func TestEventsAreNotWatched(t *testing.T) {
	api := fakeapi.New()
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, nil, Options{Logger: quiet})
	for _, inf := range c.informers {
		if inf.GroupVersionResource().Resource == "events" {
			t.Errorf("collector watches %s", inf.GroupVersionResource())
		}
	}
}

func TestAttemptToDeleteErrors(t *testing.T) {
	tests := []struct {
		name    string
		failGet bool
		wantErr bool
	}{
		{name: "owner lookup fails: retried", failGet: true, wantErr: true},
		{name: "owner absent: deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := fakeapi.New()
			ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid"}
			cm := api.MustCreate(fakeapi.ConfigMaps, configMap("dependent", ref))
			factory := informer.NewFactory(api, quiet)
			c := New(api, factory, nil, Options{Logger: quiet})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { _ = factory.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()
			informer.WaitForSync(ctx, c.informers...)
			if tt.failGet {
				api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, _ string) error {
					if verb == "get" && gvr == fakeapi.ReplicaSets {
						return apierrors.NewServiceUnavailable("store down")
					}
					return nil
				})
			}
			m, _ := meta.Accessor(cm)
			err := c.attemptToDelete(ctx, m.GetUID())
			if (err != nil) != tt.wantErr {
				t.Fatalf("attemptToDelete error = %v, want error %v", err, tt.wantErr)
			}
			if got := api.Exists(fakeapi.ConfigMaps, "ns", "dependent"); got != tt.wantErr {
				t.Errorf("dependent exists = %v, want %v", got, tt.wantErr)
			}
		})
	}
}
