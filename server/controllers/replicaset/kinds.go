package replicaset

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// workloadKind adapts one resource to the controller, which works on
// ReplicaSets only: ReplicationControllers are viewed as ReplicaSets, as
// Kubernetes' replication controller does by conversion.
type workloadKind struct {
	gvr          schema.GroupVersionResource
	gvk          schema.GroupVersionKind
	component    string // event source and log name
	fieldManager string
	// toReplicaSet views obj as a ReplicaSet; false if obj is of another
	// type. The result may share memory with obj: never modify it.
	toReplicaSet func(obj runtime.Object) (*appsv1.ReplicaSet, bool)
	// withStatus returns a copy of obj, of its own type, carrying status.
	withStatus func(obj runtime.Object, status appsv1.ReplicaSetStatus) runtime.Object
}

func replicaSetKind() *workloadKind {
	return &workloadKind{
		gvr:          appsv1.SchemeGroupVersion.WithResource("replicasets"),
		gvk:          appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		component:    "replicaset-controller",
		fieldManager: "orch-replicaset-controller",
		toReplicaSet: func(obj runtime.Object) (*appsv1.ReplicaSet, bool) {
			rs, ok := obj.(*appsv1.ReplicaSet)
			return rs, ok
		},
		withStatus: func(obj runtime.Object, status appsv1.ReplicaSetStatus) runtime.Object {
			rs := obj.(*appsv1.ReplicaSet).DeepCopy()
			rs.Status = status
			return rs
		},
	}
}

func replicationControllerKind() *workloadKind {
	return &workloadKind{
		gvr:          corev1.SchemeGroupVersion.WithResource("replicationcontrollers"),
		gvk:          corev1.SchemeGroupVersion.WithKind("ReplicationController"),
		component:    "replication-controller",
		fieldManager: "orch-replication-controller",
		toReplicaSet: func(obj runtime.Object) (*appsv1.ReplicaSet, bool) {
			rc, ok := obj.(*corev1.ReplicationController)
			if !ok {
				return nil, false
			}
			return replicaSetFromRC(rc), true
		},
		withStatus: func(obj runtime.Object, status appsv1.ReplicaSetStatus) runtime.Object {
			rc := obj.(*corev1.ReplicationController).DeepCopy()
			rc.Status = rcStatus(status)
			return rc
		},
	}
}

// replicaSetFromRC views rc as a ReplicaSet. The metadata is shared.
func replicaSetFromRC(rc *corev1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: rc.ObjectMeta,
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        rc.Spec.Replicas,
			MinReadySeconds: rc.Spec.MinReadySeconds,
		},
		Status: appsv1.ReplicaSetStatus{
			Replicas:             rc.Status.Replicas,
			FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
			ReadyReplicas:        rc.Status.ReadyReplicas,
			AvailableReplicas:    rc.Status.AvailableReplicas,
			ObservedGeneration:   rc.Status.ObservedGeneration,
		},
	}
	// A ReplicationController's selector is equality-based; nil selects
	// nothing, as an RC without selector cannot exist once defaulted.
	if rc.Spec.Selector != nil {
		rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}
	}
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template
	}
	for _, cond := range rc.Status.Conditions {
		rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetConditionType(cond.Type), Status: cond.Status,
			LastTransitionTime: cond.LastTransitionTime, Reason: cond.Reason, Message: cond.Message,
		})
	}
	return rs
}

func rcStatus(st appsv1.ReplicaSetStatus) corev1.ReplicationControllerStatus {
	out := corev1.ReplicationControllerStatus{
		Replicas:             st.Replicas,
		FullyLabeledReplicas: st.FullyLabeledReplicas,
		ReadyReplicas:        st.ReadyReplicas,
		AvailableReplicas:    st.AvailableReplicas,
		ObservedGeneration:   st.ObservedGeneration,
	}
	for _, cond := range st.Conditions {
		out.Conditions = append(out.Conditions, corev1.ReplicationControllerCondition{
			Type: corev1.ReplicationControllerConditionType(cond.Type), Status: cond.Status,
			LastTransitionTime: cond.LastTransitionTime, Reason: cond.Reason, Message: cond.Message,
		})
	}
	return out
}
