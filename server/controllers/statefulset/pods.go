package statefulset

import (
	"regexp"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ordinalPattern splits a member pod's name into <set>-<ordinal>.
var ordinalPattern = regexp.MustCompile(`^(.*)-([0-9]+)$`)

// parentAndOrdinal returns the StatefulSet name and ordinal encoded in a
// pod name; ordinal is -1 when the name has none.
func parentAndOrdinal(podName string) (string, int) {
	m := ordinalPattern.FindStringSubmatch(podName)
	if m == nil {
		return "", -1
	}
	ord, err := strconv.Atoi(m[2])
	if err != nil {
		return "", -1
	}
	return m[1], ord
}

func ordinalOf(pod *corev1.Pod) int {
	_, ord := parentAndOrdinal(pod.Name)
	return ord
}

// isMemberOf reports whether pod's name makes it one of set's pods.
func isMemberOf(set *appsv1.StatefulSet, pod *corev1.Pod) bool {
	parent, ord := parentAndOrdinal(pod.Name)
	return ord >= 0 && parent == set.Name
}

func podName(set *appsv1.StatefulSet, ordinal int) string {
	return set.Name + "-" + strconv.Itoa(ordinal)
}

// startOrdinal is spec.ordinals.start (0 by default).
func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicaCount(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

// claimName is the PVC a pod gets from template: <template>-<set>-<ordinal>.
func claimName(set *appsv1.StatefulSet, template *corev1.PersistentVolumeClaim, ordinal int) string {
	return template.Name + "-" + podName(set, ordinal)
}

// claimsFor are the PVCs pod of set needs, in template order.
func claimsFor(set *appsv1.StatefulSet, ordinal int) []*corev1.PersistentVolumeClaim {
	out := make([]*corev1.PersistentVolumeClaim, 0, len(set.Spec.VolumeClaimTemplates))
	for i := range set.Spec.VolumeClaimTemplates {
		tmpl := &set.Spec.VolumeClaimTemplates[i]
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: *tmpl.ObjectMeta.DeepCopy(),
			Spec:       *tmpl.Spec.DeepCopy(),
		}
		claim.Name = claimName(set, tmpl, ordinal)
		claim.Namespace = set.Namespace
		claim.ResourceVersion, claim.UID = "", ""
		claim.OwnerReferences = nil
		if claim.Labels == nil {
			claim.Labels = map[string]string{}
		}
		if set.Spec.Selector != nil {
			for k, v := range set.Spec.Selector.MatchLabels {
				claim.Labels[k] = v
			}
		}
		out = append(out, claim)
	}
	return out
}

// setIdentity gives pod its stable identity: name, hostname, subdomain and
// the pod-name and pod-index labels.
func setIdentity(set *appsv1.StatefulSet, pod *corev1.Pod, ordinal int) {
	pod.Name = podName(set, ordinal)
	pod.Namespace = set.Namespace
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[appsv1.StatefulSetPodNameLabel] = pod.Name
	pod.Labels[appsv1.PodIndexLabel] = strconv.Itoa(ordinal)
	pod.Spec.Hostname = pod.Name
	pod.Spec.Subdomain = set.Spec.ServiceName
}

// labelsMatchIdentity reports whether pod carries its identity labels;
// hostname and subdomain cannot change on a live pod.
func labelsMatchIdentity(set *appsv1.StatefulSet, pod *corev1.Pod) bool {
	ord := ordinalOf(pod)
	return isMemberOf(set, pod) && pod.Namespace == set.Namespace &&
		pod.Labels[appsv1.StatefulSetPodNameLabel] == pod.Name &&
		pod.Labels[appsv1.PodIndexLabel] == strconv.Itoa(ord)
}

// setStorage points the pod's volumes named like claim templates at the
// pod's claims, keeping its other volumes.
func setStorage(set *appsv1.StatefulSet, pod *corev1.Pod, ordinal int) {
	claims := claimsFor(set, ordinal)
	volumes := make([]corev1.Volume, 0, len(claims)+len(pod.Spec.Volumes))
	byName := map[string]bool{}
	for i, c := range claims {
		name := set.Spec.VolumeClaimTemplates[i].Name
		byName[name] = true
		volumes = append(volumes, corev1.Volume{
			Name:         name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}},
		})
	}
	for _, v := range pod.Spec.Volumes {
		if !byName[v.Name] {
			volumes = append(volumes, v)
		}
	}
	pod.Spec.Volumes = volumes
}

// newPod is set's pod with ordinal from template, at revision (the
// revision's name goes in the controller-revision-hash label).
func newPod(set *appsv1.StatefulSet, template *corev1.PodTemplateSpec, revision string, ordinal int) *corev1.Pod {
	tmpl := template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Labels:          tmpl.Labels,
			Annotations:     tmpl.Annotations,
			Finalizers:      tmpl.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, kind)},
		},
		Spec: tmpl.Spec,
	}
	setIdentity(set, pod, ordinal)
	setStorage(set, pod, ordinal)
	pod.Labels[appsv1.StatefulSetRevisionLabel] = revision
	return pod
}

func podRevision(pod *corev1.Pod) string {
	return pod.Labels[appsv1.StatefulSetRevisionLabel]
}

func isTerminating(pod *corev1.Pod) bool { return pod.DeletionTimestamp != nil }

func isFailed(pod *corev1.Pod) bool { return pod.Status.Phase == corev1.PodFailed }

func isSucceeded(pod *corev1.Pod) bool { return pod.Status.Phase == corev1.PodSucceeded }

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

func isRunningAndReady(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodRunning && readyCondition(pod) != nil
}

// availableIn is how long until a running and ready pod has been ready
// for minReadySeconds (0 or less: available).
func availableIn(pod *corev1.Pod, minReadySeconds int32, now time.Time) time.Duration {
	c := readyCondition(pod)
	if c == nil || minReadySeconds == 0 {
		return 0
	}
	return c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second).Sub(now)
}

func isRunningAndAvailable(pod *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	return isRunningAndReady(pod) && availableIn(pod, minReadySeconds, now) <= 0
}

// isHealthy: running, ready and not terminating.
func isHealthy(pod *corev1.Pod) bool {
	return isRunningAndReady(pod) && !isTerminating(pod)
}

// ownerRefs returns refs with a non-controller reference to owner added
// (want) or removed, and whether that changed anything.
func ownerRefs(refs []metav1.OwnerReference, owner metav1.Object, gvk metav1.TypeMeta, want bool) ([]metav1.OwnerReference, bool) {
	idx := -1
	for i, r := range refs {
		if r.UID == owner.GetUID() {
			idx = i
		}
	}
	switch {
	case want && idx < 0:
		return append(refs, metav1.OwnerReference{
			APIVersion: gvk.APIVersion, Kind: gvk.Kind, Name: owner.GetName(), UID: owner.GetUID(),
		}), true
	case !want && idx >= 0:
		out := append([]metav1.OwnerReference(nil), refs[:idx]...)
		return append(out, refs[idx+1:]...), true
	}
	return refs, false
}
