package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/events"
	"github.com/orch-dev/orch/server/registry"
)

// storageResources adds the volume kinds the scheduler watches to the
// fake's table.
func storageResources() []*registry.Resource {
	return []*registry.Resource{
		{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "persistentvolumes", Kind: "PersistentVolume",
			New: func() runtime.Object { return &corev1.PersistentVolume{} }, NewList: func() runtime.Object { return &corev1.PersistentVolumeList{} },
		},
		{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", Namespaced: true,
			New: func() runtime.Object { return &corev1.PersistentVolumeClaim{} }, NewList: func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
		},
		{
			GroupVersion: storagev1.SchemeGroupVersion, Name: "storageclasses", Kind: "StorageClass",
			New: func() runtime.Object { return &storagev1.StorageClass{} }, NewList: func() runtime.Object { return &storagev1.StorageClassList{} },
		},
	}
}

// fakeBinder binds as the API server's pods/binding does, on the fake.
type fakeBinder struct {
	api   *fakeapi.API
	binds atomic.Int64
	// fail, when set, may reject a binding.
	fail func(b *corev1.Binding) error
}

func (f *fakeBinder) Bind(ctx context.Context, b *corev1.Binding) error {
	if f.fail != nil {
		if err := f.fail(b); err != nil {
			return err
		}
	}
	obj, err := f.api.Get(ctx, podsGVR, b.Namespace, b.Name)
	if err != nil {
		return err
	}
	pod := obj.(*corev1.Pod)
	if pod.UID != b.UID || pod.Spec.NodeName != "" {
		return apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, b.Name, errors.New("already assigned or replaced"))
	}
	pod.Spec.NodeName = b.Target.Name
	obj, err = f.api.Update(ctx, podsGVR, pod, "", "binder")
	if err != nil {
		return err
	}
	pod = obj.(*corev1.Pod)
	setCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
	if _, err := f.api.Update(ctx, podsGVR, pod, "status", "binder"); err != nil {
		return err
	}
	f.binds.Add(1)
	return nil
}

type harness struct {
	api    *fakeapi.API
	binder *fakeBinder
	sched  *Scheduler
}

func newHarness(t testing.TB, tweak func(*Config)) *harness {
	t.Helper()
	api := fakeapi.New(append(fakeapi.Resources(), storageResources()...)...)
	api.WatchBuffer = 1 << 20
	log := slog.New(slog.DiscardHandler)
	factory := informer.NewFactory(api, log)
	bc := events.NewBroadcaster(api, log)
	h := &harness{api: api, binder: &fakeBinder{api: api}}
	cfg := Config{
		Informers: factory, Writer: api, Binder: h.binder, Recorder: bc.Recorder(DefaultSchedulerName), Logger: log,
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Rand: rand.New(rand.NewPCG(1, 2)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sched = s
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = factory.Run(ctx) })
	wg.Go(func() { _ = bc.Run(ctx) })
	wg.Go(func() { _ = s.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return h
}

func (h *harness) create(t testing.TB, gvr schema.GroupVersionResource, obj runtime.Object) {
	t.Helper()
	if _, err := h.api.Create(context.Background(), gvr, obj, "test"); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) pod(t testing.TB, name string) *corev1.Pod {
	t.Helper()
	obj, err := h.api.Get(context.Background(), podsGVR, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Pod)
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) events(t testing.TB, reason string) []*corev1.Event {
	t.Helper()
	objs, _, err := h.api.List(context.Background(), fakeapi.Events, "", metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Event
	for _, o := range objs {
		if ev := o.(*corev1.Event); ev.Reason == reason {
			out = append(out, ev)
		}
	}
	return out
}

func scheduledCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func TestSchedulingLoop(t *testing.T) {
	h := newHarness(t, nil)
	for i := 1; i <= 3; i++ {
		h.create(t, fakeapi.Nodes, makeNode(fmt.Sprintf("n%d", i), "2", "4Gi"))
	}
	for i := range 6 {
		h.create(t, fakeapi.Pods, makePod(fmt.Sprintf("p%d", i), "1", "1Gi"))
	}
	eventually(t, "six pods bound", func() bool { return h.binder.binds.Load() == 6 })

	// Assumed pods count before their bindings land: exactly two per node.
	perNode := map[string]int{}
	for i := range 6 {
		pod := h.pod(t, fmt.Sprintf("p%d", i))
		perNode[pod.Spec.NodeName]++
	}
	for node, n := range perNode {
		if n != 2 {
			t.Errorf("node %s got %d pods, want 2 (placement %v)", node, n, perNode)
		}
	}
	eventually(t, "Scheduled events", func() bool { return len(h.events(t, "Scheduled")) == 6 })
	for _, ev := range h.events(t, "Scheduled") {
		pod := h.pod(t, ev.InvolvedObject.Name)
		want := fmt.Sprintf("Successfully assigned default/%s to %s", pod.Name, pod.Spec.NodeName)
		if ev.Message != want || ev.Type != corev1.EventTypeNormal || ev.Source.Component != DefaultSchedulerName || ev.InvolvedObject.Kind != "Pod" {
			t.Errorf("event = %s %q from %s about %s, want Normal %q", ev.Type, ev.Message, ev.Source.Component, ev.InvolvedObject.Kind, want)
		}
	}

	// A seventh pod fits nowhere.
	h.create(t, fakeapi.Pods, makePod("late", "1", "1Gi"))
	wantMsg := "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
	eventually(t, "PodScheduled=False", func() bool {
		c := scheduledCondition(h.pod(t, "late"))
		return c != nil && c.Status == corev1.ConditionFalse
	})
	c := scheduledCondition(h.pod(t, "late"))
	if c.Reason != corev1.PodReasonUnschedulable || c.Message != wantMsg {
		t.Errorf("condition = %s %q, want Unschedulable %q", c.Reason, c.Message, wantMsg)
	}
	eventually(t, "FailedScheduling event", func() bool { return len(h.events(t, "FailedScheduling")) > 0 })
	ev := h.events(t, "FailedScheduling")[0]
	if ev.Type != corev1.EventTypeWarning || ev.Message != wantMsg || ev.InvolvedObject.Name != "late" {
		t.Errorf("event = %s %q about %s, want Warning %q", ev.Type, ev.Message, ev.InvolvedObject.Name, wantMsg)
	}

	// A new node makes it schedulable.
	h.create(t, fakeapi.Nodes, makeNode("n4", "2", "4Gi"))
	eventually(t, "late pod bound to n4", func() bool { return h.pod(t, "late").Spec.NodeName == "n4" })

	// A deleted pod frees its node for a parked one.
	h.create(t, fakeapi.Pods, makePod("big", "2", "1Gi"))
	eventually(t, "big parked", func() bool {
		c := scheduledCondition(h.pod(t, "big"))
		return c != nil && c.Status == corev1.ConditionFalse
	})
	victim := h.pod(t, "p0")
	for _, name := range []string{"p0", "p1", "p2", "p3", "p4", "p5"} {
		if p := h.pod(t, name); p.Spec.NodeName == victim.Spec.NodeName {
			zero := int64(0)
			if _, err := h.api.Delete(context.Background(), fakeapi.Pods, "default", name, &metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, "big bound where the pods were", func() bool { return h.pod(t, "big").Spec.NodeName == victim.Spec.NodeName })
}

func TestSchedulingLoopNodeSelectorMessage(t *testing.T) {
	h := newHarness(t, nil)
	for i := 1; i <= 3; i++ {
		h.create(t, fakeapi.Nodes, makeNode(fmt.Sprintf("n%d", i), "2", "4Gi"))
	}
	h.create(t, fakeapi.Pods, makePod("picky", "", "", nodeSelector("disk", "ssd")))
	want := "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	eventually(t, "FailedScheduling event", func() bool { return len(h.events(t, "FailedScheduling")) > 0 })
	if got := h.events(t, "FailedScheduling")[0].Message; got != want {
		t.Errorf("message:\n got %s\nwant %s", got, want)
	}
	// Labelling a node is a node update that lets the pod in.
	obj, _ := h.api.Get(context.Background(), fakeapi.Nodes, "", "n2")
	node := obj.(*corev1.Node)
	node.Labels["disk"] = "ssd"
	if _, err := h.api.Update(context.Background(), fakeapi.Nodes, node, "", "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "picky bound to n2", func() bool { return h.pod(t, "picky").Spec.NodeName == "n2" })
}

func TestSchedulingLoopIgnoresOtherPods(t *testing.T) {
	h := newHarness(t, nil)
	h.create(t, fakeapi.Nodes, makeNode("n1", "2", "4Gi"))
	h.create(t, fakeapi.Pods, makePod("other", "", "", func(p *corev1.Pod) { p.Spec.SchedulerName = "my-scheduler" }))
	h.create(t, fakeapi.Pods, makePod("placed", "", "", onNode("n1")))
	h.create(t, fakeapi.Pods, makePod("mine", "", ""))
	eventually(t, "mine bound", func() bool { return h.pod(t, "mine").Spec.NodeName == "n1" })
	time.Sleep(50 * time.Millisecond)
	if got := h.pod(t, "other").Spec.NodeName; got != "" {
		t.Errorf("pod of another scheduler bound to %q", got)
	}
	if n := h.binder.binds.Load(); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}

func TestSchedulingLoopBindFailureForgetsAndRetries(t *testing.T) {
	var failed atomic.Bool
	h := newHarness(t, nil)
	h.binder.fail = func(b *corev1.Binding) error {
		if b.Name == "p" && failed.CompareAndSwap(false, true) {
			return apierrors.NewInternalError(errors.New("store unavailable"))
		}
		return nil
	}
	h.create(t, fakeapi.Nodes, makeNode("n1", "1", "4Gi"))
	h.create(t, fakeapi.Pods, makePod("p", "1", ""))
	eventually(t, "p bound after a retry", func() bool { return h.pod(t, "p").Spec.NodeName == "n1" })
	if !failed.Load() {
		t.Fatal("the first binding did not fail")
	}
	eventually(t, "Binding rejected event", func() bool {
		evs := h.events(t, "FailedScheduling")
		return len(evs) == 1 && strings.HasPrefix(evs[0].Message, "Binding rejected: ")
	})
}

func TestSchedulingLoopSelectsNodeForWaitingClaim(t *testing.T) {
	h := newHarness(t, nil)
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	class := "local-path"
	h.create(t, schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: "orch.dev/local-path", VolumeBindingMode: &wffc})
	h.create(t, pvcsGVR, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class}})
	h.create(t, fakeapi.Nodes, makeNode("n1", "1", "4Gi"))
	h.create(t, fakeapi.Pods, makePod("p", "", "", claimVolume("data")))
	eventually(t, "p bound", func() bool { return h.pod(t, "p").Spec.NodeName == "n1" })
	obj, err := h.api.Get(context.Background(), pvcsGVR, "default", "data")
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*corev1.PersistentVolumeClaim).Annotations[annSelectedNode]; got != "n1" {
		t.Errorf("selected-node annotation = %q, want n1", got)
	}
}

// BenchmarkSchedule1000PodsOn1000Nodes measures end-to-end throughput:
// pods created in the fake API, watched, scheduled, bound and confirmed.
// BenchmarkSchedule1000Pods schedules batches of 1,000 pods onto 100 and
// onto 1,000 nodes (the two sizes).
func BenchmarkSchedule1000Pods(b *testing.B) {
	for _, nodes := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { benchmarkSchedule(b, nodes) })
	}
}

func benchmarkSchedule(b *testing.B, nodes int) {
	h := newHarness(b, nil)
	for i := range nodes {
		h.create(b, fakeapi.Nodes, makeNode(fmt.Sprintf("node-%04d", i), "32", "64Gi", withLabels(labelZone, fmt.Sprintf("zone-%d", i%3))))
	}
	eventually(b, "nodes cached", func() bool {
		h.sched.cache.mu.Lock()
		defer h.sched.cache.mu.Unlock()
		return len(h.sched.cache.nodeListLocked()) == nodes
	})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	total := int64(0)
	for i := 0; i < b.N; i++ {
		for j := range 1000 {
			h.create(b, fakeapi.Pods, makePod(fmt.Sprintf("p-%d-%d", i, j), "100m", "128Mi", ownedBy(fmt.Sprintf("rs-%d", j%10))))
		}
		total += 1000
		eventually(b, "1000 pods bound", func() bool { return h.binder.binds.Load() == total })
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "pods/s")
}

func TestSchedulingLoopWithoutNodes(t *testing.T) {
	h := newHarness(t, nil)
	h.create(t, fakeapi.Pods, makePod("p", "", ""))
	eventually(t, "PodScheduled=False", func() bool {
		c := scheduledCondition(h.pod(t, "p"))
		return c != nil && c.Reason == corev1.PodReasonSchedulerError && c.Message == "no nodes available to schedule pods"
	})
	h.create(t, fakeapi.Nodes, makeNode("n1", "1", "1Gi"))
	eventually(t, "p bound", func() bool { return h.pod(t, "p").Spec.NodeName == "n1" })
}

func TestRunWithoutStorageResources(t *testing.T) {
	// orch may not serve every kind the scheduler watches yet.
	api := fakeapi.New()
	log := slog.New(slog.DiscardHandler)
	factory := informer.NewFactory(api, log)
	bc := events.NewBroadcaster(api, log)
	binder := &fakeBinder{api: api}
	s, err := New(Config{Informers: factory, Writer: api, Binder: binder, Recorder: bc.Recorder(DefaultSchedulerName), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.optionalSync = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = factory.Run(ctx) })
	wg.Go(func() { _ = bc.Run(ctx) })
	wg.Go(func() { _ = s.Run(ctx) })
	api.MustCreate(fakeapi.Nodes, makeNode("n1", "1", "1Gi"))
	api.MustCreate(fakeapi.Pods, makePod("p", "", ""))
	eventually(t, "p bound", func() bool { return binder.binds.Load() == 1 })
}
