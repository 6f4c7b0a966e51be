package deployment

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/replicaset"
	"github.com/orch-dev/orch/server/controllers/replicaset/podsim"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// genAPI adds what the fake leaves out and the controllers rely on: the
// API server's metadata.generation (1 on create, +1 on a spec change).
type genAPI struct{ *fakeapi.API }

func (g genAPI) Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fm string) (runtime.Object, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o = o.DeepCopy()
		o.Generation = 1
		obj = o
	case *appsv1.ReplicaSet:
		o = o.DeepCopy()
		o.Generation = 1
		obj = o
	}
	return g.API.Create(ctx, gvr, obj, fm)
}

func (g genAPI) Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, sub, fm string) (runtime.Object, error) {
	if sub == "" {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			if cur, err := g.API.Get(ctx, gvr, o.Namespace, o.Name); err == nil {
				old := cur.(*appsv1.Deployment)
				o = o.DeepCopy()
				o.Generation = old.Generation
				if !apiequality.Semantic.DeepEqual(o.Spec, old.Spec) {
					o.Generation++
				}
				obj = o
			}
		case *appsv1.ReplicaSet:
			if cur, err := g.API.Get(ctx, gvr, o.Namespace, o.Name); err == nil {
				old := cur.(*appsv1.ReplicaSet)
				o = o.DeepCopy()
				o.Generation = old.Generation
				if !apiequality.Semantic.DeepEqual(o.Spec, old.Spec) {
					o.Generation++
				}
				obj = o
			}
		}
	}
	return g.API.Update(ctx, gvr, obj, sub, fm)
}

type env struct {
	raw     *fakeapi.API
	api     genAPI
	c       *Controller
	rec     *controllertest.Recorder
	kubelet *podsim.Kubelet
	ctx     context.Context
}

// newEnv runs the deployment and ReplicaSet controllers and a simulated
// kubelet on a fresh fake.
func newEnv(t *testing.T) *env {
	t.Helper()
	raw := fakeapi.New()
	// Room for the whole history, which tests replay.
	raw.WatchBuffer = 1 << 16
	api := genAPI{raw}
	factory := informer.NewFactory(api, quiet)
	rec := &controllertest.Recorder{}
	c := New(api, factory, rec, Options{Logger: quiet})
	rsc := replicaset.New(api, factory, nil, replicaset.Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = factory.Run(ctx) })
	wg.Go(func() { _ = c.Run(ctx, 2) })
	wg.Go(func() { _ = rsc.Run(ctx, 2) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	kubelet := podsim.Start(t, raw, "node-1")
	return &env{raw: raw, api: api, c: c, rec: rec, kubelet: kubelet, ctx: ctx}
}

func int32p(n int32) *int32 { return &n }

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	surge, unavailable := intstr.FromString("25%"), intstr.FromString("25%")
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable},
			},
			RevisionHistoryLimit:    int32p(10),
			ProgressDeadlineSeconds: int32p(600),
		},
	}
}

func (e *env) create(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if _, err := e.api.Create(e.ctx, deploymentsGVR, d, "test"); err != nil {
		t.Fatal(err)
	}
}

func (e *env) get(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	obj, err := e.api.Get(e.ctx, deploymentsGVR, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*appsv1.Deployment)
}

// change applies fn to the Deployment, retrying on conflicts.
func (e *env) change(t *testing.T, name string, fn func(*appsv1.Deployment)) {
	t.Helper()
	for {
		d := e.get(t, name)
		fn(d)
		_, err := e.api.Update(e.ctx, deploymentsGVR, d, "", "test")
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

func (e *env) setImage(t *testing.T, name, image string) {
	t.Helper()
	e.change(t, name, func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image })
}

func (e *env) replicaSets(t *testing.T) []*appsv1.ReplicaSet {
	t.Helper()
	objs, _, err := e.api.List(e.ctx, replicaSetsGVR, "default", metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*appsv1.ReplicaSet
	for _, o := range objs {
		out = append(out, o.(*appsv1.ReplicaSet))
	}
	return out
}

func (e *env) replicaSetFor(t *testing.T, d *appsv1.Deployment) *appsv1.ReplicaSet {
	t.Helper()
	for _, rs := range e.replicaSets(t) {
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			return rs
		}
	}
	return nil
}

// rolledOut is kubectl rollout status' success test.
func rolledOut(d *appsv1.Deployment) bool {
	st := d.Status
	return d.Generation <= st.ObservedGeneration && st.UpdatedReplicas == desiredReplicas(d) &&
		st.Replicas == st.UpdatedReplicas && st.AvailableReplicas == st.UpdatedReplicas
}

func (e *env) waitRolledOut(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	controllertest.Eventually(t, 15*time.Second, "deployment "+name+" rolled out", func() bool {
		d = e.get(t, name)
		cond := getCondition(d.Status, appsv1.DeploymentProgressing)
		return rolledOut(d) && cond != nil && cond.Reason == reasonNewRSAvailable
	})
	return d
}

func (e *env) hasEvent(substr string) bool {
	for _, ev := range e.rec.Events() {
		if strings.Contains(ev, substr) {
			return true
		}
	}
	return false
}

// history replays every stored change of gvr in namespace default, in
// order, calling apply for each. The fake replays its whole history into
// the watch channel before Watch returns, so draining without blocking
// reads exactly the past.
func (e *env) history(t *testing.T, gvr schema.GroupVersionResource, apply func(ev watch.Event)) {
	t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ch, err := e.raw.Watch(ctx, gvr, "default", 0)
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("history watch was cut off")
			}
			apply(ev)
		default:
			return
		}
	}
}

// rsHistory calls check with the ReplicaSets after each stored change.
func (e *env) rsHistory(t *testing.T, check func(state map[string]*appsv1.ReplicaSet)) {
	t.Helper()
	state := map[string]*appsv1.ReplicaSet{}
	e.history(t, replicaSetsGVR, func(ev watch.Event) {
		rs := ev.Object.(*appsv1.ReplicaSet)
		if ev.Type == watch.Deleted {
			delete(state, rs.Name)
		} else {
			state[rs.Name] = rs
		}
		check(state)
	})
}
