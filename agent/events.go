package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
)

// eventRecorder posts core/v1 Events from a background goroutine, so pod
// workers never wait on them. Repeats of the same event are aggregated
// into one object whose count rises, as client-go's recorder does. When
// the queue is full events are dropped: they are best effort.
type eventRecorder struct {
	api  *apiclient.Client
	host string
	log  *slog.Logger
	q    chan *v1.Event

	mu   sync.Mutex
	seen map[string]*v1.Event // aggregation key -> last posted event
}

const eventQueue = 256

func newEventRecorder(api *apiclient.Client, host string, log *slog.Logger) *eventRecorder {
	return &eventRecorder{api: api, host: host, log: log, q: make(chan *v1.Event, eventQueue), seen: map[string]*v1.Event{}}
}

// podEvent records an event about a pod; fieldPath names the container
// ("spec.containers{web}") or is empty.
func (r *eventRecorder) podEvent(pod *v1.Pod, fieldPath, eventType, reason, format string, args ...any) {
	r.record(pod.Namespace, v1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, FieldPath: fieldPath,
	}, eventType, reason, format, args...)
}

// nodeEvent records an event about the node, in the default namespace
// and with the node's name as its UID, as the kubelet's node reference.
func (r *eventRecorder) nodeEvent(eventType, reason, format string, args ...any) {
	if r == nil {
		return
	}
	r.record(metav1.NamespaceDefault, v1.ObjectReference{Kind: "Node", Name: r.host, UID: types.UID(r.host)},
		eventType, reason, format, args...)
}

func (r *eventRecorder) record(namespace string, ref v1.ObjectReference, eventType, reason, format string, args ...any) {
	if r == nil {
		return
	}
	now := metav1.Now()
	ev := &v1.Event{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", ref.Name, time.Now().UnixNano()),
			Namespace: namespace,
		},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             fmt.Sprintf(format, args...),
		Type:                eventType,
		Source:              v1.EventSource{Component: "kubelet", Host: r.host},
		ReportingController: "kubelet",
		ReportingInstance:   r.host,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
	}
	select {
	case r.q <- ev:
	default:
		r.log.Debug("event queue full; dropping event", "reason", reason, "object", ref.Kind+" "+ref.Namespace+"/"+ref.Name)
	}
}

func (r *eventRecorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.q:
			if err := r.post(ctx, ev); err != nil && ctx.Err() == nil {
				r.log.Debug("cannot post event", "reason", ev.Reason, "err", err)
			}
		}
	}
}

func (r *eventRecorder) post(ctx context.Context, ev *v1.Event) error {
	key := string(ev.InvolvedObject.UID) + "\x00" + ev.InvolvedObject.FieldPath + "\x00" + ev.Type + "\x00" + ev.Reason + "\x00" + ev.Message
	r.mu.Lock()
	prev := r.seen[key]
	r.mu.Unlock()
	if prev != nil {
		count := prev.Count + 1
		patch, _ := json.Marshal(map[string]any{"count": count, "lastTimestamp": ev.LastTimestamp})
		err := r.api.Patch(ctx, apiclient.Events, prev.Namespace, prev.Name, "", types.MergePatchType, patch, nil)
		if err == nil {
			r.mu.Lock()
			prev.Count = count
			r.mu.Unlock()
			return nil
		}
		// The event expired or was deleted: post it anew.
	}
	if err := r.api.Create(ctx, apiclient.Events, ev.Namespace, ev, nil); err != nil {
		return err
	}
	r.mu.Lock()
	if len(r.seen) > 4096 {
		r.seen = map[string]*v1.Event{}
	}
	r.seen[key] = ev
	r.mu.Unlock()
	return nil
}

// forget drops aggregation state of a pod that went away.
func (r *eventRecorder) forget(uid types.UID) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, ev := range r.seen {
		if ev.InvolvedObject.UID == uid {
			delete(r.seen, k)
		}
	}
}
