package netpol

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/orch-dev/orch/netproxy/nftwatch"
	"github.com/orch-dev/orch/netproxy/nftwatch/nftwatchtest"
	"github.com/orch-dev/orch/netproxy/proxy"
)

// fakeWriter records the rulesets written and can pretend the table was
// deleted.
type fakeWriter struct {
	mu      sync.Mutex
	written []*proxy.Ruleset
	gone    bool
	wrote   chan struct{}
}

func newFakeWriter() *fakeWriter { return &fakeWriter{wrote: make(chan struct{}, 100)} }

func (f *fakeWriter) Apply(rs *proxy.Ruleset) error {
	f.mu.Lock()
	f.written = append(f.written, rs)
	f.gone = false
	f.mu.Unlock()
	f.wrote <- struct{}{}
	return nil
}

func (f *fakeWriter) Exists(string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.gone, nil
}

func (f *fakeWriter) Forget(string) {}

func (f *fakeWriter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.written)
}

func (f *fakeWriter) last() *proxy.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written[len(f.written)-1]
}

// waitWrite waits for the next write.
func (f *fakeWriter) waitWrite(t *testing.T) *proxy.Ruleset {
	t.Helper()
	select {
	case <-f.wrote:
		return f.last()
	case <-time.After(10 * time.Second):
		t.Fatal("no write")
		return nil
	}
}

// settle waits until writes stop coming for a while and returns how many
// there were.
func (f *fakeWriter) settle() int {
	for {
		select {
		case <-f.wrote:
		case <-time.After(300 * time.Millisecond):
			return f.count()
		}
	}
}

func TestSyncer(t *testing.T) {
	w := newFakeWriter()
	tables := &nftwatchtest.Watcher{}
	s := NewSyncer(Config{NodeName: node}, w, SyncerOptions{MinSyncInterval: time.Millisecond, Tables: tables})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	st := cluster()
	s.ReplacePolicies([]*networkingv1.NetworkPolicy{policy("app", "deny", nil, ingressOnly, nil, nil)})
	s.ReplacePods(st.Pods)
	if n := w.settle(); n != 0 {
		t.Fatalf("wrote %d rulesets before namespaces were listed", n)
	}
	s.ReplaceNamespaces(st.Namespaces)
	if rs := w.waitWrite(t); rs.Chain("ingress-app/web") == nil {
		t.Fatalf("first write lacks the policy:\n%s", rs)
	}
	n := w.settle()

	// A status change that keeps the address is not worth a write.
	web := st.Pods[0].DeepCopy()
	web.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	s.UpdatePod(web)
	if got := w.settle(); got != n {
		t.Errorf("a pod status change caused %d writes", got-n)
	}

	// A new pod on the node is isolated at once.
	s.UpdatePod(testPod("app", "new", node, "10.42.0.7", nil))
	if rs := w.waitWrite(t); !strings.Contains(rs.String(), "10.42.0.7 : goto ingress-app/new") {
		t.Errorf("new pod not isolated:\n%s", rs)
	}
	w.settle()

	s.DeletePolicy("app", "deny")
	if rs := w.waitWrite(t); len(rs.Chains) != 1 {
		t.Errorf("pod chains left after the policy went:\n%s", rs)
	}
	n = w.settle()

	// Someone deletes the table and the watcher says so: it is written
	// again.
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	if subs := tables.Report(nftwatch.Table{Family: nftables.TableFamilyIPv4, Name: Config{}.table()}, nftwatch.Lost); subs != 1 {
		t.Fatalf("%d subscribers of the table, want 1", subs)
	}
	w.waitWrite(t)
	if w.count() <= n {
		t.Error("deleted table not written again")
	}
}
