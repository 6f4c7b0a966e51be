package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestFilters(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	zoneA := withLabels(labelZone, "a")
	zoneB := withLabels(labelZone, "b")
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	local := "local-path"
	lk := mapLookups{
		namespaces: map[string]labels.Set{"default": {"team": "x"}, "other": {"team": "y"}},
		claims: map[string]*corev1.PersistentVolumeClaim{
			"default/bound":   {ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bound"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-n2"}},
			"default/waiting": {ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "waiting"}, Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &local}},
			"default/pending": {ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pending"}},
		},
		volumes: map[string]*corev1.PersistentVolume{
			"pv-n2": {ObjectMeta: metav1.ObjectMeta{Name: "pv-n2"}, Spec: corev1.PersistentVolumeSpec{NodeAffinity: &corev1.VolumeNodeAffinity{
				Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
					{Key: labelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}},
				}}}},
			}}},
		},
		classes: map[string]*storagev1.StorageClass{local: {ObjectMeta: metav1.ObjectMeta{Name: local}, VolumeBindingMode: &wffc}},
	}

	tests := []struct {
		name     string
		nodes    []*corev1.Node
		existing []*corev1.Pod
		pod      *corev1.Pod
		node     string // node to filter; default n1
		want     string // reasonsOf, "" = fits
		wantPre  string // preFilter message
	}{
		{name: "fits", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, pod: makePod("p", "1", "1Gi")},
		{name: "not ready", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withReady(corev1.ConditionFalse))}, pod: makePod("p", "", ""),
			want: "[node(s) had untolerated taint {node.kubernetes.io/not-ready: }] unresolvable=true"},
		{name: "unknown readiness", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withReady(corev1.ConditionUnknown))}, pod: makePod("p", "", ""),
			want: "[node(s) had untolerated taint {node.kubernetes.io/unreachable: }] unresolvable=true"},
		{name: "not ready tolerated", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withReady(corev1.ConditionFalse))},
			pod: makePod("p", "", "", tolerate(taintNotReady, "", corev1.TaintEffectNoSchedule))},
		{name: "not ready node with its taint", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withReady(corev1.ConditionFalse), withTaint(taintNotReady, "", corev1.TaintEffectNoExecute))},
			pod:  makePod("p", "", "", tolerate(taintNotReady, "", corev1.TaintEffectNoSchedule)),
			want: "[node(s) had untolerated taint {node.kubernetes.io/not-ready: }] unresolvable=true"},
		{name: "cordoned", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", cordoned)}, pod: makePod("p", "", ""),
			want: "[node(s) were unschedulable] unresolvable=true"},
		{name: "cordoned tolerated", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", cordoned)},
			pod: makePod("p", "", "", tolerate(taintUnschedulable, "", ""))},
		{name: "NoSchedule taint", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withTaint("node-role.kubernetes.io/control-plane", "", corev1.TaintEffectNoSchedule))},
			pod: makePod("p", "", ""), want: "[node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }] unresolvable=true"},
		{name: "NoExecute taint with value", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withTaint("dedicated", "gpu", corev1.TaintEffectNoExecute))},
			pod: makePod("p", "", "", tolerate("dedicated", "cpu", corev1.TaintEffectNoExecute)), want: "[node(s) had untolerated taint {dedicated: gpu}] unresolvable=true"},
		{name: "taint tolerated by value", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withTaint("dedicated", "gpu", corev1.TaintEffectNoSchedule))},
			pod: makePod("p", "", "", tolerate("dedicated", "gpu", ""))},
		{name: "PreferNoSchedule does not filter", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withTaint("x", "", corev1.TaintEffectPreferNoSchedule))},
			pod: makePod("p", "", "")},
		{name: "nodeSelector match", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withLabels("disk", "ssd"))}, pod: makePod("p", "", "", nodeSelector("disk", "ssd"))},
		{name: "nodeSelector mismatch", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withLabels("disk", "hdd"))}, pod: makePod("p", "", "", nodeSelector("disk", "ssd")),
			want: "[node(s) didn't match Pod's node affinity/selector] unresolvable=true"},
		{name: "affinity In", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", zoneA)},
			pod: makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: labelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}}}}))},
		{name: "affinity NotIn", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", zoneA)},
			pod:  makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: labelZone, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"a"}}}})),
			want: "[node(s) didn't match Pod's node affinity/selector] unresolvable=true"},
		{name: "affinity terms are ORed", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", zoneA)},
			pod: makePod("p", "", "", requiredNodeAffinity(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "missing", Operator: corev1.NodeSelectorOpExists}}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "missing", Operator: corev1.NodeSelectorOpDoesNotExist}}},
			))},
		{name: "affinity Gt", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withLabels("cores", "8"))},
			pod: makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "cores", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}}}))},
		{name: "affinity Lt fails", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withLabels("cores", "8"))},
			pod:  makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "cores", Operator: corev1.NodeSelectorOpLt, Values: []string{"4"}}}})),
			want: "[node(s) didn't match Pod's node affinity/selector] unresolvable=true"},
		{name: "matchFields metadata.name", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}))},
		{name: "matchFields other node", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod:  makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}})),
			want: "[node(s) didn't match Pod's node affinity/selector] unresolvable=true"},
		{name: "empty term matches nothing", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "", "", requiredNodeAffinity(corev1.NodeSelectorTerm{})), want: "[node(s) didn't match Pod's node affinity/selector] unresolvable=true"},
		{name: "host port free", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, existing: []*corev1.Pod{makePod("e", "", "", onNode("n1"), hostPortOpt(80, ""))},
			pod: makePod("p", "", "", hostPortOpt(8080, ""))},
		{name: "host port conflict", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, existing: []*corev1.Pod{makePod("e", "", "", onNode("n1"), hostPortOpt(80, ""))},
			pod: makePod("p", "", "", hostPortOpt(80, "10.0.0.1")), want: "[node(s) didn't have free ports for the requested pod ports] unresolvable=false"},
		{name: "host port on other ips", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, existing: []*corev1.Pod{makePod("e", "", "", onNode("n1"), hostPortOpt(80, "10.0.0.2"))},
			pod: makePod("p", "", "", hostPortOpt(80, "10.0.0.1"))},
		{name: "insufficient cpu", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, existing: []*corev1.Pod{makePod("e", "1500m", "", onNode("n1"))},
			pod: makePod("p", "1", "1Gi"), want: "[Insufficient cpu] unresolvable=false"},
		{name: "insufficient cpu and memory", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, existing: []*corev1.Pod{makePod("e", "1500m", "3Gi", onNode("n1"))},
			pod: makePod("p", "1", "2Gi"), want: "[Insufficient cpu Insufficient memory] unresolvable=false"},
		{name: "more than the node has", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, pod: makePod("p", "3", ""),
			want: "[Insufficient cpu] unresolvable=true"},
		{name: "too many pods", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", withAllocatable(corev1.ResourcePods, "1"))},
			existing: []*corev1.Pod{makePod("e", "", "", onNode("n1"))}, pod: makePod("p", "", ""), want: "[Too many pods] unresolvable=false"},
		{name: "extended resource missing", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "", "", func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
			}), want: "[Insufficient nvidia.com/gpu] unresolvable=true"},
		{name: "init container max", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "1", "", func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}
			}), want: "[Insufficient cpu] unresolvable=true"},
		{name: "sidecar adds", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "1500m", "", func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "s", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}
			}), want: "[Insufficient cpu] unresolvable=true"},
		{name: "overhead counts", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "1900m", "", func(p *corev1.Pod) {
				p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")}
			}), want: "[Insufficient cpu] unresolvable=true"},
		{name: "assumed pods count", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			existing: []*corev1.Pod{makePod("e", "1", "", onNode("n1")), makePod("f", "1", "", onNode("n1"))},
			pod:      makePod("p", "100m", ""), want: "[Insufficient cpu] unresolvable=false"},
		{name: "bound local volume on this node", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi"), makeNode("n2", "2", "4Gi")}, node: "n2",
			pod: makePod("p", "", "", claimVolume("bound"))},
		{name: "bound local volume elsewhere", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi"), makeNode("n2", "2", "4Gi")},
			pod: makePod("p", "", "", claimVolume("bound")), want: "[node(s) had volume node affinity conflict] unresolvable=true"},
		{name: "wait for first consumer", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, pod: makePod("p", "", "", claimVolume("waiting"))},
		{name: "unbound immediate claim", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, pod: makePod("p", "", "", claimVolume("pending")),
			wantPre: "pod has unbound immediate PersistentVolumeClaims"},
		{name: "missing claim", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")}, pod: makePod("p", "", "", claimVolume("nope")),
			wantPre: `persistentvolumeclaim "nope" not found`},
		{name: "pod affinity same node", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi"), makeNode("n2", "2", "4Gi")},
			existing: []*corev1.Pod{makePod("db", "", "", onNode("n1"), podLabels("app", "db"))},
			pod:      makePod("p", "", "", podAffinity(podAffinityTerm(labelHostname, "app", "db")))},
		{name: "pod affinity other node", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi"), makeNode("n2", "2", "4Gi")}, node: "n2",
			existing: []*corev1.Pod{makePod("db", "", "", onNode("n1"), podLabels("app", "db"))},
			pod:      makePod("p", "", "", podAffinity(podAffinityTerm(labelHostname, "app", "db"))),
			want:     "[node(s) didn't match pod affinity rules] unresolvable=true"},
		{name: "pod affinity same zone", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", zoneA), makeNode("n2", "2", "4Gi", zoneA)}, node: "n2",
			existing: []*corev1.Pod{makePod("db", "", "", onNode("n1"), podLabels("app", "db"))},
			pod:      makePod("p", "", "", podAffinity(podAffinityTerm(labelZone, "app", "db")))},
		{name: "pod affinity other zone", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", zoneA), makeNode("n2", "2", "4Gi", zoneB)}, node: "n2",
			existing: []*corev1.Pod{makePod("db", "", "", onNode("n1"), podLabels("app", "db"))},
			pod:      makePod("p", "", "", podAffinity(podAffinityTerm(labelZone, "app", "db"))),
			want:     "[node(s) didn't match pod affinity rules] unresolvable=true"},
		{name: "pod affinity other namespace does not count", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			existing: []*corev1.Pod{makePod("db", "", "", onNode("n1"), podLabels("app", "db"), func(p *corev1.Pod) { p.Namespace = "other" })},
			pod:      makePod("p", "", "", podAffinity(podAffinityTerm(labelHostname, "app", "db"))),
			want:     "[node(s) didn't match pod affinity rules] unresolvable=true"},
		{name: "pod affinity namespace selector", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			existing: []*corev1.Pod{makePod("db", "", "", onNode("n1"), podLabels("app", "db"), func(p *corev1.Pod) { p.Namespace = "other" })},
			pod: makePod("p", "", "", podAffinity(func() corev1.PodAffinityTerm {
				t := podAffinityTerm(labelHostname, "app", "db")
				t.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y"}}
				return t
			}()))},
		{name: "first pod of a self-affine group", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			pod: makePod("p", "", "", podLabels("app", "web"), podAffinity(podAffinityTerm(labelHostname, "app", "web")))},
		{name: "anti-affinity same node", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			existing: []*corev1.Pod{makePod("w1", "", "", onNode("n1"), podLabels("app", "web"))},
			pod:      makePod("p", "", "", podAntiAffinity(podAffinityTerm(labelHostname, "app", "web"))),
			want:     "[node(s) didn't match pod anti-affinity rules] unresolvable=false"},
		{name: "anti-affinity other node", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi"), makeNode("n2", "2", "4Gi")}, node: "n2",
			existing: []*corev1.Pod{makePod("w1", "", "", onNode("n1"), podLabels("app", "web"))},
			pod:      makePod("p", "", "", podAntiAffinity(podAffinityTerm(labelHostname, "app", "web")))},
		{name: "anti-affinity same zone", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi", zoneA), makeNode("n2", "2", "4Gi", zoneA)}, node: "n2",
			existing: []*corev1.Pod{makePod("w1", "", "", onNode("n1"), podLabels("app", "web"))},
			pod:      makePod("p", "", "", podAntiAffinity(podAffinityTerm(labelZone, "app", "web"))),
			want:     "[node(s) didn't match pod anti-affinity rules] unresolvable=false"},
		{name: "existing pod's anti-affinity", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi")},
			existing: []*corev1.Pod{makePod("w1", "", "", onNode("n1"), podAntiAffinity(podAffinityTerm(labelHostname, "app", "web")))},
			pod:      makePod("p", "", "", podLabels("app", "web")),
			want:     "[node(s) didn't satisfy existing pods anti-affinity rules] unresolvable=false"},
		{name: "existing pod's anti-affinity elsewhere", nodes: []*corev1.Node{makeNode("n1", "2", "4Gi"), makeNode("n2", "2", "4Gi")}, node: "n2",
			existing: []*corev1.Pod{makePod("w1", "", "", onNode("n1"), podAntiAffinity(podAffinityTerm(labelHostname, "app", "web")))},
			pod:      makePod("p", "", "", podLabels("app", "web"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheWith(tc.nodes, tc.existing)
			st, pre := preFilter(c, tc.pod, lk)
			if pre != tc.wantPre {
				t.Fatalf("preFilter message = %q, want %q", pre, tc.wantPre)
			}
			if pre != "" {
				return
			}
			name := tc.node
			if name == "" {
				name = "n1"
			}
			if got := reasonsOf(st.filter(c.nodes[name])); got != tc.want {
				t.Errorf("filter = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	req := func(cpu string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}
	}
	tests := []struct {
		name       string
		pod        *corev1.Pod
		cpu        int64
		nonZeroCPU int64
		nonZeroMem int64
	}{
		{"no requests", makePod("p", "", ""), 0, defaultMilliCPURequest, defaultMemoryRequest},
		{"containers add up", makePod("p", "200m", "1Mi", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "b", Resources: req("300m")})
		}), 500, 500, 1<<20 + defaultMemoryRequest},
		{"init container is a max", makePod("p", "200m", "", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: req("1")}, {Name: "j", Resources: req("300m")}}
		}), 1000, 1000, defaultMemoryRequest},
		{"sidecar before init container", makePod("p", "200m", "", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "s", RestartPolicy: &always, Resources: req("500m")}, {Name: "i", Resources: req("600m")}}
		}), 1100, 1100, 2 * defaultMemoryRequest},
		{"pod-level requests win", makePod("p", "200m", "", func(p *corev1.Pod) {
			p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
		}), 2000, 2000, defaultMemoryRequest},
		{"overhead", makePod("p", "200m", "", func(p *corev1.Pod) {
			p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
		}), 250, 250, defaultMemoryRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, cpu, mem := podRequests(tc.pod)
			if r.milliCPU != tc.cpu || cpu != tc.nonZeroCPU || mem != tc.nonZeroMem {
				t.Errorf("podRequests = cpu %d, non-zero cpu %d, non-zero memory %d; want %d, %d, %d", r.milliCPU, cpu, mem, tc.cpu, tc.nonZeroCPU, tc.nonZeroMem)
			}
		})
	}
}
