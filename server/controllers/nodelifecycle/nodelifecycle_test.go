package nodelifecycle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var t0 = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

// resources is the fake's table plus node leases.
func resources() []*registry.Resource {
	return append(fakeapi.Resources(), &registry.Resource{
		GroupVersion: coordinationv1.SchemeGroupVersion, Name: "leases", Kind: "Lease", Namespaced: true,
		New:     func() runtime.Object { return &coordinationv1.Lease{} },
		NewList: func() runtime.Object { return &coordinationv1.LeaseList{} },
	})
}

type harness struct {
	t     *testing.T
	ctx   context.Context
	api   *fakeapi.API
	clock *clocktesting.FakeClock
	rec   *controllertest.Recorder
	c     *Controller
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	clock := clocktesting.NewFakeClock(t0)
	api := fakeapi.New(resources()...)
	api.Now = clock.Now
	factory := informer.NewFactory(api, quiet)
	rec := &controllertest.Recorder{Line: controllertest.ObjectLine}
	opts.Clock = clock
	opts.Logger = quiet
	c := New(api, factory, rec, opts)
	ctx := controllertest.StartInformers(t, factory, c.nodes, c.pods, c.leases)
	return &harness{t: t, ctx: ctx, api: api, clock: clock, rec: rec, c: c}
}

// waitCache waits until the informers show what the fake stores.
func (h *harness) waitCache() {
	h.t.Helper()
	controllertest.WaitForCaches(h.t, h.api, h.c.nodes, h.c.pods, h.c.leases)
}

// monitor runs one health pass, the NoExecute pass and the NoSchedule
// reconcile of every node, each on a current cache.
func (h *harness) monitor() {
	h.t.Helper()
	h.waitCache()
	h.c.monitorNodeHealth(h.ctx)
	h.waitCache()
	h.c.doNoExecuteTaintingPass(h.ctx)
	h.waitCache()
	for _, node := range h.c.nodeLister.List("", nil) {
		if err := h.c.reconcileNoScheduleTaints(h.ctx, node.Name); err != nil {
			h.t.Fatal(err)
		}
	}
	h.waitCache()
}

func readyNode(name string, lbls map[string]string, now time.Time) *corev1.Node {
	hb := metav1.NewTime(now)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: hb, LastTransitionTime: hb},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: hb, LastTransitionTime: hb},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: hb, LastTransitionTime: hb},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: hb, LastTransitionTime: hb},
		}},
	}
}

// addNode registers a ready node with its lease, as an agent does.
func (h *harness) addNode(name string, lbls map[string]string) {
	h.api.MustCreate(fakeapi.Nodes, readyNode(name, lbls, h.clock.Now()))
	renew := metav1.NewMicroTime(h.clock.Now())
	h.api.MustCreate(leasesGVR, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: NodeLeaseNamespace, Name: name},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, RenewTime: &renew},
	})
}

// renewLease is one lease heartbeat of the node.
func (h *harness) renewLease(name string) {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, leasesGVR, NodeLeaseNamespace, name)
	if err != nil {
		h.t.Fatal(err)
	}
	lease := obj.(*coordinationv1.Lease)
	renew := metav1.NewMicroTime(h.clock.Now())
	lease.Spec.RenewTime = &renew
	if _, err := h.api.Update(h.ctx, leasesGVR, lease, "", "test"); err != nil {
		h.t.Fatal(err)
	}
}

// postStatus is the agent reporting its node ready (status heartbeat).
func (h *harness) postStatus(name string, ready corev1.ConditionStatus) {
	h.t.Helper()
	node := h.node(name)
	now := metav1.NewTime(h.clock.Now())
	for i := range node.Status.Conditions {
		cond := &node.Status.Conditions[i]
		status := corev1.ConditionFalse
		if cond.Type == corev1.NodeReady {
			status = ready
		}
		if cond.Status != status {
			cond.LastTransitionTime = now
		}
		cond.Status, cond.Reason, cond.Message, cond.LastHeartbeatTime = status, "", "", now
	}
	if _, err := h.api.Update(h.ctx, fakeapi.Nodes, node, "status", "test"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) node(name string) *corev1.Node {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, fakeapi.Nodes, "", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj.(*corev1.Node)
}

func (h *harness) updateNode(name string, mutate func(*corev1.Node)) {
	h.t.Helper()
	node := h.node(name)
	mutate(node)
	if _, err := h.api.Update(h.ctx, fakeapi.Nodes, node, "", "test"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) pod(name string) *corev1.Pod {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, fakeapi.Pods, "default", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj.(*corev1.Pod)
}

func (h *harness) addPod(name, node string) {
	now := metav1.NewTime(h.clock.Now())
	h.api.MustCreate(fakeapi.Pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}},
	})
}

func condition(node *corev1.Node, t corev1.NodeConditionType) corev1.NodeCondition {
	if c := getCondition(&node.Status, t); c != nil {
		return *c
	}
	return corev1.NodeCondition{}
}

func podReady(pod *corev1.Pod) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status
		}
	}
	return ""
}

// taints lists the node's taints as "key:Effect".
func taints(node *corev1.Node) []string {
	var out []string
	for _, t := range node.Spec.Taints {
		out = append(out, t.Key+":"+string(t.Effect))
	}
	slices.Sort(out)
	return out
}

const (
	unreachableNoExecute  = "node.kubernetes.io/unreachable:NoExecute"
	unreachableNoSchedule = "node.kubernetes.io/unreachable:NoSchedule"
	notReadyNoExecute     = "node.kubernetes.io/not-ready:NoExecute"
	notReadyNoSchedule    = "node.kubernetes.io/not-ready:NoSchedule"
)

func TestSilentNodeGoesUnknownIsTaintedAndRecovers(t *testing.T) {
	h := newHarness(t, Options{})
	h.addNode("n1", nil)
	h.addNode("n2", nil)
	h.addPod("p1", "n1")
	h.addPod("p2", "n2")
	h.monitor()
	if !h.rec.Has("Node n1 Normal RegisteredNode: Node n1 event: Registered Node n1 in Controller") {
		t.Errorf("no RegisteredNode event: %q", h.rec.Events())
	}

	// n1 falls silent; n2 renews its lease every 10 s.
	for range 3 {
		h.clock.Step(10 * time.Second)
		h.renewLease("n2")
		h.monitor()
	}
	if got := condition(h.node("n1"), corev1.NodeReady).Status; got != corev1.ConditionTrue {
		t.Fatalf("n1 Ready %s after 30 s of silence, want True (grace period 40 s)", got)
	}
	h.clock.Step(11 * time.Second)
	h.renewLease("n2")
	h.monitor()

	n1 := h.node("n1")
	for _, ct := range watchedConditions {
		got := condition(n1, ct)
		if got.Status != corev1.ConditionUnknown || got.Reason != "NodeStatusUnknown" || got.Message != "Kubelet stopped posting node status." {
			t.Errorf("n1 %s = %s %q %q, want Unknown NodeStatusUnknown", ct, got.Status, got.Reason, got.Message)
		}
		if !got.LastTransitionTime.Time.Equal(t0.Add(41 * time.Second).Truncate(time.Second)) {
			t.Errorf("n1 %s lastTransitionTime %v, want now", ct, got.LastTransitionTime)
		}
		if !got.LastHeartbeatTime.Time.Equal(t0) {
			t.Errorf("n1 %s lastHeartbeatTime %v changed, want the node's last one", ct, got.LastHeartbeatTime)
		}
	}
	if got, want := taints(n1), []string{unreachableNoExecute, unreachableNoSchedule}; !slices.Equal(got, want) {
		t.Fatalf("n1 taints %v, want %v", got, want)
	}
	for _, taint := range n1.Spec.Taints {
		if taint.TimeAdded == nil {
			t.Errorf("taint %s has no timeAdded", taint.Key)
		}
	}
	if got := condition(h.node("n2"), corev1.NodeReady).Status; got != corev1.ConditionTrue {
		t.Errorf("n2 Ready %s, want True", got)
	}
	if len(h.node("n2").Spec.Taints) != 0 {
		t.Errorf("n2 tainted: %v", taints(h.node("n2")))
	}
	if got := podReady(h.pod("p1")); got != corev1.ConditionFalse {
		t.Errorf("pod on silent node Ready %s, want False", got)
	}
	if got := podReady(h.pod("p2")); got != corev1.ConditionTrue {
		t.Errorf("pod on healthy node Ready %s, want True", got)
	}
	for _, want := range []string{
		"Node n1 Normal NodeNotReady: Node n1 status is now: NodeNotReady",
		"Pod p1 Warning NodeNotReady: Node is not ready",
	} {
		if !h.rec.Has(want) {
			t.Errorf("missing event %q in %q", want, h.rec.Events())
		}
	}

	// A pod bound to the Unknown node afterwards is marked not ready too.
	h.addPod("late", "n1")
	h.waitCache()
	if err := h.c.reconcilePod(h.ctx, "default/late"); err != nil {
		t.Fatal(err)
	}
	if got := podReady(h.pod("late")); got != corev1.ConditionFalse {
		t.Errorf("pod bound to the Unknown node Ready %s, want False", got)
	}

	// n1 comes back: lease and status.
	h.clock.Step(5 * time.Second)
	h.renewLease("n1")
	h.renewLease("n2")
	h.postStatus("n1", corev1.ConditionTrue)
	h.monitor()
	n1 = h.node("n1")
	if got := condition(n1, corev1.NodeReady).Status; got != corev1.ConditionTrue {
		t.Fatalf("n1 Ready %s after heartbeats resumed", got)
	}
	if len(n1.Spec.Taints) != 0 {
		t.Fatalf("n1 still tainted after recovery: %v", taints(n1))
	}
}

func TestLeaseAloneKeepsNodeAlive(t *testing.T) {
	h := newHarness(t, Options{})
	h.addNode("n1", nil)
	h.addNode("n2", nil)
	h.monitor()
	for range 10 {
		h.clock.Step(10 * time.Second)
		h.renewLease("n1")
		h.postStatus("n2", corev1.ConditionTrue) // n2 heartbeats through its status only
		h.monitor()
	}
	for _, name := range []string{"n1", "n2"} {
		if got := condition(h.node(name), corev1.NodeReady).Status; got != corev1.ConditionTrue {
			t.Errorf("%s Ready %s, want True", name, got)
		}
	}
}

func TestNotReadyNodeGetsNotReadyTaintsAndSwaps(t *testing.T) {
	h := newHarness(t, Options{})
	h.addNode("n1", nil)
	h.addNode("n2", nil)
	h.monitor()
	// The agent reports Ready False (a failed runtime, say): not-ready.
	h.clock.Step(5 * time.Second)
	h.postStatus("n1", corev1.ConditionFalse)
	h.renewLease("n2")
	h.monitor()
	if got, want := taints(h.node("n1")), []string{notReadyNoExecute, notReadyNoSchedule}; !slices.Equal(got, want) {
		t.Fatalf("n1 taints %v, want %v", got, want)
	}
	// Then it goes silent: the taints become unreachable at once.
	for range 5 {
		h.clock.Step(10 * time.Second)
		h.renewLease("n2")
		h.monitor()
	}
	if got, want := taints(h.node("n1")), []string{unreachableNoExecute, unreachableNoSchedule}; !slices.Equal(got, want) {
		t.Fatalf("n1 taints %v, want %v", got, want)
	}
}

func TestNodeThatNeverPostedStatus(t *testing.T) {
	h := newHarness(t, Options{})
	h.addNode("n2", nil)
	h.api.MustCreate(fakeapi.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mute"}})
	h.monitor()
	for range 5 {
		h.clock.Step(10 * time.Second)
		h.renewLease("n2")
		h.monitor()
	}
	if got := condition(h.node("mute"), corev1.NodeReady); got.Status != "" {
		t.Fatalf("Ready set within the startup grace period: %+v", got)
	}
	h.clock.Step(11 * time.Second)
	h.renewLease("n2")
	h.monitor()
	got := condition(h.node("mute"), corev1.NodeReady)
	if got.Status != corev1.ConditionUnknown || got.Reason != "NodeStatusNeverUpdated" || got.Message != "Kubelet never posted node status." {
		t.Fatalf("Ready %+v, want Unknown NodeStatusNeverUpdated", got)
	}
	if !slices.Contains(taints(h.node("mute")), unreachableNoExecute) {
		t.Errorf("taints %v, want unreachable", taints(h.node("mute")))
	}
}

func TestNoScheduleTaintsFollowConditionsAndCordon(t *testing.T) {
	h := newHarness(t, Options{})
	h.addNode("n1", nil)
	h.updateNode("n1", func(n *corev1.Node) {
		n.Spec.Unschedulable = true
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	})
	h.monitor()
	if got, want := taints(h.node("n1")), []string{"dedicated:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"}; !slices.Equal(got, want) {
		t.Fatalf("cordoned node taints %v, want %v", got, want)
	}

	node := h.node("n1")
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeMemoryPressure || node.Status.Conditions[i].Type == corev1.NodePIDPressure {
			node.Status.Conditions[i].Status = corev1.ConditionTrue
		}
	}
	if _, err := h.api.Update(h.ctx, fakeapi.Nodes, node, "status", "test"); err != nil {
		t.Fatal(err)
	}
	h.updateNode("n1", func(n *corev1.Node) { n.Spec.Unschedulable = false })
	h.monitor()
	want := []string{"dedicated:NoSchedule", "node.kubernetes.io/memory-pressure:NoSchedule", "node.kubernetes.io/pid-pressure:NoSchedule"}
	if got := taints(h.node("n1")); !slices.Equal(got, want) {
		t.Fatalf("taints %v, want %v", got, want)
	}

	h.postStatus("n1", corev1.ConditionTrue)
	h.monitor()
	if got := taints(h.node("n1")); !slices.Equal(got, []string{"dedicated:NoSchedule"}) {
		t.Fatalf("taints %v, want only the user's", got)
	}
}

func TestWantedNoScheduleTaints(t *testing.T) {
	cases := []struct {
		name          string
		conditions    map[corev1.NodeConditionType]corev1.ConditionStatus
		unschedulable bool
		want          []string
	}{
		{"healthy", map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeReady: corev1.ConditionTrue, corev1.NodeDiskPressure: corev1.ConditionFalse}, false, nil},
		{"not ready", map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeReady: corev1.ConditionFalse}, false, []string{notReadyNoSchedule}},
		{"unknown", map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeReady: corev1.ConditionUnknown}, false, []string{unreachableNoSchedule}},
		{"disk pressure", map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeDiskPressure: corev1.ConditionTrue}, false, []string{"node.kubernetes.io/disk-pressure:NoSchedule"}},
		{"network unavailable", map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeNetworkUnavailable: corev1.ConditionTrue}, false, []string{"node.kubernetes.io/network-unavailable:NoSchedule"}},
		{"memory pressure unknown", map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeMemoryPressure: corev1.ConditionUnknown}, false, nil},
		{"cordoned", nil, true, []string{"node.kubernetes.io/unschedulable:NoSchedule"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{Spec: corev1.NodeSpec{Unschedulable: tc.unschedulable}}
			for ct, s := range tc.conditions {
				node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{Type: ct, Status: s})
			}
			got := taints(&corev1.Node{Spec: corev1.NodeSpec{Taints: wantedNoScheduleTaints(node)}})
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// silence lets the named nodes miss their heartbeats until they are
// Unknown, while the others keep renewing.
func (h *harness) silence(all []string, silent ...string) {
	h.t.Helper()
	for range 5 {
		h.clock.Step(10 * time.Second)
		for _, n := range all {
			if !slices.Contains(silent, n) {
				h.renewLease(n)
			}
		}
		h.monitor()
	}
}

func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func (h *harness) tainted(nodes []string) []string {
	var out []string
	for _, n := range nodes {
		if slices.Contains(taints(h.node(n)), unreachableNoExecute) {
			out = append(out, n)
		}
	}
	return out
}

func TestEvictionRateLimitPerZone(t *testing.T) {
	h := newHarness(t, Options{})
	nodes := names("n", 6)
	for _, n := range nodes {
		h.addNode(n, nil)
	}
	h.monitor()
	// Two of six: the zone stays Normal (not more than two), one node
	// per 10 s.
	h.clock.Step(10 * time.Second)
	for _, n := range nodes[2:] {
		h.renewLease(n)
	}
	h.monitor()
	for range 4 {
		h.clock.Step(9 * time.Second)
		for _, n := range nodes[2:] {
			h.renewLease(n)
		}
		h.monitor()
	}
	// 46 s: both Unknown since 41 s; one token was there, the next comes
	// 10 s after the first taint.
	if got := h.tainted(nodes); len(got) != 1 {
		t.Fatalf("tainted %v, want one node (rate 0.1/s)", got)
	}
	for _, n := range nodes[:2] {
		if got := condition(h.node(n), corev1.NodeReady).Status; got != corev1.ConditionUnknown {
			t.Errorf("%s Ready %s, want Unknown", n, got)
		}
	}
	h.clock.Step(10 * time.Second)
	h.c.doNoExecuteTaintingPass(h.ctx)
	h.waitCache()
	if got := h.tainted(nodes); len(got) != 2 {
		t.Fatalf("tainted %v 10 s later, want both", got)
	}
}

func TestZoneDisruptionStopsEvictions(t *testing.T) {
	cases := []struct {
		name        string
		zones       map[string]int // zone -> nodes
		silent      []string
		wantTainted int
	}{
		// 3 of 4 not ready in a small cluster: partial disruption, stop.
		{"partial disruption", map[string]int{"a": 4}, []string{"a0", "a1", "a2"}, 0},
		// Every node silent: the controller's own network is suspect.
		{"all nodes", map[string]int{"a": 2}, []string{"a0", "a1"}, 0},
		// A whole zone gone while another is healthy: evict at the
		// normal rate (one token, so one node at once).
		{"one zone fully down", map[string]int{"a": 2, "b": 2}, []string{"a0", "a1"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			var all []string
			for z, n := range tc.zones {
				for _, name := range names(z, n) {
					h.addNode(name, map[string]string{corev1.LabelTopologyZone: z})
					all = append(all, name)
				}
			}
			h.monitor()
			h.silence(all, tc.silent...)
			for _, n := range tc.silent {
				if got := condition(h.node(n), corev1.NodeReady).Status; got != corev1.ConditionUnknown {
					t.Errorf("%s Ready %s, want Unknown", n, got)
				}
			}
			if got := h.tainted(all); len(got) != tc.wantTainted {
				t.Errorf("tainted %v, want %d node(s)", got, tc.wantTainted)
			}
		})
	}
}

func TestEnteringFullDisruptionLiftsTaints(t *testing.T) {
	h := newHarness(t, Options{})
	all := []string{"n0", "n1"}
	for _, n := range all {
		h.addNode(n, nil)
	}
	h.monitor()
	h.silence(all, "n0")
	if got := h.tainted(all); !slices.Equal(got, []string{"n0"}) {
		t.Fatalf("tainted %v, want n0", got)
	}
	// n1 goes silent too: every node down, taints lifted.
	h.silence(all, all...)
	if got := h.tainted(all); len(got) != 0 {
		t.Fatalf("tainted %v in full disruption, want none", got)
	}
	// n1 comes back: n0 is tainted again.
	h.clock.Step(time.Second)
	h.renewLease("n1")
	h.postStatus("n1", corev1.ConditionTrue)
	h.monitor()
	h.monitor()
	if got := h.tainted(all); !slices.Equal(got, []string{"n0"}) {
		t.Fatalf("tainted %v after leaving disruption, want n0", got)
	}
}

func TestRemovedNode(t *testing.T) {
	h := newHarness(t, Options{})
	h.addNode("n1", nil)
	h.monitor()
	if _, err := h.api.Delete(h.ctx, fakeapi.Nodes, "", "n1", nil); err != nil {
		t.Fatal(err)
	}
	h.monitor()
	if !h.rec.Has("Node n1 Normal RemovingNode: Node n1 event: Removing Node n1 from Controller") {
		t.Errorf("no RemovingNode event: %q", h.rec.Events())
	}
	if h.c.getHealth("n1") != nil {
		t.Error("health of a removed node kept")
	}
}

func TestRun(t *testing.T) {
	h := newHarness(t, Options{GracePeriod: 20 * time.Second, MonitorPeriod: 2 * time.Second})
	h.addNode("n1", nil)
	h.addNode("n2", nil)
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Time moves on while n2 keeps renewing its lease and n1 does not.
	if !controllertest.WaitUntil(10*time.Second, func() bool {
		h.clock.Step(time.Second)
		h.renewLease("n2")
		return slices.Contains(taints(h.node("n1")), unreachableNoExecute)
	}) {
		t.Fatalf("n1 not tainted; taints %v, Ready %+v", taints(h.node("n1")), condition(h.node("n1"), corev1.NodeReady))
	}
	if !controllertest.WaitUntil(10*time.Second, func() bool { return slices.Contains(taints(h.node("n1")), unreachableNoSchedule) }) {
		t.Fatalf("n1 has no NoSchedule taint: %v", taints(h.node("n1")))
	}
}
