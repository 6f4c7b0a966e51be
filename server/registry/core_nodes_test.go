package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newTestNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", ResourceVersion: "7"},
		Spec:       corev1.NodeSpec{PodCIDR: "10.42.1.0/24", PodCIDRs: []string{"10.42.1.0/24"}},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(time.Unix(100, 0))},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: metav1.NewTime(time.Unix(100, 0))},
			},
		},
	}
}

func TestNodeDefaults(t *testing.T) {
	n := &corev1.Node{
		Spec:   corev1.NodeSpec{PodCIDR: "10.42.3.0/24"},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
	}
	coreResource(t, "nodes").Default(n)
	if n.Status.Allocatable.Memory().String() != "1Gi" {
		t.Errorf("allocatable = %v, want capacity", n.Status.Allocatable)
	}
	if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != "10.42.3.0/24" {
		t.Errorf("podCIDRs = %v", n.Spec.PodCIDRs)
	}
}

func TestNodeVolatile(t *testing.T) {
	r := coreResource(t, "nodes")
	old := newTestNode()
	cases := []struct {
		name   string
		mutate func(*corev1.Node)
		want   bool
	}{
		{"heartbeat only", func(n *corev1.Node) {
			for i := range n.Status.Conditions {
				n.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(time.Unix(200, 0))
			}
			n.ResourceVersion = "8"
			n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "agent", Time: &metav1.Time{Time: time.Unix(200, 0)}}}
		}, true},
		{"ready changes", func(n *corev1.Node) {
			n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Unix(200, 0))
			n.Status.Conditions[0].Status = corev1.ConditionFalse
		}, false},
		{"transition time changes", func(n *corev1.Node) {
			n.Status.Conditions[1].LastTransitionTime = metav1.NewTime(time.Unix(200, 0))
		}, false},
		{"label changes", func(n *corev1.Node) { n.Labels = map[string]string{"a": "b"} }, false},
		{"condition added", func(n *corev1.Node) {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeDiskPressure})
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := old.DeepCopy()
			tc.mutate(n)
			if got := r.Volatile(n, old); got != tc.want {
				t.Errorf("Volatile = %v, want %v", got, tc.want)
			}
		})
	}
	if r.Volatile(old, nil) {
		t.Errorf("a create is never volatile")
	}
}

func TestValidateNode(t *testing.T) {
	r := coreResource(t, "nodes")
	cases := []struct {
		name   string
		mutate func(*corev1.Node)
		want   []string
	}{
		{name: "valid", mutate: func(*corev1.Node) {}},
		{name: "dual stack", mutate: func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00:42::/64") }},
		{name: "bad CIDR", mutate: func(n *corev1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.42.1.0/33", []string{"10.42.1.0/33"} },
			want: []string{"spec.podCIDRs[0]: FieldValueInvalid"}},
		{name: "two of one family", mutate: func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "10.42.2.0/24") },
			want: []string{"spec.podCIDRs: FieldValueInvalid"}},
		{name: "taints", mutate: func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{
				{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
				{Key: "dedicated", Value: "other", Effect: corev1.TaintEffectNoSchedule},
				{Key: "dedicated", Effect: corev1.TaintEffectNoExecute},
				{Key: "", Effect: corev1.TaintEffectNoSchedule},
				{Key: "bad key!", Value: "bad value!", Effect: "Sometimes"},
				{Key: "x"},
			}
		}, want: []string{
			"spec.taints[1]: FieldValueDuplicate",
			"spec.taints[3].key: FieldValueRequired",
			"spec.taints[4].key: FieldValueInvalid",
			"spec.taints[4].value: FieldValueInvalid",
			"spec.taints[4].effect: FieldValueNotSupported",
			"spec.taints[5].effect: FieldValueRequired",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode()
			tc.mutate(n)
			checkErrors(t, r.Validate(n), tc.want...)
		})
	}
}

func TestValidateNodeUpdate(t *testing.T) {
	r := coreResource(t, "nodes")
	empty := newTestNode()
	empty.Spec.PodCIDR, empty.Spec.PodCIDRs = "", nil
	set := newTestNode()
	checkErrors(t, r.ValidateUpdate(set, empty))
	changed := newTestNode()
	changed.Spec.PodCIDRs = []string{"10.42.9.0/24"}
	checkErrors(t, r.ValidateUpdate(changed, set), "spec.podCIDRs: FieldValueForbidden")
	withID := newTestNode()
	withID.Spec.ProviderID = "orch://node-1"
	checkErrors(t, r.ValidateUpdate(withID, set))
	otherID := newTestNode()
	otherID.Spec.ProviderID = "orch://node-2"
	checkErrors(t, r.ValidateUpdate(otherID, withID), "spec.providerID: FieldValueForbidden")
}

func TestNodeStrategies(t *testing.T) {
	r := coreResource(t, "nodes")
	old := newTestNode()
	upd := old.DeepCopy()
	upd.Spec.Unschedulable = true
	upd.Status.Conditions = nil
	r.PrepareForUpdate(upd, old)
	if !upd.Spec.Unschedulable || len(upd.Status.Conditions) != 2 {
		t.Errorf("main update: unschedulable %v conditions %d", upd.Spec.Unschedulable, len(upd.Status.Conditions))
	}
	st := old.DeepCopy()
	st.Spec.Unschedulable = true
	st.Status.Conditions = nil
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.Unschedulable || len(st.Status.Conditions) != 0 {
		t.Errorf("status update: unschedulable %v conditions %d", st.Spec.Unschedulable, len(st.Status.Conditions))
	}
	if f := r.Fields(upd); f["spec.unschedulable"] != "true" {
		t.Errorf("fields = %v", f)
	}
}

func TestNodeRow(t *testing.T) {
	created := metav1.NewTime(time.Now().Add(-3 * time.Hour))
	cases := []struct {
		name   string
		mutate func(*corev1.Node)
		want   []interface{}
	}{
		{name: "ready control plane", mutate: func(n *corev1.Node) {
			n.Labels = map[string]string{"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true"}
			n.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.33.1+orch", OSImage: "Debian GNU/Linux 13", KernelVersion: "6.12.0", ContainerRuntimeVersion: "orch://0.1"}
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-1"}, {Type: corev1.NodeInternalIP, Address: "198.18.0.2"}}
		}, want: []interface{}{"node-1", "Ready", "control-plane,master", "3h", "v1.33.1+orch", "198.18.0.2", "<none>", "Debian GNU/Linux 13", "6.12.0", "orch://0.1"}},
		{name: "not ready and cordoned", mutate: func(n *corev1.Node) {
			n.Status.Conditions[0].Status = corev1.ConditionUnknown
			n.Spec.Unschedulable = true
			n.Labels = map[string]string{"kubernetes.io/role": "worker"}
		}, want: []interface{}{"node-1", "NotReady,SchedulingDisabled", "worker", "3h", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
		{name: "no ready condition", mutate: func(n *corev1.Node) { n.Status.Conditions = nil },
			want: []interface{}{"node-1", "Unknown", "<none>", "3h", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode()
			n.CreationTimestamp = created
			tc.mutate(n)
			got := nodeRow(n)
			if len(got) != len(nodeColumns()) || sprint(got) != sprint(tc.want) {
				t.Errorf("row\n got  %v\n want %v", got, tc.want)
			}
		})
	}
}
