package hollow

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
)

func boundPod(i int, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%d", i))},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
}

// eventually polls cond with a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A list far larger than the syncers' parallelism must not delay the
// watch: the watch is opened while the listed pods still wait to be
// synced (here, no pod status can be written until the watch is open).
// Waiting for the syncers first is what let the list's revision leave the
// server's history at scale, so that every watch got 410 and relisted.
func TestWatchStartsBeforeListedPodsAreSynced(t *testing.T) {
	const pods = 1500 // more than the 16 syncers and their old 16×64 queue slots
	var objs []runtime.Object
	for i := range pods {
		objs = append(objs, boundPod(i, "hollow-0"))
	}
	cs := fake.NewClientset(objs...)
	watching := make(chan struct{})
	var once sync.Once
	cs.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { close(watching) })
		return false, nil, nil // the tracker serves the watch
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := Start(ctx, gatedStatus{Clientset: cs, gate: watching}, Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	select {
	case <-watching:
	case <-time.After(30 * time.Second):
		t.Fatal("the pod watch was not opened while the listed pods waited for their syncers")
	}
	eventually(t, "a listed pod Running", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "p0", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	if st := c.WatchStats(); st.Lists != 1 || st.Expired != 0 {
		t.Errorf("watch stats %+v, want one list and no expiry", st)
	}
}

// gatedStatus holds every pod status write until gate closes. (A blocking
// reactor would not do: the fake clientset runs reactors under one lock.)
type gatedStatus struct {
	*fake.Clientset
	gate <-chan struct{}
}

func (g gatedStatus) CoreV1() corev1client.CoreV1Interface {
	return gatedCore{CoreV1Interface: g.Clientset.CoreV1(), gate: g.gate}
}

type gatedCore struct {
	corev1client.CoreV1Interface
	gate <-chan struct{}
}

func (g gatedCore) Pods(ns string) corev1client.PodInterface {
	return gatedPods{PodInterface: g.CoreV1Interface.Pods(ns), gate: g.gate}
}

type gatedPods struct {
	corev1client.PodInterface
	gate <-chan struct{}
}

func (g gatedPods) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.PodInterface.UpdateStatus(ctx, pod, opts)
}

// scriptedWatches serves the pod watches from a script, one per Watch
// call, and records the resourceVersion each watch asked for.
type scriptedWatches struct {
	mu      sync.Mutex
	script  []func(*watch.FakeWatcher)
	askedRV []string
	lists   atomic.Int64
}

func (s *scriptedWatches) install(cs *fake.Clientset) {
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		n := s.lists.Add(1)
		return true, &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: fmt.Sprintf("%d", 100*n)}}, nil
	})
	cs.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.askedRV = append(s.askedRV, a.(k8stesting.WatchActionImpl).GetWatchRestrictions().ResourceVersion)
		if len(s.script) == 0 {
			return true, watch.NewFake(), nil // stays open, silent
		}
		step := s.script[0]
		s.script = s.script[1:]
		w := watch.NewFakeWithChanSize(8, false)
		step(w)
		return true, w, nil
	})
}

func (s *scriptedWatches) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.askedRV...)
}

func TestPodWatchResumesAndRelists(t *testing.T) {
	expired := func(w *watch.FakeWatcher) {
		st := apierrors.NewResourceExpired("too old resource version: 1 (150)").Status()
		w.Error(&st)
	}
	gone := func(w *watch.FakeWatcher) {
		st := apierrors.NewGone("too old").Status()
		w.Error(&st)
	}
	podAt := func(rv string) func(w *watch.FakeWatcher) {
		return func(w *watch.FakeWatcher) {
			p := boundPod(1, "elsewhere")
			p.ResourceVersion = rv
			w.Modify(p)
			w.Stop() // the server ended the watch (timeout)
		}
	}
	bookmarkAt := func(rv string) func(w *watch.FakeWatcher) {
		return func(w *watch.FakeWatcher) {
			w.Action(watch.Bookmark, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}})
			w.Stop()
		}
	}
	otherError := func(w *watch.FakeWatcher) {
		st := apierrors.NewInternalError(fmt.Errorf("boom")).Status()
		w.Error(&st)
	}
	tests := []struct {
		name      string
		script    []func(*watch.FakeWatcher)
		wantRVs   []string
		wantStats WatchStats
	}{
		{
			name:      "a watch that ends cleanly resumes from the last revision seen",
			script:    []func(*watch.FakeWatcher){podAt("105"), podAt("107")},
			wantRVs:   []string{"100", "105", "107"},
			wantStats: WatchStats{Lists: 1, Rewatches: 2},
		},
		{
			name:      "bookmarks advance the revision",
			script:    []func(*watch.FakeWatcher){bookmarkAt("130")},
			wantRVs:   []string{"100", "130"},
			wantStats: WatchStats{Lists: 1, Rewatches: 1},
		},
		{
			name:      "410 Expired relists once, then watches from the new list",
			script:    []func(*watch.FakeWatcher){expired},
			wantRVs:   []string{"100", "200"},
			wantStats: WatchStats{Lists: 2, Expired: 1},
		},
		{
			name:      "410 Gone relists too",
			script:    []func(*watch.FakeWatcher){podAt("103"), gone},
			wantRVs:   []string{"100", "103", "200"},
			wantStats: WatchStats{Lists: 2, Expired: 1, Rewatches: 1},
		},
		{
			name:      "other errors resume without a list",
			script:    []func(*watch.FakeWatcher){otherError},
			wantRVs:   []string{"100", "100"},
			wantStats: WatchStats{Lists: 1, Rewatches: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset()
			sw := &scriptedWatches{script: tt.script}
			sw.install(cs)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c, err := Start(ctx, cs, Options{Nodes: 1})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "the scripted watches", func() bool { return len(sw.asked()) == len(tt.wantRVs) })
			c.Stop()
			if got := sw.asked(); fmt.Sprint(got) != fmt.Sprint(tt.wantRVs) {
				t.Errorf("watches asked for revisions %v, want %v", got, tt.wantRVs)
			}
			if got := c.WatchStats(); got != tt.wantStats {
				t.Errorf("watch stats %+v, want %+v", got, tt.wantStats)
			}
		})
	}
}

// Leases are renewed like the kubelet's lease controller does: an update
// of the lease last written, without reading it first; a silent node's
// lease is left alone.
func TestLeasesRenewedWithoutReads(t *testing.T) {
	cs := fake.NewClientset()
	var gets, updates sync.Map // node → *atomic.Int64
	count := func(m *sync.Map, name string) int64 {
		v, _ := m.LoadOrStore(name, &atomic.Int64{})
		return v.(*atomic.Int64).Load()
	}
	inc := func(m *sync.Map, name string) {
		v, _ := m.LoadOrStore(name, &atomic.Int64{})
		v.(*atomic.Int64).Add(1)
	}
	cs.PrependReactor("get", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		inc(&gets, a.(k8stesting.GetAction).GetName())
		return false, nil, nil
	})
	cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		inc(&updates, a.(k8stesting.UpdateAction).GetObject().(metav1.Object).GetName())
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := Start(ctx, cs, Options{Nodes: 3, LeaseDuration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	c.StopHeartbeats(2)
	silentUpdates := count(&updates, "hollow-2")

	eventually(t, "three renewals of the live nodes' leases", func() bool {
		return count(&updates, "hollow-0") >= 3 && count(&updates, "hollow-1") >= 3
	})
	for _, n := range []string{"hollow-0", "hollow-1"} {
		if g := count(&gets, n); g != 1 {
			t.Errorf("lease %s read %d times, want once (before it was created)", n, g)
		}
	}
	if got := count(&updates, "hollow-2"); got > silentUpdates+1 {
		// One renewal may have been under way when its heartbeats stopped.
		t.Errorf("silent node's lease renewed %d times after it stopped", got-silentUpdates)
	}
}
