package scheduler

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestScores(t *testing.T) {
	zone := func(z string) nodeOpt { return withLabels(labelZone, z) }
	preferred := func(weight int32, key, value string) podOpt {
		return func(p *corev1.Pod) {
			if p.Spec.Affinity == nil {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
			}
			p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(
				p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
				corev1.PreferredSchedulingTerm{Weight: weight, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
					{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{value}},
				}}})
		}
	}
	tests := []struct {
		name     string
		nodes    []*corev1.Node
		existing []*corev1.Pod
		pod      *corev1.Pod
		score    func(s *podState, nodes []*nodeInfo) []int64
		want     []int64
	}{
		{
			name:     "least allocated",
			nodes:    []*corev1.Node{makeNode("n1", "4", "8Gi"), makeNode("n2", "4", "8Gi")},
			existing: []*corev1.Pod{makePod("e", "2", "4Gi", onNode("n1"))},
			pod:      makePod("p", "1", "2Gi"),
			score:    perNode((*podState).leastAllocated),
			want:     []int64{25, 75},
		},
		{
			name:  "least allocated counts request-less pods as 0.1 core and 200Mi",
			nodes: []*corev1.Node{makeNode("n1", "1", "1000Mi")},
			pod:   makePod("p", "", ""),
			score: perNode((*podState).leastAllocated),
			want:  []int64{(90 + 80) / 2},
		},
		{
			name:     "balanced allocation",
			nodes:    []*corev1.Node{makeNode("n1", "4", "8Gi"), makeNode("n2", "4", "8Gi")},
			existing: []*corev1.Pod{makePod("e", "2", "4Gi", onNode("n1")), makePod("f", "2", "", onNode("n2"))},
			pod:      makePod("p", "1", "2Gi"),
			score:    perNode((*podState).balancedAllocation),
			want:     []int64{100, 75},
		},
		{
			name:  "preferred node affinity, normalized",
			nodes: []*corev1.Node{makeNode("n1", "4", "8Gi", withLabels("disk", "ssd", "gpu", "yes")), makeNode("n2", "4", "8Gi", withLabels("disk", "ssd")), makeNode("n3", "4", "8Gi")},
			pod:   makePod("p", "", "", preferred(30, "disk", "ssd"), preferred(10, "gpu", "yes")),
			score: normalized(func(s *podState, n *nodeInfo) int64 {
				return preferredNodeAffinity(s.pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution, n.node)
			}, false),
			want: []int64{100, 75, 0},
		},
		{
			name: "PreferNoSchedule taints, reversed",
			nodes: []*corev1.Node{
				makeNode("n1", "4", "8Gi", withTaint("a", "", corev1.TaintEffectPreferNoSchedule), withTaint("b", "", corev1.TaintEffectPreferNoSchedule)),
				makeNode("n2", "4", "8Gi", withTaint("a", "", corev1.TaintEffectPreferNoSchedule)),
				makeNode("n3", "4", "8Gi", withTaint("b", "", corev1.TaintEffectPreferNoSchedule)),
			},
			pod:   makePod("p", "", "", tolerate("b", "", corev1.TaintEffectPreferNoSchedule)),
			score: normalized((*podState).intolerablePreferNoSchedule, true),
			want:  []int64{0, 0, 100},
		},
		{
			name:  "no PreferNoSchedule taints anywhere",
			nodes: []*corev1.Node{makeNode("n1", "4", "8Gi"), makeNode("n2", "4", "8Gi")},
			pod:   makePod("p", "", ""),
			score: normalized((*podState).intolerablePreferNoSchedule, true),
			want:  []int64{100, 100},
		},
		{
			name:  "spread across nodes",
			nodes: []*corev1.Node{makeNode("n1", "4", "8Gi"), makeNode("n2", "4", "8Gi"), makeNode("n3", "4", "8Gi")},
			existing: []*corev1.Pod{
				makePod("a", "", "", onNode("n1"), ownedBy("rs1")), makePod("b", "", "", onNode("n1"), ownedBy("rs1")),
				makePod("c", "", "", onNode("n2"), ownedBy("rs1")), makePod("d", "", "", onNode("n3"), ownedBy("rs2")),
			},
			pod:   makePod("p", "", "", ownedBy("rs1")),
			score: spread,
			want:  []int64{0, 50, 100},
		},
		{
			name:  "spread across zones",
			nodes: []*corev1.Node{makeNode("n1", "4", "8Gi", zone("a")), makeNode("n2", "4", "8Gi", zone("a")), makeNode("n3", "4", "8Gi", zone("b"))},
			existing: []*corev1.Pod{
				makePod("a", "", "", onNode("n1"), ownedBy("rs1")), makePod("b", "", "", onNode("n3"), ownedBy("rs1")), makePod("c", "", "", onNode("n3"), ownedBy("rs1")),
			},
			pod:   makePod("p", "", "", ownedBy("rs1")),
			score: spread,
			// n1: node 50/3 + zone(1 of 2) 50*2/3; n2: 100/3 + 50*2/3; n3: 0 + 0.
			want: []int64{50, 66, 0},
		},
		{
			name:  "no controller: spreading is neutral",
			nodes: []*corev1.Node{makeNode("n1", "4", "8Gi"), makeNode("n2", "4", "8Gi")},
			pod:   makePod("p", "", ""),
			score: spread,
			want:  []int64{100, 100},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheWith(tc.nodes, tc.existing)
			st, _ := preFilter(c, tc.pod, mapLookups{})
			got := tc.score(st, c.nodeListLocked())
			if !slices.Equal(got, tc.want) {
				t.Errorf("scores = %v, want %v", got, tc.want)
			}
		})
	}
}

func perNode(f func(*podState, *nodeInfo) int64) func(*podState, []*nodeInfo) []int64 {
	return func(s *podState, nodes []*nodeInfo) []int64 {
		out := make([]int64, len(nodes))
		for i, n := range nodes {
			out[i] = f(s, n)
		}
		return out
	}
}

func normalized(f func(*podState, *nodeInfo) int64, reverse bool) func(*podState, []*nodeInfo) []int64 {
	return func(s *podState, nodes []*nodeInfo) []int64 {
		raw := perNode(f)(s, nodes)
		out := make([]int64, len(nodes))
		addNormalized(out, raw, 1, reverse)
		return out
	}
}

func spread(s *podState, nodes []*nodeInfo) []int64 {
	out := make([]int64, len(nodes))
	s.addSpread(out, nodes)
	for i := range out {
		out[i] /= weightSpread
	}
	return out
}

func TestScoreTotalPrefersEmptierNode(t *testing.T) {
	c := cacheWith([]*corev1.Node{makeNode("n1", "4", "8Gi"), makeNode("n2", "4", "8Gi")},
		[]*corev1.Pod{makePod("e", "3", "6Gi", onNode("n1"))})
	st, _ := preFilter(c, makePod("p", "500m", "1Gi"), mapLookups{})
	total := st.score(c.nodeListLocked())
	if total[0] >= total[1] {
		t.Errorf("total scores = %v, want the empty n2 ahead", total)
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	tests := []struct{ nodes, percentage, want int }{
		{50, 0, 50},
		{100, 0, 100},
		{1000, 0, 420},
		{5000, 0, 500},
		{200, 0, 100},
		{1000, 10, 100},
		{1000, 100, 1000},
	}
	for _, tc := range tests {
		if got := numFeasibleNodesToFind(tc.nodes, tc.percentage); got != tc.want {
			t.Errorf("numFeasibleNodesToFind(%d, %d) = %d, want %d", tc.nodes, tc.percentage, got, tc.want)
		}
	}
}

func TestFailureMessage(t *testing.T) {
	never := corev1.PreemptNever
	tests := []struct {
		name string
		d    diagnosis
		pod  *corev1.Pod
		want string
	}{
		{
			name: "node selector",
			d:    diagnosis{numAllNodes: 3, reasons: map[string]int{reasonNodeAffinity: 3}, unresolvable: 3},
			want: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
		},
		{
			name: "cpu and taint",
			d: diagnosis{numAllNodes: 3, reasons: map[string]int{
				"Insufficient cpu": 1, "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }": 2,
			}, unresolvable: 2},
			want: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "one node, several resources",
			d:    diagnosis{numAllNodes: 1, reasons: map[string]int{"Insufficient cpu": 1, "Insufficient memory": 1}},
			want: "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name: "sorted as strings",
			d:    diagnosis{numAllNodes: 12, reasons: map[string]int{reasonUnschedulable: 2, reasonPorts: 10}, unresolvable: 2},
			want: "0/12 nodes are available: 10 node(s) didn't have free ports for the requested pod ports, 2 node(s) were unschedulable. preemption: 0/12 nodes are available: 10 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "prefilter",
			d:    diagnosis{numAllNodes: 2, preFilterMsg: reasonUnboundImmediatePVC},
			want: "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "preemptionPolicy Never",
			d:    diagnosis{numAllNodes: 1, reasons: map[string]int{"Insufficient memory": 1}},
			pod:  makePod("p", "", "", func(p *corev1.Pod) { p.Spec.PreemptionPolicy = &never }),
			want: "0/1 nodes are available: 1 Insufficient memory. not eligible due to preemptionPolicy=Never.",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod
			if pod == nil {
				pod = makePod("p", "", "")
			}
			if got := tc.d.message(pod); got != tc.want {
				t.Errorf("message:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestDiagnosisFromFilters runs the filters over a small cluster and checks
// the whole message, as kube-scheduler would word it.
func TestDiagnosisFromFilters(t *testing.T) {
	nodes := []*corev1.Node{
		makeNode("cp", "4", "8Gi", withTaint("node-role.kubernetes.io/control-plane", "", corev1.TaintEffectNoSchedule)),
		makeNode("w1", "1", "8Gi"),
		makeNode("w2", "1", "8Gi"),
	}
	c := cacheWith(nodes, []*corev1.Pod{makePod("e", "500m", "", onNode("w1"))})
	st, _ := preFilter(c, makePod("p", "800m", "1Gi"), mapLookups{})
	s := &Scheduler{}
	d := &diagnosis{numAllNodes: len(nodes)}
	if n := s.selectNode(st, c.nodeListLocked(), d); n == nil || n.name != "w2" {
		t.Fatalf("selectNode = %v, want w2", n)
	}
	st, _ = preFilter(c, makePod("q", "1500m", "1Gi"), mapLookups{})
	d = &diagnosis{numAllNodes: len(nodes)}
	if n := s.selectNode(st, c.nodeListLocked(), d); n != nil {
		t.Fatalf("selectNode = %s, want none", n.name)
	}
	want := "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	if got := d.message(st.pod); got != want {
		t.Errorf("message:\n got %s\nwant %s", got, want)
	}
}
