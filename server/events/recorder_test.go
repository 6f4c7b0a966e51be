package events

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeAPI stores events in memory.
type fakeAPI struct {
	mu     sync.Mutex
	events map[string]*corev1.Event
}

func (f *fakeAPI) Get(_ context.Context, _ schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev, ok := f.events[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "events"}, name)
	}
	return ev.DeepCopy(), nil
}

func (f *fakeAPI) Create(_ context.Context, _ schema.GroupVersionResource, obj runtime.Object, _ string) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := obj.(*corev1.Event).DeepCopy()
	f.events[ev.Namespace+"/"+ev.Name] = ev
	return ev.DeepCopy(), nil
}

func (f *fakeAPI) Update(_ context.Context, _ schema.GroupVersionResource, obj runtime.Object, _, _ string) (runtime.Object, error) {
	return f.Create(context.Background(), schema.GroupVersionResource{}, obj, "")
}

func TestRepeatedEventsAggregate(t *testing.T) {
	api := &fakeAPI{events: map[string]*corev1.Event{}}
	b := NewBroadcaster(api, nil)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	rec := b.Recorder("default-scheduler")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1"}}
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u2"}}

	for i := 0; i < 3; i++ {
		rec.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "0/%d nodes are available", 3)
	}
	rec.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned shop/web to n1")
	rec.Eventf(node, corev1.EventTypeNormal, "NodeReady", "Node n1 status is now: NodeReady")
	ctx := context.Background()
	for len(b.queue) > 0 {
		if err := b.write(ctx, <-b.queue); err != nil {
			t.Fatal(err)
		}
	}

	if len(api.events) != 3 {
		t.Fatalf("got %d events, want 3 (one aggregated): %v", len(api.events), api.events)
	}
	for _, ev := range api.events {
		switch ev.Reason {
		case "FailedScheduling":
			if ev.Count != 3 || !ev.LastTimestamp.After(ev.FirstTimestamp.Time) {
				t.Errorf("aggregated event: count %d first %v last %v", ev.Count, ev.FirstTimestamp, ev.LastTimestamp)
			}
			if ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.UID != "u1" || ev.Source.Component != "default-scheduler" {
				t.Errorf("involvedObject/source: %+v %+v", ev.InvolvedObject, ev.Source)
			}
		case "NodeReady":
			if ev.Namespace != "default" {
				t.Errorf("cluster-scoped object's event in namespace %q, want default", ev.Namespace)
			}
		}
	}
}

func TestRecordingNeverBlocks(t *testing.T) {
	b := NewBroadcaster(&fakeAPI{events: map[string]*corev1.Event{}}, nil)
	rec := b.Recorder("c")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d", UID: "u"}}
	for i := 0; i < cap(b.queue)+10; i++ {
		rec.Eventf(pod, corev1.EventTypeNormal, "R", "m%d", i)
	}
	if b.Dropped() != 10 {
		t.Fatalf("dropped %d, want 10", b.Dropped())
	}
}
