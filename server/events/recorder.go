// Package events records core/v1 Events for the server's components (the
// scheduler, controllers) the way Kubernetes' event recorder does: an event
// that repeats (same object, type, reason, message and source) updates the
// existing Event's count and lastTimestamp instead of creating a new one.
//
// Recording never blocks the caller: events go through a bounded buffer to
// one writer goroutine and are dropped (and counted) when it is full, as a
// busy control plane must not stall on its own diagnostics.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// API is what the recorder needs from the API server (apiserver.Local).
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

var eventsGVR = corev1.SchemeGroupVersion.WithResource("events")

// Recorder emits events on behalf of one component.
type Recorder interface {
	// Eventf records an event about obj; eventType is corev1.EventTypeNormal
	// or corev1.EventTypeWarning.
	Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{})
}

// Broadcaster owns the writer goroutine shared by all recorders.
type Broadcaster struct {
	api   API
	log   *slog.Logger
	queue chan *corev1.Event
	now   func() time.Time

	mu      sync.Mutex
	seen    map[aggregateKey]seenEvent // recent events by aggregation key
	dropped int
}

type aggregateKey struct {
	uid                              types.UID
	eventType, reason, message, from string
}

type seenEvent struct {
	name, namespace string
	last            time.Time
}

// cacheSize bounds the aggregation cache, as Kubernetes' LRU of 4096.
const cacheSize = 4096

// NewBroadcaster makes a broadcaster; call Run to start writing.
func NewBroadcaster(api API, log *slog.Logger) *Broadcaster {
	if log == nil {
		log = slog.Default()
	}
	return &Broadcaster{api: api, log: log, queue: make(chan *corev1.Event, 1000), now: time.Now, seen: map[aggregateKey]seenEvent{}}
}

// Recorder returns a recorder for a component (source.component and
// reportingComponent), e.g. "default-scheduler".
func (b *Broadcaster) Recorder(component string) Recorder {
	return &recorder{b: b, component: component}
}

// Run writes events until ctx is done.
func (b *Broadcaster) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-b.queue:
			if err := b.write(ctx, ev); err != nil && ctx.Err() == nil {
				b.log.Debug("write event", "reason", ev.Reason, "object", ev.InvolvedObject.Name, "err", err)
			}
		}
	}
}

type recorder struct {
	b         *Broadcaster
	component string
}

func (r *recorder) Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{}) {
	ref, err := objectReference(obj)
	if err != nil {
		return
	}
	now := metav1.NewTime(r.b.now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()),
			Namespace: eventNamespace(ref.Namespace),
		},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             fmt.Sprintf(messageFmt, args...),
		Type:                eventType,
		Source:              corev1.EventSource{Component: r.component},
		ReportingController: r.component,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
	}
	select {
	case r.b.queue <- ev:
	default:
		r.b.mu.Lock()
		r.b.dropped++
		r.b.mu.Unlock()
	}
}

// Dropped is the number of events dropped because the buffer was full.
func (b *Broadcaster) Dropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// write creates the event, or bumps the count of the one it repeats.
func (b *Broadcaster) write(ctx context.Context, ev *corev1.Event) error {
	key := aggregateKey{ev.InvolvedObject.UID, ev.Type, ev.Reason, ev.Message, ev.Source.Component}
	b.mu.Lock()
	prev, ok := b.seen[key]
	b.mu.Unlock()
	if ok {
		obj, err := b.api.Get(ctx, eventsGVR, prev.namespace, prev.name)
		if err == nil {
			existing := obj.(*corev1.Event).DeepCopy()
			existing.Count++
			existing.LastTimestamp = ev.LastTimestamp
			if _, err = b.api.Update(ctx, eventsGVR, existing, "", ev.Source.Component); err == nil {
				b.remember(key, prev.namespace, prev.name)
				return nil
			}
		}
		if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
	}
	created, err := b.api.Create(ctx, eventsGVR, ev, ev.Source.Component)
	if err != nil {
		return err
	}
	m, _ := meta.Accessor(created)
	b.remember(key, m.GetNamespace(), m.GetName())
	return nil
}

func (b *Broadcaster) remember(key aggregateKey, ns, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) >= cacheSize {
		// Forget the oldest entry.
		var oldest aggregateKey
		var t time.Time
		for k, v := range b.seen {
			if t.IsZero() || v.last.Before(t) {
				oldest, t = k, v.last
			}
		}
		delete(b.seen, oldest)
	}
	b.seen[key] = seenEvent{name: name, namespace: ns, last: b.now()}
}

// objectReference refers to obj as involvedObject does.
func objectReference(obj runtime.Object) (corev1.ObjectReference, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return corev1.ObjectReference{}, err
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	return corev1.ObjectReference{
		APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
		Namespace: m.GetNamespace(), Name: m.GetName(), UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(),
	}, nil
}

// eventNamespace: events about cluster-scoped objects go to "default".
func eventNamespace(ns string) string {
	if ns == "" {
		return metav1.NamespaceDefault
	}
	return ns
}
