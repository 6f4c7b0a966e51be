package tainteviction

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var t0 = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	ctx   context.Context
	api   *fakeapi.API
	clock *clocktesting.FakeClock
	rec   *controllertest.Recorder
	c     *Controller
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clock := clocktesting.NewFakeClock(t0)
	api := fakeapi.New()
	api.Now = clock.Now
	factory := informer.NewFactory(api, quiet)
	rec := &controllertest.Recorder{Line: controllertest.ObjectLine}
	c := New(api, factory, rec, Options{Clock: clock, Logger: quiet})
	ctx := controllertest.StartInformers(t, factory, c.nodes, c.pods)
	return &harness{t: t, ctx: ctx, api: api, clock: clock, rec: rec, c: c}
}

// waitCache waits until the informers show what the fake stores.
func (h *harness) waitCache() {
	h.t.Helper()
	controllertest.WaitForCaches(h.t, h.api, h.c.nodes, h.c.pods)
}

// sync plans every node and pod on a current cache, then runs the due
// evictions: what the workers do, in the test's goroutine.
func (h *harness) sync() {
	h.t.Helper()
	h.waitCache()
	for _, node := range h.c.nodeLister.List("", nil) {
		if err := h.c.reconcileNode(h.ctx, node.Name); err != nil {
			h.t.Fatal(err)
		}
	}
	objs, _, _ := h.api.List(h.ctx, podsGVR, "", metav1.ListOptions{})
	for _, obj := range objs {
		key, _ := informer.KeyOf(obj)
		if err := h.c.reconcilePod(h.ctx, key); err != nil {
			h.t.Fatal(err)
		}
	}
	h.drain()
}

// drain runs the evictions that are due.
func (h *harness) drain() {
	h.t.Helper()
	for h.c.evictQueue.Len() > 0 {
		key, _ := h.c.evictQueue.Get()
		err := h.c.reconcileEviction(h.ctx, key)
		h.c.evictQueue.Done(key)
		if err != nil {
			h.t.Fatal(err)
		}
	}
	h.waitCache()
}

// step advances the clock and runs what became due.
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	h.clock.Step(d)
	h.drain()
}

func (h *harness) addNode(name string, taints ...corev1.Taint) {
	h.api.MustCreate(fakeapi.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}})
}

func (h *harness) setTaints(name string, taints ...corev1.Taint) {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, fakeapi.Nodes, "", name)
	if err != nil {
		h.t.Fatal(err)
	}
	node := obj.(*corev1.Node)
	node.Spec.Taints = taints
	if _, err := h.api.Update(h.ctx, fakeapi.Nodes, node, "", "test"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) addPod(name, node string, tolerations ...corev1.Toleration) {
	h.api.MustCreate(fakeapi.Pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Tolerations: tolerations, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})
}

func (h *harness) pod(name string) *corev1.Pod {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, fakeapi.Pods, "default", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj.(*corev1.Pod)
}

// evicted reports whether the pod is being deleted (the fake keeps a pod
// bound to a node for its grace period, as the API server does).
func (h *harness) evicted(name string) bool {
	h.t.Helper()
	if !h.api.Exists(fakeapi.Pods, "default", name) {
		return true
	}
	return h.pod(name).DeletionTimestamp != nil
}

var (
	unreachable = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	maintenance = corev1.Taint{Key: "maintenance", Value: "now", Effect: corev1.TaintEffectNoExecute}
)

func seconds(s int64) *int64 { return &s }

func toleration(key string, s *int64) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: s}
}

func TestEvictionTiming(t *testing.T) {
	const never = -1
	cases := []struct {
		name        string
		taints      []corev1.Taint
		tolerations []corev1.Toleration
		evictAfter  time.Duration // never: not evicted
	}{
		{"no toleration", []corev1.Taint{unreachable}, nil, 0},
		{"toleration of another taint", []corev1.Taint{unreachable}, []corev1.Toleration{toleration("other", nil)}, 0},
		{"tolerated forever", []corev1.Taint{unreachable}, []corev1.Toleration{toleration(corev1.TaintNodeUnreachable, nil)}, never},
		{"wildcard toleration", []corev1.Taint{unreachable, maintenance}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, never},
		{"default 300 s", []corev1.Taint{unreachable}, []corev1.Toleration{toleration(corev1.TaintNodeUnreachable, seconds(300))}, 300 * time.Second},
		{"smallest of the tolerations used", []corev1.Taint{unreachable, maintenance}, []corev1.Toleration{
			toleration(corev1.TaintNodeUnreachable, seconds(300)),
			{Key: "maintenance", Operator: corev1.TolerationOpEqual, Value: "now", Effect: corev1.TaintEffectNoExecute, TolerationSeconds: seconds(60)},
		}, 60 * time.Second},
		{"value mismatch", []corev1.Taint{maintenance}, []corev1.Toleration{
			{Key: "maintenance", Operator: corev1.TolerationOpEqual, Value: "later", Effect: corev1.TaintEffectNoExecute},
		}, 0},
		{"negative seconds", []corev1.Taint{unreachable}, []corev1.Toleration{toleration(corev1.TaintNodeUnreachable, seconds(-5))}, 0},
		{"NoSchedule taints do not evict", []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}}, nil, never},
		{"untainted node", nil, nil, never},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.addNode("n1", tc.taints...)
			h.addNode("n2")
			h.addPod("p", "n1", tc.tolerations...)
			h.addPod("elsewhere", "n2")
			h.sync()
			if tc.evictAfter == never {
				h.step(time.Hour)
				if h.evicted("p") {
					t.Fatal("pod evicted, want it kept")
				}
				return
			}
			if tc.evictAfter > 0 {
				h.step(tc.evictAfter - time.Second)
				if h.evicted("p") {
					t.Fatalf("pod evicted before %v", tc.evictAfter)
				}
				h.step(time.Second)
			}
			if !h.evicted("p") {
				t.Fatalf("pod not evicted after %v", tc.evictAfter)
			}
			if h.evicted("elsewhere") {
				t.Error("pod on an untainted node evicted")
			}
			if !h.rec.Has("Pod p Normal TaintManagerEviction: Marking for deletion Pod default/p") {
				t.Errorf("no eviction event: %q", h.rec.Events())
			}
			pod := h.pod("p")
			if i := slices.IndexFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.DisruptionTarget }); i < 0 ||
				pod.Status.Conditions[i].Reason != "DeletionByTaintManager" || pod.Status.Conditions[i].Status != corev1.ConditionTrue {
				t.Errorf("conditions %+v, want DisruptionTarget DeletionByTaintManager", pod.Status.Conditions)
			}
			if g := pod.DeletionGracePeriodSeconds; g == nil || *g != corev1.DefaultTerminationGracePeriodSeconds {
				t.Errorf("deletion grace period %v, want the pod's own (graceful)", g)
			}
		})
	}
}

func TestTaintAddedLaterAndRemovedBeforeDeadline(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.addPod("tolerant", "n1", toleration(corev1.TaintNodeUnreachable, seconds(300)))
	h.addPod("plain", "n1")
	h.sync()
	h.step(time.Hour)

	h.setTaints("n1", unreachable)
	h.sync()
	if !h.evicted("plain") {
		t.Fatal("pod without toleration not evicted at once")
	}
	h.step(200 * time.Second)
	if h.evicted("tolerant") {
		t.Fatal("tolerating pod evicted early")
	}
	// The node comes back before the 300 s are up.
	h.setTaints("n1")
	h.sync()
	if !h.rec.Has("Pod tolerant Normal TaintManagerEviction: Cancelling deletion of Pod default/tolerant") {
		t.Errorf("no cancel event: %q", h.rec.Events())
	}
	h.step(time.Hour)
	if h.evicted("tolerant") {
		t.Fatal("pod evicted after its node's taint was removed")
	}
}

func TestTolerationSecondsCountFromFirstSight(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1", unreachable)
	h.addPod("p", "n1", toleration(corev1.TaintNodeUnreachable, seconds(300)))
	h.sync()
	h.step(200 * time.Second)
	// The node's taint is swapped (not-ready → unreachable style changes
	// touch the taint list): the clock keeps running.
	h.setTaints("n1", unreachable, corev1.Taint{Key: "cosmetic", Effect: corev1.TaintEffectNoSchedule})
	h.sync()
	h.step(99 * time.Second)
	if h.evicted("p") {
		t.Fatal("evicted early")
	}
	h.step(time.Second)
	if !h.evicted("p") {
		t.Fatal("not evicted 300 s after the taint was first seen")
	}
}

func TestShortenedTolerationEvictsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1", unreachable)
	h.addPod("p", "n1", toleration(corev1.TaintNodeUnreachable, seconds(300)))
	h.sync()
	h.step(200 * time.Second)
	pod := h.pod("p")
	pod.Spec.Tolerations[0].TolerationSeconds = seconds(100)
	if _, err := h.api.Update(h.ctx, fakeapi.Pods, pod, "", "test"); err != nil {
		t.Fatal(err)
	}
	h.sync()
	if !h.evicted("p") {
		t.Fatal("pod whose toleration ran out not evicted")
	}
}

func TestEvictionRechecksCurrentState(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1", unreachable)
	h.addPod("p", "n1", toleration(corev1.TaintNodeUnreachable, seconds(10)))
	h.sync()
	// The taint goes, but the node's change is not planned before the
	// timer fires: the eviction must see the current node.
	h.setTaints("n1")
	h.waitCache()
	h.step(10 * time.Second)
	if h.evicted("p") {
		t.Fatal("pod evicted although its node is no longer tainted")
	}
}

func TestRun(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.addPod("p", "n1", toleration(corev1.TaintNodeUnreachable, seconds(30)))
	h.addPod("q", "n1")
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	h.setTaints("n1", unreachable)
	wait := func(name string) {
		t.Helper()
		controllertest.Eventually(t, 5*time.Second, name+" evicted", func() bool { return h.evicted(name) })
	}
	wait("q")
	if h.evicted("p") {
		t.Fatal("tolerating pod evicted at once")
	}
	// Wait for the timer to be set before moving the clock.
	controllertest.Eventually(t, 5*time.Second, "an eviction timer", h.clock.HasWaiters)
	h.clock.Step(30 * time.Second)
	wait("p")
}
