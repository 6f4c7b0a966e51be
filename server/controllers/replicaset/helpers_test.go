package replicaset

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var (
	rsGVR = appsv1.SchemeGroupVersion.WithResource("replicasets")
	rcGVR = corev1.SchemeGroupVersion.WithResource("replicationcontrollers")
)

// resources are the fake's default ones plus ReplicationControllers.
func resources() []*registry.Resource {
	rc := &registry.Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "replicationcontrollers", Kind: "ReplicationController", Namespaced: true,
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &corev1.ReplicationController{} },
		NewList:      func() runtime.Object { return &corev1.ReplicationControllerList{} },
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.ReplicationController).Status = old.(*corev1.ReplicationController).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			rc := obj.(*corev1.ReplicationController)
			st := rc.Status
			*rc = *old.(*corev1.ReplicationController).DeepCopy()
			rc.Status = st
		},
	}
	return append(fakeapi.Resources(), rc)
}

type env struct {
	api *fakeapi.API
	c   *Controller
	rec *controllertest.Recorder
	ctx context.Context
}

// newEnv builds a controller on a fresh fake with its informers running;
// workers > 0 also runs the controller.
func newEnv(t *testing.T, rc bool, workers int) *env {
	t.Helper()
	api := fakeapi.New(resources()...)
	factory := informer.NewFactory(api, quiet)
	rec := &controllertest.Recorder{}
	build := New
	if rc {
		build = NewForReplicationControllers
	}
	c := build(api, factory, rec, Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = factory.Run(ctx) })
	if workers > 0 {
		wg.Go(func() { _ = c.Run(ctx, workers) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	if !informer.WaitForSync(ctx, c.sets, c.podInf) {
		t.Fatal("informers did not sync")
	}
	return &env{api: api, c: c, rec: rec, ctx: ctx}
}

func int32p(n int32) *int32 { return &n }

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Generation: 1},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: int32p(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, "tier": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

func (e *env) createRS(t *testing.T, rs *appsv1.ReplicaSet) *appsv1.ReplicaSet {
	t.Helper()
	out := e.api.MustCreate(rsGVR, rs).(*appsv1.ReplicaSet)
	controllertest.Eventually(t, 10*time.Second, "replica set in cache", func() bool {
		_, ok := e.c.sets.GetByName(rs.Namespace, rs.Name)
		return ok
	})
	return out
}

func (e *env) getRS(t *testing.T, name string) *appsv1.ReplicaSet {
	t.Helper()
	obj, err := e.api.Get(e.ctx, rsGVR, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*appsv1.ReplicaSet)
}

// scale sets spec.replicas (and bumps the generation, as the API server
// does) and waits for the cache.
func (e *env) scale(t *testing.T, name string, n int32) {
	t.Helper()
	var gen int64
	for {
		rs := e.getRS(t, name)
		rs.Spec.Replicas = int32p(n)
		rs.Generation++
		gen = rs.Generation
		_, err := e.api.Update(e.ctx, rsGVR, rs, "", "test")
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	controllertest.Eventually(t, 10*time.Second, "scaled replica set in cache", func() bool {
		obj, ok := e.c.sets.GetByName("default", name)
		return ok && obj.(*appsv1.ReplicaSet).Generation >= gen
	})
}

// gone reports whether the pod is deleted or being deleted.
func (e *env) gone(t *testing.T, name string) bool {
	t.Helper()
	obj, err := e.api.Get(e.ctx, podsGVR, "default", name)
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Pod).DeletionTimestamp != nil
}

// pods lists the stored pods of namespace default that are not being
// deleted.
func (e *env) pods(t *testing.T) []*corev1.Pod {
	t.Helper()
	objs, _, err := e.api.List(e.ctx, podsGVR, "default", metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if p := o.(*corev1.Pod); p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// waitCache waits until the controller's pod cache holds exactly the
// stored pods (same resource versions).
func (e *env) waitCache(t *testing.T) {
	t.Helper()
	controllertest.Eventually(t, 10*time.Second, "pod cache to catch up", func() bool {
		objs, _, _ := e.api.List(e.ctx, podsGVR, "", metav1.ListOptions{})
		want := map[string]string{}
		for _, o := range objs {
			p := o.(*corev1.Pod)
			want[p.Namespace+"/"+p.Name] = p.ResourceVersion
		}
		got := map[string]string{}
		for _, p := range e.c.pods.List("", nil) {
			got[p.Namespace+"/"+p.Name] = p.ResourceVersion
		}
		return reflect.DeepEqual(want, got)
	})
}

func (e *env) reconcile(t *testing.T, name string) error {
	t.Helper()
	e.waitCache(t)
	return e.c.reconcile(e.ctx, "default/"+name)
}

func podNames(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// pod is a pod of namespace default with the given labels and state.
type podSpec struct {
	name       string
	node       string
	phase      corev1.PodPhase
	ready      bool
	readyAgo   time.Duration
	restarts   int32
	createdAgo time.Duration
}

func makePod(s podSpec, lbls map[string]string, owner metav1.Object, now time.Time) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default", Name: s.name, Labels: lbls, UID: k8stypes.UID("uid-" + s.name),
			CreationTimestamp: metav1.NewTime(now.Add(-s.createdAgo)),
		},
		Spec:   corev1.PodSpec{NodeName: s.node},
		Status: corev1.PodStatus{Phase: s.phase},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}
	}
	if s.phase == corev1.PodRunning {
		st := corev1.ConditionFalse
		if s.ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.NewTime(now.Add(-s.readyAgo))}}
	}
	if s.restarts > 0 {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: s.restarts}}
	}
	return p
}
