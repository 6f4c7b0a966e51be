package job

import (
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// A reconcile works from the pods it read at its start while the informer
// moves on. Here the informer catches up in the middle of one (during its
// status write): the pod the previous reconcile created appears, and with
// it that reconcile's create expectation is met. The reconcile must still
// not create a pod for it: its pods are older than the expectation.
// (Expectations read after the pods let it through: the Job ran 4 pods and
// counted 4 of 3 completions.)
func TestReconcileOnPodsOlderThanItsExpectations(t *testing.T) {
	h := newHarness(t)
	key := "default/j"
	h.createJob(newJob("j", 2, 3))
	h.sync(key)
	pods := h.activePods()
	if len(pods) != 2 {
		t.Fatalf("%d pods, want 2", len(pods))
	}
	pA, pB := pods[0], pods[1]
	h.setPhase(pA, corev1.PodSucceeded, 0)
	h.waitCache()

	// hold, once armed, stops the pod informer after the next event it
	// stores, until released.
	var armed atomic.Bool
	release := make(chan struct{})
	hold := func(runtime.Object) {
		if armed.CompareAndSwap(true, false) {
			<-release
		}
	}
	h.c.pods.AddHandler(informer.HandlerFuncs{AddFunc: hold, UpdateFunc: func(_, obj runtime.Object) { hold(obj) }})
	cached := func(name string, ok func(*corev1.Pod) bool) func() bool {
		return func() bool {
			obj, found := h.c.pods.GetByName("default", name)
			return found && ok(obj.(*corev1.Pod))
		}
	}
	var jobWrites atomic.Int32
	var onJobWrite []func()
	h.api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, _ string) error {
		if verb == "update" && gvr == jobsGVR {
			if n := int(jobWrites.Add(1)); n <= len(onJobWrite) {
				onJobWrite[n-1]()
			}
		}
		return nil
	})
	var pC string
	onJobWrite = []func(){
		// Reconcile 1 counts pA. Meanwhile pB succeeds (too late for its
		// view), and the informer stops after the next pod event.
		func() {
			h.setPhase(pB, corev1.PodSucceeded, 0)
			controllertest.Eventually(t, 10*time.Second, "pB succeeded in the cache", cached(pB.Name, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded }))
			armed.Store(true)
		},
		nil, // reconcile 1's final status write
		// Reconcile 2 counts pB from a view without pC; now the informer
		// catches up and shows pC.
		func() {
			close(release)
			controllertest.Eventually(t, 10*time.Second, "pC in the cache", func() bool {
				for _, p := range h.c.podList.OwnedBy("default", h.job("j").UID) {
					if p.Name != pA.Name && p.Name != pB.Name {
						pC = p.Name
						return true
					}
				}
				return false
			})
		},
	}
	onJobWrite[1] = func() {}
	if err := h.c.reconcile(h.ctx, key); err != nil { // reconcile 1: counts pA, creates pC
		t.Fatal(err)
	}
	if err := h.c.reconcile(h.ctx, key); err != nil { // reconcile 2: counts pB
		t.Fatal(err)
	}
	if pC == "" {
		t.Fatal("the informer was not caught up during reconcile 2")
	}
	if n := len(h.pods()); n != 3 {
		t.Errorf("%d pods for 3 completions after reconcile 2, want 3 (pA, pB, %s)", n, pC)
	}
	h.sync(key)
	if st := h.job("j").Status; st.Succeeded != 2 || st.Active != 1 {
		t.Errorf("succeeded %d active %d, want 2 and 1", st.Succeeded, st.Active)
	}
}
