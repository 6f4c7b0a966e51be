package podautoscaler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/metricsapi"
	"github.com/orch-dev/orch/server/registry"
)

// fakeMetrics serves fixed usage per pod name.
type fakeMetrics struct {
	mu    sync.Mutex
	usage map[string]string // pod -> cpu
}

func (f *fakeMetrics) PodUsage(_ string, res corev1.ResourceName) map[string]metricsapi.PodUsage {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]metricsapi.PodUsage{}
	for pod, v := range f.usage {
		q := resource.MustParse(v)
		out[pod] = metricsapi.PodUsage{MilliValue: q.MilliValue(), Timestamp: testNow.Add(-5 * time.Second), Window: 15 * time.Second}
	}
	return out
}

func (f *fakeMetrics) set(usage map[string]string) {
	f.mu.Lock()
	f.usage = usage
	f.mu.Unlock()
}

// resources is fakeapi's table with Deployments' scale subresource and
// autoscaling/v2 HorizontalPodAutoscalers.
func resources() []*registry.Resource {
	var out []*registry.Resource
	for _, r := range fakeapi.Resources() {
		if r.Name == "deployments" {
			r.Subresources = append(r.Subresources, "scale")
		}
		out = append(out, r)
	}
	return append(out, &registry.Resource{
		GroupVersion: autoscalingv2.SchemeGroupVersion, Name: "horizontalpodautoscalers", Kind: "HorizontalPodAutoscaler", Namespaced: true,
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
		NewList:      func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*autoscalingv2.HorizontalPodAutoscaler).Status = old.(*autoscalingv2.HorizontalPodAutoscaler).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			o := old.(*autoscalingv2.HorizontalPodAutoscaler).DeepCopy()
			o.Status = obj.(*autoscalingv2.HorizontalPodAutoscaler).Status
			*obj.(*autoscalingv2.HorizontalPodAutoscaler) = *o
		},
	})
}

func TestControllerScalesAndReports(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := fakeapi.New(resources()...)
	deployments := appsv1.SchemeGroupVersion.WithResource("deployments")
	api.MustCreate(deployments, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	})
	for i := range 2 {
		api.MustCreate(podsGVR, testPod(i, "200m"))
	}
	api.MustCreate(hpaGVR, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Generation: 1},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](1), MaxReplicas: 5,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](0)}},
		},
	})
	api.MustCreate(hpaGVR, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: "default", Generation: 1},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "missing"},
			MaxReplicas:    3,
		},
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	factory := informer.NewFactory(api, log)
	rec := &controllertest.Recorder{}
	metrics := &fakeMetrics{usage: map[string]string{"p-0": "400m", "p-1": "400m"}}
	c := New(api, factory, rec, metrics, Options{Logger: log})
	c.now = func() time.Time { return testNow }
	go func() { _ = factory.Run(ctx) }()
	if !informer.WaitForSync(ctx, c.hpaInf, c.podInf) {
		t.Fatal("informers did not sync")
	}
	sync := func(name string) *autoscalingv2.HorizontalPodAutoscaler {
		t.Helper()
		err := c.reconcile(ctx, "default/"+name)
		if d, ok := queue.RequeueDelay(err); !ok || d != 15*time.Second {
			t.Fatalf("reconcile %s: %v, want a requeue after the sync period", name, err)
		}
		obj, err := api.Get(ctx, hpaGVR, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		// Let the cache see the status write before the next sync.
		controllertest.Eventually(t, 10*time.Second, "the cache to see the status write", func() bool {
			cached, ok := c.hpaInf.GetByName("default", name)
			return ok && cached.(*autoscalingv2.HorizontalPodAutoscaler).ResourceVersion == obj.(*autoscalingv2.HorizontalPodAutoscaler).ResourceVersion
		})
		return obj.(*autoscalingv2.HorizontalPodAutoscaler)
	}
	replicas := func() int32 {
		obj, err := api.Get(ctx, deployments, "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		return *obj.(*appsv1.Deployment).Spec.Replicas
	}
	condition := func(hpa *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) string {
		for _, c := range hpa.Status.Conditions {
			if c.Type == typ {
				return string(c.Status) + " " + c.Reason
			}
		}
		return "none"
	}

	// The first scale write conflicts with another writer: retried.
	var conflicts atomic.Int32
	conflicts.Store(1)
	api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, name string) error {
		if verb == "update" && gvr == deployments && conflicts.Add(-1) >= 0 {
			return apierrors.NewConflict(gvr.GroupResource(), name, errors.New("the object has been modified"))
		}
		return nil
	})

	// 400m of 200m: 200% against 50%, eight pods wanted, five allowed.
	hpa := sync("web")
	if got := replicas(); got != 5 {
		t.Fatalf("replicas = %d, want 5; events %q", got, rec.Take())
	}
	if conflicts.Load() >= 0 {
		t.Error("the conflicting scale write was not retried")
	}
	wantEvent := "Normal SuccessfulRescale New size: 5; reason: cpu resource utilization (percentage of request) above target"
	if events := rec.Take(); !slices.Contains(events, wantEvent) {
		t.Errorf("events = %q, want %q", events, wantEvent)
	}
	if hpa.Status.DesiredReplicas != 5 || hpa.Status.LastScaleTime == nil || *hpa.Status.ObservedGeneration != 1 ||
		len(hpa.Status.CurrentMetrics) != 1 || *hpa.Status.CurrentMetrics[0].Resource.Current.AverageUtilization != 200 ||
		hpa.Status.CurrentMetrics[0].Resource.Current.AverageValue.MilliValue() != 400 {
		t.Errorf("status = %+v", hpa.Status)
	}
	for typ, want := range map[autoscalingv2.HorizontalPodAutoscalerConditionType]string{
		autoscalingv2.AbleToScale: "True SucceededRescale", autoscalingv2.ScalingActive: "True ValidMetricFound",
		autoscalingv2.ScalingLimited: "True TooManyReplicas",
	} {
		if got := condition(hpa, typ); got != want {
			t.Errorf("condition %s = %s, want %s", typ, got, want)
		}
	}

	// The load drops: with no window, down to the minimum at once.
	metrics.set(map[string]string{"p-0": "10m", "p-1": "10m"})
	hpa = sync("web")
	if got := replicas(); got != 1 {
		t.Fatalf("replicas = %d, want 1", got)
	}
	if events := rec.Take(); !slices.Contains(events, "Normal SuccessfulRescale New size: 1; reason: All metrics below target") {
		t.Errorf("events = %q", events)
	}
	// Metrics gone: nothing changes, and the autoscaler says why.
	metrics.set(nil)
	hpa = sync("web")
	if got := condition(hpa, autoscalingv2.ScalingActive); got != "False FailedGetResourceMetric" || replicas() != 1 {
		t.Errorf("ScalingActive = %s, replicas %d", got, replicas())
	}
	events := strings.Join(rec.Take(), "\n")
	for _, want := range []string{
		"Warning FailedGetResourceMetric failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API",
		"Warning FailedComputeMetricsReplicas invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization",
	} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}

	// A target that does not exist.
	hpa = sync("orphan")
	if got := condition(hpa, autoscalingv2.AbleToScale); got != "False FailedGetScale" {
		t.Errorf("orphan AbleToScale = %s", got)
	}
	if events := rec.Take(); len(events) != 1 || !strings.HasPrefix(events[0], "Warning FailedGetScale ") {
		t.Errorf("orphan events = %q", events)
	}
}

func TestControllerScalesEveryKind(t *testing.T) {
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	objMeta := metav1.ObjectMeta{Name: "web", Namespace: "default"}
	withScale := func(r *registry.Resource) *registry.Resource {
		r.Subresources = []string{"status", "scale"}
		return r
	}
	for _, tc := range []struct {
		kind       string
		res        *registry.Resource
		obj        runtime.Object
		replicasOf func(runtime.Object) int32
	}{
		{
			kind:       "ReplicaSet",
			obj:        &appsv1.ReplicaSet{ObjectMeta: objMeta, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2), Selector: selector}},
			replicasOf: func(o runtime.Object) int32 { return *o.(*appsv1.ReplicaSet).Spec.Replicas },
		},
		{
			kind: "StatefulSet",
			res: withScale(&registry.Resource{GroupVersion: appsv1.SchemeGroupVersion, Name: "statefulsets", Kind: "StatefulSet", Namespaced: true,
				New: func() runtime.Object { return &appsv1.StatefulSet{} }, NewList: func() runtime.Object { return &appsv1.StatefulSetList{} }}),
			obj:        &appsv1.StatefulSet{ObjectMeta: objMeta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: selector}},
			replicasOf: func(o runtime.Object) int32 { return *o.(*appsv1.StatefulSet).Spec.Replicas },
		},
		{
			kind: "ReplicationController",
			res: withScale(&registry.Resource{GroupVersion: corev1.SchemeGroupVersion, Name: "replicationcontrollers", Kind: "ReplicationController", Namespaced: true,
				New: func() runtime.Object { return &corev1.ReplicationController{} }, NewList: func() runtime.Object { return &corev1.ReplicationControllerList{} }}),
			obj:        &corev1.ReplicationController{ObjectMeta: objMeta, Spec: corev1.ReplicationControllerSpec{Replicas: ptr.To[int32](2), Selector: map[string]string{"app": "web"}}},
			replicasOf: func(o runtime.Object) int32 { return *o.(*corev1.ReplicationController).Spec.Replicas },
		},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			table := resources()
			for _, r := range table {
				if r.Name == "replicasets" {
					r.Subresources = append(r.Subresources, "scale")
				}
			}
			if tc.res != nil {
				tc.res.PrepareForUpdate = func(obj, old runtime.Object) {}
				tc.res.PrepareForStatusUpdate = func(obj, old runtime.Object) {}
				table = append(table, tc.res)
			}
			api := fakeapi.New(table...)
			var gvr schema.GroupVersionResource
			for _, r := range table {
				if r.Kind == tc.kind {
					gvr = r.GroupVersionResource()
				}
			}
			api.MustCreate(gvr, tc.obj)
			for i := range 2 {
				api.MustCreate(podsGVR, testPod(i, "200m"))
			}
			api.MustCreate(hpaGVR, &autoscalingv2.HorizontalPodAutoscaler{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
				Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
					ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: gvr.GroupVersion().String(), Kind: tc.kind, Name: "web"},
					MaxReplicas:    3,
					Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
						Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("100m"))}}}},
				},
			})
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			factory := informer.NewFactory(api, log)
			rec := &controllertest.Recorder{}
			c := New(api, factory, rec, &fakeMetrics{usage: map[string]string{"p-0": "150m", "p-1": "150m"}}, Options{Logger: log})
			c.now = func() time.Time { return testNow }
			go func() { _ = factory.Run(ctx) }()
			if !informer.WaitForSync(ctx, c.hpaInf, c.podInf) {
				t.Fatal("informers did not sync")
			}
			if _, ok := queue.RequeueDelay(c.reconcile(ctx, "default/web")); !ok {
				t.Fatal("no requeue")
			}
			// 150m against an average of 100m: ceil(1.5 × 2) = 3.
			obj, err := api.Get(ctx, gvr, "default", "web")
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.replicasOf(obj); got != 3 {
				t.Fatalf("replicas = %d, want 3; events %q", got, rec.Take())
			}
			if events := rec.Take(); !slices.Contains(events, "Normal SuccessfulRescale New size: 3; reason: cpu resource above target") {
				t.Errorf("events = %q", events)
			}
		})
	}
}
