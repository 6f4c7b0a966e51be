package daemonset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/history"
	"github.com/orch-dev/orch/server/controllers/history/historytest"
	"github.com/orch-dev/orch/server/controllers/informer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	t        *testing.T
	api      *fakeapi.API
	kubelet  *historytest.Kubelet
	recorder *controllertest.Recorder
}

// start runs the controller, its informers and a simulated kubelet until
// the test ends.
func start(t *testing.T, nodes ...string) *env {
	t.Helper()
	api := fakeapi.New(historytest.Resources()...)
	for _, n := range nodes {
		addNode(api, n, nil)
	}
	e := &env{t: t, api: api, kubelet: &historytest.Kubelet{API: api}, recorder: &controllertest.Recorder{}}
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, e.recorder, Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { _ = factory.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	go func() { e.kubelet.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
	})
	return e
}

func addNode(api *fakeapi.API, name string, lbls map[string]string, taints ...corev1.Taint) {
	api.MustCreate(fakeapi.Nodes, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec:       corev1.NodeSpec{Taints: taints},
	})
}

func daemonSet(name string) *appsv1.DaemonSet {
	lbls := map[string]string{"app": name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Generation: 1},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1"}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(1)), MaxSurge: ptr(intstr.FromInt32(0))},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	if !controllertest.WaitUntil(10*time.Second, cond) {
		var revs []string
		for _, r := range e.revisions() {
			revs = append(revs, fmt.Sprintf("%s=%d", r.Name, r.Revision))
		}
		e.t.Fatalf("timed out waiting for %s; revisions %v; pods: %s", what, revs, e.describePods())
	}
}

func (e *env) pods() []*corev1.Pod {
	objs, _, err := e.api.List(context.Background(), fakeapi.Pods, "default", metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*corev1.Pod
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func (e *env) describePods() string {
	var b strings.Builder
	for _, p := range e.pods() {
		fmt.Fprintf(&b, "\n  %s node=%s hash=%s phase=%s ready=%v deleting=%v", p.Name, p.Spec.NodeName, p.Labels[revisionHashLabel], p.Status.Phase, podReady(p), p.DeletionTimestamp != nil)
	}
	return b.String()
}

// podNodes maps node name to the hash labels of its live pods.
func (e *env) podNodes() map[string][]string {
	out := map[string][]string{}
	for _, p := range e.pods() {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Labels[revisionHashLabel])
		}
	}
	return out
}

func (e *env) ds(name string) *appsv1.DaemonSet {
	obj, err := e.api.Get(context.Background(), historytest.DaemonSets, "default", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return obj.(*appsv1.DaemonSet)
}

func (e *env) update(ds *appsv1.DaemonSet, mutate func(*appsv1.DaemonSet)) {
	e.t.Helper()
	historytest.Update(e.t, e.api, historytest.DaemonSets, func() *appsv1.DaemonSet { return e.ds(ds.Name) }, mutate)
}

func (e *env) revisions() []*appsv1.ControllerRevision {
	e.t.Helper()
	return historytest.Revisions(e.t, e.api, "default")
}

func (e *env) statusIs(name string, want appsv1.DaemonSetStatus) func() bool {
	return func() bool {
		st := e.ds(name).Status
		st.CollisionCount, st.Conditions = nil, nil
		return apiequality.Semantic.DeepEqual(st, want)
	}
}

func allOnNodes(got map[string][]string, hash string, nodes ...string) bool {
	if len(got) != len(nodes) {
		return false
	}
	for _, n := range nodes {
		if h := got[n]; len(h) != 1 || (hash != "" && h[0] != hash) {
			return false
		}
	}
	return true
}

func TestOnePodPerNodeAndNewNodes(t *testing.T) {
	e := start(t, "node-1", "node-2", "node-3")
	e.api.MustCreate(historytest.DaemonSets, daemonSet("agent"))

	e.waitFor("a pod on each node", func() bool { return allOnNodes(e.podNodes(), "", "node-1", "node-2", "node-3") })
	e.waitFor("exact status", e.statusIs("agent", appsv1.DaemonSetStatus{
		ObservedGeneration: 1, DesiredNumberScheduled: 3, CurrentNumberScheduled: 3,
		NumberReady: 3, NumberAvailable: 3, UpdatedNumberScheduled: 3,
	}))
	pod := e.pods()[0]
	if ref := metav1.GetControllerOf(pod); ref == nil || ref.Kind != "DaemonSet" || ref.Name != "agent" {
		t.Fatalf("pod controller %+v", ref)
	}
	if !strings.HasPrefix(pod.Name, "agent-") || len(pod.Name) != len("agent-")+5 {
		t.Errorf("pod name %q, want agent-xxxxx", pod.Name)
	}
	want := []corev1.Toleration{
		{Key: taintNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: taintUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: taintDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: taintMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: taintPIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: taintUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	if !slices.Equal(pod.Spec.Tolerations, want) {
		t.Errorf("tolerations %+v, want %+v", pod.Spec.Tolerations, want)
	}
	terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || terms[0].MatchFields[0].Values[0] != pod.Spec.NodeName {
		t.Errorf("node affinity %+v, want matchFields metadata.name=%s", terms, pod.Spec.NodeName)
	}
	revs := e.revisions()
	if len(revs) != 1 || revs[0].Revision != 1 || pod.Labels[revisionHashLabel] != revs[0].Labels[revisionHashLabel] || revs[0].Name != "agent-"+revs[0].Labels[revisionHashLabel] {
		t.Fatalf("revisions %+v; pod hash %s", revs, pod.Labels[revisionHashLabel])
	}

	addNode(e.api, "node-4", nil)
	e.waitFor("a pod on the new node", func() bool { return allOnNodes(e.podNodes(), "", "node-1", "node-2", "node-3", "node-4") })
	e.waitFor("status of 4", e.statusIs("agent", appsv1.DaemonSetStatus{
		ObservedGeneration: 1, DesiredNumberScheduled: 4, CurrentNumberScheduled: 4,
		NumberReady: 4, NumberAvailable: 4, UpdatedNumberScheduled: 4,
	}))
	created := 0
	for _, ev := range e.recorder.Events() {
		if strings.HasPrefix(ev, "Normal SuccessfulCreate Created pod: agent-") {
			created++
		}
	}
	if created != 4 {
		t.Errorf("%d SuccessfulCreate events, want 4: %q", created, e.recorder.Events())
	}

	// A node deleted: its pod goes.
	if _, err := e.api.Delete(context.Background(), fakeapi.Nodes, "", "node-4", nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the pod of the deleted node gone", func() bool { return allOnNodes(e.podNodes(), "", "node-1", "node-2", "node-3") })
}

func TestSelectorsAndTaints(t *testing.T) {
	e := start(t)
	addNode(e.api, "edge-1", map[string]string{"role": "edge"})
	addNode(e.api, "edge-2", map[string]string{"role": "edge"}, corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule})
	addNode(e.api, "core-1", map[string]string{"role": "core"})
	addNode(e.api, "edge-3", map[string]string{"role": "edge"}, corev1.Taint{Key: taintUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	ds := daemonSet("edge")
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"role": "edge"}
	e.api.MustCreate(historytest.DaemonSets, ds)

	e.waitFor("pods on untainted edge nodes and cordoned ones", func() bool { return allOnNodes(e.podNodes(), "", "edge-1", "edge-3") })
	e.waitFor("status", e.statusIs("edge", appsv1.DaemonSetStatus{
		ObservedGeneration: 1, DesiredNumberScheduled: 2, CurrentNumberScheduled: 2,
		NumberReady: 2, NumberAvailable: 2, UpdatedNumberScheduled: 2,
	}))

	// A node relabelled out of the selector loses its pod.
	obj, _ := e.api.Get(context.Background(), fakeapi.Nodes, "", "edge-1")
	node := obj.(*corev1.Node)
	node.Labels["role"] = "core"
	if _, err := e.api.Update(context.Background(), fakeapi.Nodes, node, "", "test"); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the pod of the relabelled node deleted", func() bool { return allOnNodes(e.podNodes(), "", "edge-3") })
	e.waitFor("status", e.statusIs("edge", appsv1.DaemonSetStatus{
		ObservedGeneration: 1, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
		NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1,
	}))
	if !slices.ContainsFunc(e.recorder.Events(), func(s string) bool { return strings.HasPrefix(s, "Normal SuccessfulDelete Deleted pod: edge-") }) {
		t.Errorf("no SuccessfulDelete event: %q", e.recorder.Events())
	}
}

func TestNodeShouldRunDaemonPod(t *testing.T) {
	taint := func(key string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Value: "v", Effect: effect}
	}
	tests := []struct {
		name                     string
		node                     corev1.Node
		mutate                   func(*corev1.PodSpec)
		shouldRun, shouldContinu bool
	}{
		{name: "plain node", shouldRun: true, shouldContinu: true},
		{
			name: "node selector mismatch", mutate: func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"disk": "ssd"} },
		},
		{
			name:   "node selector match",
			node:   corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"disk": "ssd"}}},
			mutate: func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"disk": "ssd"} }, shouldRun: true, shouldContinu: true,
		},
		{
			name: "required affinity NotIn excludes",
			node: corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"zone": "a"}}},
			mutate: func(s *corev1.PodSpec) {
				s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"a"}}}}},
				}}}
			},
		},
		{
			name: "required affinity Gt",
			node: corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"cores": "8"}}},
			mutate: func(s *corev1.PodSpec) {
				s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "cores", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}}}},
				}}}
			},
			shouldRun: true, shouldContinu: true,
		},
		{
			name: "untolerated NoSchedule keeps running pods",
			node: corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("dedicated", corev1.TaintEffectNoSchedule)}}}, shouldContinu: true,
		},
		{
			name: "untolerated NoExecute", node: corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("dedicated", corev1.TaintEffectNoExecute)}}},
		},
		{
			name: "PreferNoSchedule is ignored", node: corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("dedicated", corev1.TaintEffectPreferNoSchedule)}}},
			shouldRun: true, shouldContinu: true,
		},
		{
			name: "tolerated by the template",
			node: corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("dedicated", corev1.TaintEffectNoExecute)}}},
			mutate: func(s *corev1.PodSpec) {
				s.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "v"}}
			},
			shouldRun: true, shouldContinu: true,
		},
		{
			name: "default tolerations: not-ready, unreachable, pressure, unschedulable",
			node: corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{
				taint(taintNotReady, corev1.TaintEffectNoExecute), taint(taintUnreachable, corev1.TaintEffectNoExecute),
				taint(taintDiskPressure, corev1.TaintEffectNoSchedule), taint(taintMemoryPressure, corev1.TaintEffectNoSchedule),
				taint(taintPIDPressure, corev1.TaintEffectNoSchedule), taint(taintUnschedulable, corev1.TaintEffectNoSchedule),
			}}},
			shouldRun: true, shouldContinu: true,
		},
		{
			name: "network-unavailable without host network",
			node: corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint(taintNetworkUnavailable, corev1.TaintEffectNoSchedule)}}}, shouldContinu: true,
		},
		{
			name:   "network-unavailable with host network",
			node:   corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint(taintNetworkUnavailable, corev1.TaintEffectNoSchedule)}}},
			mutate: func(s *corev1.PodSpec) { s.HostNetwork = true }, shouldRun: true, shouldContinu: true,
		},
		{
			name: "template pinned to another node", mutate: func(s *corev1.PodSpec) { s.NodeName = "elsewhere" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := daemonSet("ds")
			if tt.mutate != nil {
				tt.mutate(&ds.Spec.Template.Spec)
			}
			node := tt.node.DeepCopy()
			node.Name = "n"
			run, cont := nodeShouldRunDaemonPod(node, ds)
			if run != tt.shouldRun || cont != tt.shouldContinu {
				t.Errorf("shouldRun, shouldContinueRunning = %v, %v; want %v, %v", run, cont, tt.shouldRun, tt.shouldContinu)
			}
		})
	}
}

func hashes(e *env) (string, string) {
	revs := e.revisions()
	if len(revs) < 2 {
		return "", ""
	}
	return revs[len(revs)-2].Labels[revisionHashLabel], revs[len(revs)-1].Labels[revisionHashLabel]
}

func TestRollingUpdateMaxUnavailableAndRollback(t *testing.T) {
	e := start(t, "node-1", "node-2", "node-3", "node-4")
	e.api.MustCreate(historytest.DaemonSets, daemonSet("agent"))
	e.waitFor("pods on all nodes", func() bool { return allOnNodes(e.podNodes(), "", "node-1", "node-2", "node-3", "node-4") })
	e.waitFor("all available", func() bool { return e.ds("agent").Status.NumberAvailable == 4 })
	oldHash := e.revisions()[0].Labels[revisionHashLabel]

	// New pods stay not ready: exactly maxUnavailable (1) node is replaced.
	e.kubelet.HoldNotReady(func(p *corev1.Pod) bool { return p.Labels[revisionHashLabel] != oldHash })
	e.update(daemonSet("agent"), func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "busybox:2" })
	e.waitFor("two revisions", func() bool { return len(e.revisions()) == 2 })
	_, newHash := hashes(e)
	e.waitFor("one node updated", func() bool {
		n := 0
		for _, h := range e.podNodes() {
			if len(h) == 1 && h[0] == newHash {
				n++
			}
		}
		return n == 1 && len(e.podNodes()) == 4
	})
	time.Sleep(100 * time.Millisecond)
	updated := 0
	for _, h := range e.podNodes() {
		if slices.Contains(h, newHash) {
			updated++
		}
	}
	if updated != 1 {
		t.Fatalf("%d nodes updated while the first new pod is not ready, want 1: %s", updated, e.describePods())
	}
	st := e.ds("agent").Status
	if st.UpdatedNumberScheduled != 1 || st.NumberAvailable != 3 || st.NumberUnavailable != 1 || st.ObservedGeneration != 2 {
		t.Fatalf("status during the update %+v", st)
	}

	e.kubelet.HoldNotReady(nil)
	e.waitFor("all nodes updated", func() bool { return allOnNodes(e.podNodes(), newHash, "node-1", "node-2", "node-3", "node-4") })
	e.waitFor("status after the update", e.statusIs("agent", appsv1.DaemonSetStatus{
		ObservedGeneration: 2, DesiredNumberScheduled: 4, CurrentNumberScheduled: 4,
		NumberReady: 4, NumberAvailable: 4, UpdatedNumberScheduled: 4,
	}))

	// Rollback: the old template again reuses revision 1 as revision 3.
	e.update(daemonSet("agent"), func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "busybox:1" })
	e.waitFor("old revision renumbered", func() bool {
		revs := e.revisions()
		return len(revs) == 2 && revs[1].Labels[revisionHashLabel] == oldHash && revs[1].Revision == 3 && revs[0].Revision == 2
	})
	e.waitFor("all nodes back on the old revision", func() bool { return allOnNodes(e.podNodes(), oldHash, "node-1", "node-2", "node-3", "node-4") })
	tmpl, err := history.TemplateOf(e.revisions()[1])
	if err != nil || tmpl.Spec.Containers[0].Image != "busybox:1" {
		t.Fatalf("revision template %+v, %v", tmpl, err)
	}
}

func TestRollingUpdateWithSurge(t *testing.T) {
	e := start(t, "node-1", "node-2", "node-3")
	ds := daemonSet("agent")
	ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromInt32(1))}
	e.api.MustCreate(historytest.DaemonSets, ds)
	e.waitFor("all available", func() bool { return e.ds("agent").Status.NumberAvailable == 3 })
	oldHash := e.revisions()[0].Labels[revisionHashLabel]

	e.kubelet.HoldNotReady(func(p *corev1.Pod) bool { return p.Labels[revisionHashLabel] != oldHash })
	e.update(ds, func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "busybox:2" })
	e.waitFor("a surge pod next to an old one", func() bool {
		for _, h := range e.podNodes() {
			if len(h) == 2 {
				return true
			}
		}
		return false
	})
	time.Sleep(100 * time.Millisecond)
	surged := 0
	for _, h := range e.podNodes() {
		if len(h) == 2 {
			surged++
		} else if len(h) != 1 || h[0] != oldHash {
			t.Fatalf("unexpected pods during surge: %s", e.describePods())
		}
	}
	if surged != 1 {
		t.Fatalf("%d nodes with a surge pod, want 1: %s", surged, e.describePods())
	}

	e.kubelet.HoldNotReady(nil)
	_, newHash := hashes(e)
	e.waitFor("all nodes updated", func() bool { return allOnNodes(e.podNodes(), newHash, "node-1", "node-2", "node-3") })
}

func TestOnDeleteAndFailedPods(t *testing.T) {
	e := start(t, "node-1", "node-2")
	ds := daemonSet("agent")
	ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	e.api.MustCreate(historytest.DaemonSets, ds)
	e.waitFor("all available", func() bool { return e.ds("agent").Status.NumberAvailable == 2 })
	oldHash := e.revisions()[0].Labels[revisionHashLabel]

	e.update(ds, func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "busybox:2" })
	e.waitFor("observed", func() bool { return e.ds("agent").Status.ObservedGeneration == 2 })
	time.Sleep(50 * time.Millisecond)
	if !allOnNodes(e.podNodes(), oldHash, "node-1", "node-2") {
		t.Fatalf("OnDelete replaced pods by itself: %s", e.describePods())
	}
	_, newHash := hashes(e)

	// A deleted pod comes back at the new revision.
	var victim *corev1.Pod
	for _, p := range e.pods() {
		if p.Spec.NodeName == "node-1" {
			victim = p
		}
	}
	if _, err := e.api.Delete(context.Background(), fakeapi.Pods, "default", victim.Name, nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("node-1 on the new revision", func() bool {
		n := e.podNodes()
		return len(n["node-1"]) == 1 && n["node-1"][0] == newHash && len(n["node-2"]) == 1 && n["node-2"][0] == oldHash
	})
	e.waitFor("updated count", func() bool { return e.ds("agent").Status.UpdatedNumberScheduled == 1 })

	// A failed pod is replaced.
	for _, p := range e.pods() {
		if p.Spec.NodeName == "node-2" {
			victim = p
		}
	}
	e.kubelet.Fail("default", victim.Name)
	e.waitFor("failed pod replaced", func() bool {
		n := e.podNodes()
		return !slices.ContainsFunc(e.pods(), func(p *corev1.Pod) bool { return p.Name == victim.Name }) && len(n["node-2"]) == 1
	})
	if !slices.ContainsFunc(e.recorder.Events(), func(s string) bool {
		return strings.HasPrefix(s, "Warning FailedDaemonPod Found failed daemon pod default/"+victim.Name)
	}) {
		t.Errorf("no FailedDaemonPod event: %q", e.recorder.Events())
	}
}

func TestHistoryTruncatedToLimit(t *testing.T) {
	e := start(t, "node-1")
	ds := daemonSet("agent")
	ds.Spec.RevisionHistoryLimit = ptr(int32(1))
	e.api.MustCreate(historytest.DaemonSets, ds)
	e.waitFor("first revision", func() bool { return len(e.revisions()) == 1 })
	for i := 2; i <= 4; i++ {
		e.update(ds, func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = fmt.Sprintf("busybox:%d", i) })
		e.waitFor("pod updated", func() bool {
			revs := e.revisions()
			return len(revs) > 0 && revs[len(revs)-1].Revision == int64(i) && allOnNodes(e.podNodes(), revs[len(revs)-1].Labels[revisionHashLabel], "node-1")
		})
	}
	e.waitFor("history truncated to current + 1", func() bool {
		revs := e.revisions()
		return len(revs) == 2 && revs[0].Revision == 3 && revs[1].Revision == 4
	})
}
