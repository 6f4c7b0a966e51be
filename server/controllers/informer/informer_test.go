package informer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a Handler that records "add ns/name", "update ns/name",
// "delete ns/name".
type recorder struct {
	mu     sync.Mutex
	events []string
}

func name(obj runtime.Object) string {
	k, _ := informer.KeyOf(obj)
	return k
}

func (r *recorder) OnAdd(obj runtime.Object) { r.add("add " + name(obj)) }
func (r *recorder) OnUpdate(old, obj runtime.Object) {
	if name(old) != name(obj) {
		panic("update changes key")
	}
	r.add("update " + name(obj))
}
func (r *recorder) OnDelete(obj runtime.Object) { r.add("delete " + name(obj)) }

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.events, s)
}

func configMap(ns, name string, lbls map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
}

func run(t *testing.T, inf *informer.Informer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := inf.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if !informer.WaitForSync(ctx, inf) {
		t.Fatal("informer did not sync")
	}
}

func TestInformerCacheAndHandlers(t *testing.T) {
	api := fakeapi.New()
	ctx := context.Background()
	api.MustCreate(fakeapi.ConfigMaps, configMap("a", "one", map[string]string{"app": "x"}))
	api.MustCreate(fakeapi.ConfigMaps, configMap("b", "two", nil))

	inf := informer.New(api, fakeapi.ConfigMaps, informer.Options{Logger: quiet})
	rec := &recorder{}
	inf.AddHandler(rec)
	if inf.HasSynced() {
		t.Fatal("synced before Run")
	}
	run(t, inf)
	got := rec.take()
	slices.Sort(got)
	if want := []string{"add a/one", "add b/two"}; !slices.Equal(got, want) {
		t.Fatalf("initial events %v, want %v", got, want)
	}

	api.MustCreate(fakeapi.ConfigMaps, configMap("a", "three", map[string]string{"app": "x"}))
	cm, _ := api.Get(ctx, fakeapi.ConfigMaps, "b", "two")
	cm.(*corev1.ConfigMap).Data = map[string]string{"k": "v"}
	if _, err := api.Update(ctx, fakeapi.ConfigMaps, cm, "", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Delete(ctx, fakeapi.ConfigMaps, "a", "one", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, "watch events", func() bool { return rec.has("delete a/one") })
	if got, want := rec.take(), []string{"add a/three", "update b/two", "delete a/one"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}

	if obj, ok := inf.Get("b/two"); !ok || obj.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Fatalf("Get(b/two) = %v, %v", obj, ok)
	}
	if _, ok := inf.GetByName("a", "one"); ok {
		t.Fatal("deleted object still cached")
	}
	tests := []struct {
		ns   string
		sel  string
		want []string
	}{
		{"", "", []string{"a/three", "b/two"}},
		{"a", "", []string{"a/three"}},
		{"b", "", []string{"b/two"}},
		{"", "app=x", []string{"a/three"}},
		{"b", "app=x", nil},
		{"nope", "", nil},
	}
	for _, tt := range tests {
		sel, err := labels.Parse(tt.sel)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, obj := range inf.List(tt.ns, sel) {
			got = append(got, name(obj))
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %q) = %v, want %v", tt.ns, tt.sel, got, tt.want)
		}
	}

	lister := informer.NewLister[*corev1.ConfigMap](inf)
	if cm, ok := lister.Get("b", "two"); !ok || cm.Name != "two" {
		t.Fatalf("typed Get = %v, %v", cm, ok)
	}
	if n := len(lister.List("", nil)); n != 2 {
		t.Fatalf("typed List has %d items", n)
	}
}

// TestInformerRelistsAfterCut cuts the watch and changes objects while the
// informer cannot list: the relist must turn the differences into events,
// including deletions it never saw and an object recreated with a new uid.
func TestInformerRelistsAfterCut(t *testing.T) {
	api := fakeapi.New()
	ctx := context.Background()
	for _, n := range []string{"keep", "gone", "changed", "recreated"} {
		api.MustCreate(fakeapi.ConfigMaps, configMap("ns", n, nil))
	}
	inf := informer.New(api, fakeapi.ConfigMaps, informer.Options{Logger: quiet, MinRetry: time.Millisecond, MaxRetry: 10 * time.Millisecond})
	rec := &recorder{}
	inf.AddHandler(rec)
	run(t, inf)
	rec.take()

	var listBlocked atomic.Bool
	listBlocked.Store(true)
	var lists atomic.Int32
	api.SetFail(func(verb string, _ schema.GroupVersionResource, _, _ string) error {
		if verb == "list" {
			lists.Add(1)
			if listBlocked.Load() {
				return errors.New("injected list failure")
			}
		}
		return nil
	})
	api.CutWatches()
	controllertest.Eventually(t, 10*time.Second, "a failed relist", func() bool { return lists.Load() > 0 })

	if _, err := api.Delete(ctx, fakeapi.ConfigMaps, "ns", "gone", nil); err != nil {
		t.Fatal(err)
	}
	cm, _ := api.Get(ctx, fakeapi.ConfigMaps, "ns", "changed")
	cm.(*corev1.ConfigMap).Data = map[string]string{"k": "v"}
	if _, err := api.Update(ctx, fakeapi.ConfigMaps, cm, "", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Delete(ctx, fakeapi.ConfigMaps, "ns", "recreated", nil); err != nil {
		t.Fatal(err)
	}
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "recreated", nil))
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "new", nil))
	listBlocked.Store(false)

	// The relist notifies in no particular order, from its own goroutine:
	// wait for all of it before looking.
	want := []string{"add ns/new", "add ns/recreated", "delete ns/gone", "delete ns/recreated", "update ns/changed"}
	controllertest.Eventually(t, 10*time.Second, "relist", func() bool { return rec.len() >= len(want) })
	got := rec.take()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("relist events %v, want %v", got, want)
	}
	keys := inf.Keys()
	slices.Sort(keys)
	if want := []string{"ns/changed", "ns/keep", "ns/new", "ns/recreated"}; !slices.Equal(keys, want) {
		t.Fatalf("cache keys %v, want %v", keys, want)
	}
	controllertest.Eventually(t, 10*time.Second, "watch resumed", func() bool { return api.Watchers() == 1 })
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "after", nil))
	controllertest.Eventually(t, 10*time.Second, "event after relist", func() bool { return rec.has("add ns/after") })
}

// TestInformerSurvivesSlowWatchCutoff lets the store cut the informer's
// watch because it fell behind (tiny buffer, a slow handler) and checks that
// the cache converges to the truth.
func TestInformerSurvivesSlowWatchCutoff(t *testing.T) {
	api := fakeapi.New()
	api.WatchBuffer = 2
	ctx := context.Background()
	inf := informer.New(api, fakeapi.ConfigMaps, informer.Options{Logger: quiet, MinRetry: time.Millisecond, MaxRetry: 10 * time.Millisecond})
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	inf.AddHandler(informer.HandlerFuncs{
		AddFunc: func(obj runtime.Object) {
			time.Sleep(100 * time.Microsecond)
			mu.Lock()
			seen[name(obj)] = true
			mu.Unlock()
		},
		DeleteFunc: func(obj runtime.Object) {
			mu.Lock()
			delete(seen, name(obj))
			mu.Unlock()
		},
	})
	run(t, inf)
	const n = 300
	for i := range n {
		api.MustCreate(fakeapi.ConfigMaps, configMap("ns", fmt.Sprint(i), nil))
		if i%3 == 0 {
			if _, err := api.Delete(ctx, fakeapi.ConfigMaps, "ns", fmt.Sprint(i), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	controllertest.Eventually(t, 10*time.Second, "cache converges", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inf.Len() == n-n/3 && len(seen) == n-n/3
	})
}

func TestAddHandlerLateReplaysCache(t *testing.T) {
	api := fakeapi.New()
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "a", nil))
	inf := informer.New(api, fakeapi.ConfigMaps, informer.Options{Logger: quiet})
	run(t, inf)
	rec := &recorder{}
	inf.AddHandler(rec)
	if got := rec.take(); !slices.Equal(got, []string{"add ns/a"}) {
		t.Fatalf("late handler got %v", got)
	}
	api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "b", nil))
	controllertest.Eventually(t, 10*time.Second, "live event", func() bool { return rec.has("add ns/b") })
}

func TestFactorySharesInformers(t *testing.T) {
	api := fakeapi.New()
	api.MustCreate(fakeapi.Pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "p", Labels: map[string]string{"a": "b"},
			Finalizers:      []string{"x"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u1"}},
		},
		Spec: corev1.PodSpec{NodeName: "n1"},
	})
	f := informer.NewFactory(api, quiet)
	pods := f.For(fakeapi.Pods)
	if f.For(fakeapi.Pods) != pods {
		t.Fatal("For returned a second informer for the same resource")
	}
	podMeta := f.Metadata(fakeapi.Pods)
	if podMeta == pods || f.Metadata(fakeapi.Pods) != podMeta {
		t.Fatal("Metadata informers not shared or not distinct from typed ones")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// Asked for after Run: started at once.
	cms := f.For(fakeapi.ConfigMaps)
	if !informer.WaitForSync(ctx, pods, podMeta, cms) {
		t.Fatal("not synced")
	}
	// An informer is synced once listed; its watch opens right after.
	if !controllertest.WaitUntil(10*time.Second, func() bool { return api.Watchers() == 3 }) {
		t.Fatalf("%d watches open, want 3 (one per informer)", api.Watchers())
	}
	obj, ok := podMeta.Get("ns/p")
	if !ok {
		t.Fatal("metadata informer lacks the pod")
	}
	pm, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		t.Fatalf("metadata informer holds %T", obj)
	}
	if pm.UID == "" || len(pm.OwnerReferences) != 1 || len(pm.Finalizers) != 1 || pm.Labels != nil || pm.Kind != "Pod" {
		t.Fatalf("metadata object %+v", pm)
	}
	if _, ok := pods.Get("ns/p"); !ok {
		t.Fatal("typed informer lacks the pod")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("factory Run did not return")
	}
	controllertest.Eventually(t, 10*time.Second, "watches closed", func() bool { return api.Watchers() == 0 })
}

func TestKeys(t *testing.T) {
	tests := []struct{ ns, name, key string }{
		{"", "node1", "node1"},
		{"default", "web", "default/web"},
	}
	for _, tt := range tests {
		if k := informer.Key(tt.ns, tt.name); k != tt.key {
			t.Errorf("Key(%q, %q) = %q", tt.ns, tt.name, k)
		}
		if ns, n := informer.SplitKey(tt.key); ns != tt.ns || n != tt.name {
			t.Errorf("SplitKey(%q) = %q, %q", tt.key, ns, n)
		}
	}
	if _, err := informer.KeyOf(&corev1.Pod{}); err == nil {
		t.Error("KeyOf of a nameless object succeeded")
	}
}

// TestInformerRelistsOnceOnExpiredWatch: a watch refused with 410 (its
// list's revision already left the history) is followed by one relist at
// once, not after the back-off; a second 410 in a row waits for the
// back-off, so a history too short for the list cannot become a relist
// loop.
func TestInformerRelistsOnceOnExpiredWatch(t *testing.T) {
	tests := []struct {
		name      string
		expiries  int32 // watches refused with 410 before one is served
		wantLists int32
		wantWatch bool
	}{
		{name: "one 410: relist at once and watch", expiries: 1, wantLists: 2, wantWatch: true},
		{name: "410 again: back off", expiries: 1000, wantLists: 2, wantWatch: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := fakeapi.New()
			api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "one", nil))
			var lists, watches atomic.Int32
			api.SetFail(func(verb string, _ schema.GroupVersionResource, _, _ string) error {
				switch verb {
				case "list":
					lists.Add(1)
				case "watch":
					if watches.Add(1) <= tt.expiries {
						return apierrors.NewResourceExpired("The resourceVersion for the provided list is too old.")
					}
				}
				return nil
			})
			// A back-off of an hour: only the immediate relist can happen
			// within the test.
			inf := informer.New(api, fakeapi.ConfigMaps, informer.Options{Logger: quiet, MinRetry: time.Hour, MaxRetry: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = inf.Run(ctx) }()
			defer func() { cancel(); <-done }()

			controllertest.Eventually(t, 10*time.Second, "the second watch", func() bool { return watches.Load() >= 2 })
			if tt.wantWatch {
				controllertest.Eventually(t, 10*time.Second, "a watch served", func() bool { return api.Watchers() == 1 })
				api.MustCreate(fakeapi.ConfigMaps, configMap("ns", "two", nil))
				controllertest.Eventually(t, 10*time.Second, "the watched object cached", func() bool { _, ok := inf.GetByName("ns", "two"); return ok })
			} else {
				time.Sleep(100 * time.Millisecond) // room for a wrong third list
			}
			if got := lists.Load(); got != tt.wantLists {
				t.Errorf("%d lists, want %d", got, tt.wantLists)
			}
			if _, ok := inf.GetByName("ns", "one"); !ok {
				t.Error("listed object not cached")
			}
		})
	}
}
