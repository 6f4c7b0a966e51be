package nodeipam

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestCIDRSet(t *testing.T) {
	s, err := newCIDRSet(netip.MustParsePrefix("10.42.0.0/22"), 24)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		p, err := s.allocate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.String())
	}
	want := []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"}
	if !slices.Equal(got, want) {
		t.Fatalf("allocations = %v, want %v", got, want)
	}
	if _, err := s.allocate(); !errors.Is(err, ErrCIDRRangeExhausted) {
		t.Fatalf("allocate on a full set: err = %v, want ErrCIDRRangeExhausted", err)
	}
	if err := s.release(netip.MustParsePrefix("10.42.1.0/24")); err != nil {
		t.Fatal(err)
	}
	if p, err := s.allocate(); err != nil || p.String() != "10.42.1.0/24" {
		t.Fatalf("allocate after release = %v, %v; want 10.42.1.0/24", p, err)
	}

	// A released subnet is the last one handed out again.
	s, _ = newCIDRSet(netip.MustParsePrefix("10.42.0.0/22"), 24)
	a, _ := s.allocate()
	_ = s.release(a)
	if b, _ := s.allocate(); b == a {
		t.Errorf("released %s was handed out again at once", a)
	}

	for _, bad := range []string{"10.42.0.0/23", "10.43.0.0/24", "10.42.0.1/24", "10.42.4.0/24"} {
		if err := s.occupy(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("occupy(%s) succeeded, want an error", bad)
		}
	}
}

func TestNewCIDRSetValidation(t *testing.T) {
	tests := []struct {
		cluster string
		mask    int
		wantErr string
	}{
		{cluster: "10.42.0.0/16", mask: 24},
		{cluster: "10.0.0.0/8", mask: 24},
		{cluster: "10.42.0.0/16", mask: 8, wantErr: "does not fit"},
		{cluster: "10.42.0.0/16", mask: 33, wantErr: "does not fit"},
		{cluster: "10.0.0.0/8", mask: 28, wantErr: "more than 65536 subnets"},
		{cluster: "fd00:42::/56", mask: 64},
	}
	for _, tt := range tests {
		_, err := newCIDRSet(netip.MustParsePrefix(tt.cluster), tt.mask)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("newCIDRSet(%s, /%d) = %v, want error containing %q", tt.cluster, tt.mask, err, tt.wantErr)
		}
	}
	s, _ := newCIDRSet(netip.MustParsePrefix("fd00:42::/56"), 64)
	if p, _ := s.allocate(); p.String() != "fd00:42::/64" {
		t.Errorf("first IPv6 subnet = %s", p)
	}
	if p, _ := s.allocate(); p.String() != "fd00:42:0:1::/64" {
		t.Errorf("second IPv6 subnet = %s", p)
	}
}

// harness runs the controller against a fake API until stopped.
type harness struct {
	api      *fakeapi.API
	recorder *controllertest.Recorder
	stop     func()
}

func start(t *testing.T, api *fakeapi.API, cluster string) *harness {
	t.Helper()
	h := &harness{api: api, recorder: &controllertest.Recorder{}}
	factory := informer.NewFactory(api, quiet)
	c, err := New(api, factory, h.recorder, Options{ClusterCIDR: netip.MustParsePrefix(cluster), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	var once sync.Once
	h.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(h.stop)
	return h
}

func node(name string, podCIDRs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
		n.Spec.PodCIDRs = podCIDRs
	}
	return n
}

func podCIDR(api *fakeapi.API, name string) string {
	obj, err := api.Get(context.Background(), fakeapi.Nodes, "", name)
	if err != nil {
		return ""
	}
	n := obj.(*corev1.Node)
	if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
		return ""
	}
	return n.Spec.PodCIDR
}

func waitCIDR(t *testing.T, api *fakeapi.API, name string) string {
	t.Helper()
	controllertest.Eventually(t, 10*time.Second, "a podCIDR for node "+name, func() bool { return podCIDR(api, name) != "" })
	return podCIDR(api, name)
}

func TestNodesGetDistinctSubnets(t *testing.T) {
	api := fakeapi.New()
	// A node that already has a subnet keeps it, and nobody else gets it.
	api.MustCreate(fakeapi.Nodes, node("old", "10.42.0.0/24"))
	api.MustCreate(fakeapi.Nodes, node("a"))
	start(t, api, "10.42.0.0/16")
	api.MustCreate(fakeapi.Nodes, node("b"))
	api.MustCreate(fakeapi.Nodes, node("c"))

	seen := map[string]string{}
	for _, n := range []string{"old", "a", "b", "c"} {
		c := waitCIDR(t, api, n)
		if other, dup := seen[c]; dup {
			t.Fatalf("nodes %s and %s both got %s", other, n, c)
		}
		p := netip.MustParsePrefix(c)
		if p.Bits() != 24 || !netip.MustParsePrefix("10.42.0.0/16").Contains(p.Addr()) {
			t.Errorf("node %s got %s, want a /24 of 10.42.0.0/16", n, c)
		}
		seen[c] = n
	}
	if got := podCIDR(api, "old"); got != "10.42.0.0/24" {
		t.Errorf("existing subnet changed to %s", got)
	}
}

func TestSubnetsSurviveRestartAndDeletionFreesThem(t *testing.T) {
	api := fakeapi.New()
	// Room for two nodes only.
	h := start(t, api, "10.42.0.0/23")
	api.MustCreate(fakeapi.Nodes, node("a"))
	api.MustCreate(fakeapi.Nodes, node("b"))
	a, b := waitCIDR(t, api, "a"), waitCIDR(t, api, "b")

	// A restarted controller learns the subnets from the Nodes.
	h.stop()
	h = start(t, api, "10.42.0.0/23")
	api.MustCreate(fakeapi.Nodes, node("c"))
	waitEvent(t, h.recorder, "Normal CIDRNotAvailable Node c status is now: CIDRNotAvailable")
	if podCIDR(api, "a") != a || podCIDR(api, "b") != b {
		t.Fatalf("subnets changed across a restart: a=%s b=%s, were %s %s", podCIDR(api, "a"), podCIDR(api, "b"), a, b)
	}
	if got := podCIDR(api, "c"); got != "" {
		t.Fatalf("node c got %s from a full range", got)
	}

	// Deleting a frees its subnet; c, still waiting, gets it.
	if _, err := api.Delete(context.Background(), fakeapi.Nodes, "", "a", nil); err != nil {
		t.Fatal(err)
	}
	if got := waitCIDR(t, api, "c"); got != a {
		t.Errorf("node c got %s, want the freed %s", got, a)
	}
}

func waitEvent(t *testing.T, r *controllertest.Recorder, want string) {
	t.Helper()
	if !controllertest.WaitUntil(10*time.Second, func() bool { return slices.Contains(r.Events(), want) }) {
		t.Fatalf("no event %q; got %v", want, r.Events())
	}
}

func TestFailedWriteIsRetried(t *testing.T) {
	api := fakeapi.New()
	var mu sync.Mutex
	failures := 3
	api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, _ string) error {
		mu.Lock()
		defer mu.Unlock()
		if verb == "update" && gvr == fakeapi.Nodes && failures > 0 {
			failures--
			return errors.New("etcdserver: request timed out")
		}
		return nil
	})
	h := start(t, api, "10.42.0.0/16")
	api.MustCreate(fakeapi.Nodes, node("a"))
	if got := waitCIDR(t, api, "a"); got == "" {
		t.Fatal("no subnet")
	}
	waitEvent(t, h.recorder, "Normal CIDRAssignmentFailed Node a status is now: CIDRAssignmentFailed")
}
