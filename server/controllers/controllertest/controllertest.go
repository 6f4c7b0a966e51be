// Package controllertest holds what the controller tests share beside the
// fake API: polling for a condition, an event recorder, and waiting for
// informer caches to show what the fake stores. Only tests import it.
package controllertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// pollInterval is short: the fake answers in microseconds and the tests
// wait on controllers that react within a few milliseconds.
const pollInterval = 2 * time.Millisecond

// WaitUntil polls cond until it holds or timeout has passed, and reports
// whether it held: for a caller that explains a timeout with the state it
// found. The timeout is a generous bound for a loaded machine (-race, CI),
// not a measurement.
func WaitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}

// Eventually polls cond until it holds and fails the test if it does not
// within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !WaitUntil(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Never checks that cond stays false for d: that a controller does not do
// something it must not, given time to do it.
func Never(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpectedly: %s", what)
		}
		time.Sleep(pollInterval)
	}
}

// Recorder is an events.Recorder keeping one line per event.
type Recorder struct {
	// Line formats an event; nil gives "Type Reason message".
	Line func(obj runtime.Object, eventType, reason, message string) string

	mu     sync.Mutex
	events []string
}

// ObjectLine is a Recorder.Line naming the object, for controllers that
// report on several kinds: "Kind name Type Reason: message".
func ObjectLine(obj runtime.Object, eventType, reason, message string) string {
	name := ""
	if m, err := meta.Accessor(obj); err == nil {
		name = m.GetName()
	}
	return fmt.Sprintf("%s %s %s %s: %s", obj.GetObjectKind().GroupVersionKind().Kind, name, eventType, reason, message)
}

// Eventf implements events.Recorder.
func (r *Recorder) Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{}) {
	msg := fmt.Sprintf(messageFmt, args...)
	line := eventType + " " + reason + " " + msg
	if r.Line != nil {
		line = r.Line(obj, eventType, reason, msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, line)
}

// Events returns the lines recorded so far.
func (r *Recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Take returns the lines recorded so far and forgets them.
func (r *Recorder) Take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// Count is the number of lines that start with prefix.
func (r *Recorder) Count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

// Has reports whether a line starts with prefix.
func (r *Recorder) Has(prefix string) bool { return r.Count(prefix) > 0 }

// Run runs each of runs (an informer factory's, a controller's Run) in a
// goroutine of its own until the test ends: the context it returns is
// cancelled at cleanup, which then waits for all of them to return.
func Run(t testing.TB, runs ...func(context.Context) error) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() { _ = run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ctx
}

// StartInformers runs factory until the test ends and waits until infs
// have synced. The context it returns ends with the test.
func StartInformers(t testing.TB, factory *informer.Factory, infs ...*informer.Informer) context.Context {
	t.Helper()
	ctx := Run(t, factory.Run)
	if !informer.WaitForSync(ctx, infs...) {
		t.Fatal("informers did not sync")
	}
	return ctx
}

// CacheCurrent reports whether inf holds exactly what api stores for its
// resource, at the same resource versions.
func CacheCurrent(t testing.TB, api *fakeapi.API, inf *informer.Informer) bool {
	t.Helper()
	objs, _, err := api.List(context.Background(), inf.GroupVersionResource(), "", metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list %s: %v", inf.GroupVersionResource().Resource, err)
	}
	if len(objs) != inf.Len() {
		return false
	}
	for _, obj := range objs {
		m, err := meta.Accessor(obj)
		if err != nil {
			t.Fatal(err)
		}
		cached, ok := inf.GetByName(m.GetNamespace(), m.GetName())
		if !ok {
			return false
		}
		if cm, err := meta.Accessor(cached); err != nil || cm.GetResourceVersion() != m.GetResourceVersion() {
			return false
		}
	}
	return true
}

// WaitForCaches waits until every informer shows what api stores, so that
// a test can run a controller's sync in its own goroutine on a current
// cache.
func WaitForCaches(t testing.TB, api *fakeapi.API, infs ...*informer.Informer) {
	t.Helper()
	Eventually(t, 10*time.Second, "informer caches to catch up", func() bool {
		for _, inf := range infs {
			if !CacheCurrent(t, api, inf) {
				return false
			}
		}
		return true
	})
}
