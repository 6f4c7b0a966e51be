// Package historytest supports tests of the workload controllers that keep
// ControllerRevision history (DaemonSet, StatefulSet): a fakeapi resource
// table with the apps kinds they need and a simulated kubelet that places,
// starts and finishes pods. Only tests import it.
package historytest

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/history"
	"github.com/orch-dev/orch/server/registry"
)

// Resources of the apps kinds beyond fakeapi's defaults.
var (
	DaemonSets             = appsv1.SchemeGroupVersion.WithResource("daemonsets")
	StatefulSets           = appsv1.SchemeGroupVersion.WithResource("statefulsets")
	ControllerRevisions    = appsv1.SchemeGroupVersion.WithResource("controllerrevisions")
	PersistentVolumeClaims = corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
)

// Resources is fakeapi's table plus DaemonSets, StatefulSets (status
// subresource, generation bumped on spec changes), ControllerRevisions and
// PersistentVolumeClaims.
func Resources() []*registry.Resource {
	workload := func(r *registry.Resource) *registry.Resource {
		r.Subresources = []string{"status"}
		r.PrepareForUpdate = keepStatusBumpGeneration
		r.PrepareForStatusUpdate = fakeapi.KeepAllButStatus
		return r
	}
	return append(fakeapi.Resources(),
		workload(&registry.Resource{
			GroupVersion: appsv1.SchemeGroupVersion, Name: "daemonsets", Kind: "DaemonSet", Namespaced: true,
			New: func() runtime.Object { return &appsv1.DaemonSet{} }, NewList: func() runtime.Object { return &appsv1.DaemonSetList{} },
		}),
		workload(&registry.Resource{
			GroupVersion: appsv1.SchemeGroupVersion, Name: "statefulsets", Kind: "StatefulSet", Namespaced: true,
			New: func() runtime.Object { return &appsv1.StatefulSet{} }, NewList: func() runtime.Object { return &appsv1.StatefulSetList{} },
		}),
		&registry.Resource{
			GroupVersion: appsv1.SchemeGroupVersion, Name: "controllerrevisions", Kind: "ControllerRevision", Namespaced: true,
			New: func() runtime.Object { return &appsv1.ControllerRevision{} }, NewList: func() runtime.Object { return &appsv1.ControllerRevisionList{} },
		},
		&registry.Resource{
			GroupVersion: corev1.SchemeGroupVersion, Name: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", Namespaced: true,
			New: func() runtime.Object { return &corev1.PersistentVolumeClaim{} }, NewList: func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
		},
	)
}

// keepStatusBumpGeneration keeps old's status and bumps the generation when
// the spec changed, as the API server's workload strategies do.
func keepStatusBumpGeneration(obj, old runtime.Object) {
	v, o := reflect.ValueOf(obj).Elem(), reflect.ValueOf(old).Elem()
	v.FieldByName("Status").Set(reflect.ValueOf(old.DeepCopyObject()).Elem().FieldByName("Status"))
	m, om := obj.(metav1.Object), old.(metav1.Object)
	m.SetGeneration(om.GetGeneration())
	if !apiequality.Semantic.DeepEqual(v.FieldByName("Spec").Interface(), o.FieldByName("Spec").Interface()) {
		m.SetGeneration(om.GetGeneration() + 1)
	}
}

// Kubelet simulates the scheduler and the kubelets of a cluster: it binds
// pending pods (to the node their matchFields metadata.name affinity names,
// else to DefaultNode), reports them Running and Ready, and finishes pods
// being deleted. It polls the API, so tests need no extra wiring.
type Kubelet struct {
	API *fakeapi.API
	// DefaultNode receives pods without a node affinity.
	DefaultNode string
	// Interval between polls (default 5 ms).
	Interval time.Duration

	mu       sync.Mutex
	notReady func(*corev1.Pod) bool
	failed   map[string]bool // "ns/name" of pods to report Failed
}

// HoldNotReady keeps the pods for which hold returns true Running but not
// Ready; nil lets every pod become ready.
func (k *Kubelet) HoldNotReady(hold func(*corev1.Pod) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.notReady = hold
}

// Fail reports pod ns/name Failed once.
func (k *Kubelet) Fail(ns, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failed == nil {
		k.failed = map[string]bool{}
	}
	k.failed[ns+"/"+name] = true
}

// Run polls until ctx ends.
func (k *Kubelet) Run(ctx context.Context) {
	interval := k.Interval
	if interval <= 0 {
		interval = 5 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.Step(ctx)
	}
}

// Step acts once on every pod.
func (k *Kubelet) Step(ctx context.Context) {
	objs, _, err := k.API.List(ctx, fakeapi.Pods, "", metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		key := pod.Namespace + "/" + pod.Name
		switch {
		case pod.DeletionTimestamp != nil:
			zero := int64(0)
			_, _ = k.API.Delete(ctx, fakeapi.Pods, pod.Namespace, pod.Name, &metav1.DeleteOptions{GracePeriodSeconds: &zero})
		case pod.Spec.NodeName == "":
			pod.Spec.NodeName = targetNode(pod, k.DefaultNode)
			_, _ = k.API.Update(ctx, fakeapi.Pods, pod, "", "kubelet")
		default:
			k.mu.Lock()
			hold := k.notReady != nil && k.notReady(pod)
			fail := k.failed[key]
			delete(k.failed, key)
			k.mu.Unlock()
			want := corev1.PodStatus{Phase: corev1.PodRunning}
			readyStatus := corev1.ConditionTrue
			if hold {
				readyStatus = corev1.ConditionFalse
			}
			if fail {
				want.Phase = corev1.PodFailed
				readyStatus = corev1.ConditionFalse
			} else if pod.Status.Phase == corev1.PodFailed {
				continue
			}
			if pod.Status.Phase == want.Phase && readiness(pod) == readyStatus {
				continue
			}
			pod.Status.Phase = want.Phase
			pod.Status.Conditions = []corev1.PodCondition{{
				Type: corev1.PodReady, Status: readyStatus, LastTransitionTime: metav1.Now(),
			}}
			_, _ = k.API.Update(ctx, fakeapi.Pods, pod, "status", "kubelet")
		}
	}
}

func readiness(pod *corev1.Pod) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status
		}
	}
	return ""
}

func targetNode(pod *corev1.Pod, fallback string) string {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range term.MatchFields {
				if f.Key == metav1.ObjectNameField && len(f.Values) == 1 {
					return f.Values[0]
				}
			}
		}
	}
	return fallback
}

// Revisions lists the ControllerRevisions in namespace ns, oldest first.
func Revisions(t testing.TB, api *fakeapi.API, ns string) []*appsv1.ControllerRevision {
	t.Helper()
	objs, _, err := api.List(context.Background(), ControllerRevisions, ns, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*appsv1.ControllerRevision, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*appsv1.ControllerRevision))
	}
	history.Sort(out)
	return out
}

// Update applies mutate to the stored object that get returns and writes
// it back, retrying a few times: the controller under test writes the
// object's status meanwhile.
func Update[T runtime.Object](t testing.TB, api *fakeapi.API, gvr schema.GroupVersionResource, get func() T, mutate func(T)) {
	t.Helper()
	for range 10 {
		cur := get()
		mutate(cur)
		if _, err := api.Update(context.Background(), gvr, cur, "", "test"); err == nil {
			return
		}
	}
	t.Fatalf("could not update %s", gvr.Resource)
}
