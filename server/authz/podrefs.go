package authz

import corev1 "k8s.io/api/core/v1"

// refKind is a kind of object a pod refers to by name.
type refKind int

const (
	refSecret refKind = iota + 1
	refConfigMap
	refClaim
	refServiceAccount
)

// visitPodReferences calls visit for every object pod refers to by name
// (what Kubernetes' podutil.VisitPodSecretNames and
// VisitPodConfigmapNames walk, plus claims and the service account), until
// visit returns false.
func visitPodReferences(pod *corev1.Pod, visit func(kind refKind, name string) bool) bool {
	if pod.Spec.ServiceAccountName != "" && !visit(refServiceAccount, pod.Spec.ServiceAccountName) {
		return false
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		if !visit(refSecret, s.Name) {
			return false
		}
	}
	for i := range pod.Spec.Volumes {
		if !visitVolumeReferences(pod.Name, &pod.Spec.Volumes[i], visit) {
			return false
		}
	}
	for i := range pod.Spec.InitContainers {
		if !visitEnvReferences(pod.Spec.InitContainers[i].EnvFrom, pod.Spec.InitContainers[i].Env, visit) {
			return false
		}
	}
	for i := range pod.Spec.Containers {
		if !visitEnvReferences(pod.Spec.Containers[i].EnvFrom, pod.Spec.Containers[i].Env, visit) {
			return false
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		c := &pod.Spec.EphemeralContainers[i].EphemeralContainerCommon
		if !visitEnvReferences(c.EnvFrom, c.Env, visit) {
			return false
		}
	}
	return true
}

func visitVolumeReferences(podName string, v *corev1.Volume, visit func(refKind, string) bool) bool {
	src := &v.VolumeSource
	switch {
	case src.Secret != nil:
		return visit(refSecret, src.Secret.SecretName)
	case src.ConfigMap != nil:
		return visit(refConfigMap, src.ConfigMap.Name)
	case src.PersistentVolumeClaim != nil:
		return visit(refClaim, src.PersistentVolumeClaim.ClaimName)
	case src.Ephemeral != nil:
		// The claim of a generic ephemeral volume is named <pod>-<volume>.
		return visit(refClaim, podName+"-"+v.Name)
	case src.Projected != nil:
		for _, p := range src.Projected.Sources {
			if p.Secret != nil && !visit(refSecret, p.Secret.Name) {
				return false
			}
			if p.ConfigMap != nil && !visit(refConfigMap, p.ConfigMap.Name) {
				return false
			}
		}
	case src.CSI != nil && src.CSI.NodePublishSecretRef != nil:
		return visit(refSecret, src.CSI.NodePublishSecretRef.Name)
	case src.ISCSI != nil && src.ISCSI.SecretRef != nil:
		return visit(refSecret, src.ISCSI.SecretRef.Name)
	case src.CephFS != nil && src.CephFS.SecretRef != nil:
		return visit(refSecret, src.CephFS.SecretRef.Name)
	case src.RBD != nil && src.RBD.SecretRef != nil:
		return visit(refSecret, src.RBD.SecretRef.Name)
	case src.FlexVolume != nil && src.FlexVolume.SecretRef != nil:
		return visit(refSecret, src.FlexVolume.SecretRef.Name)
	case src.AzureFile != nil:
		return visit(refSecret, src.AzureFile.SecretName)
	}
	return true
}

func visitEnvReferences(from []corev1.EnvFromSource, env []corev1.EnvVar, visit func(refKind, string) bool) bool {
	for _, f := range from {
		if f.SecretRef != nil && !visit(refSecret, f.SecretRef.Name) {
			return false
		}
		if f.ConfigMapRef != nil && !visit(refConfigMap, f.ConfigMapRef.Name) {
			return false
		}
	}
	for _, e := range env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil && !visit(refSecret, r.Name) {
			return false
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !visit(refConfigMap, r.Name) {
			return false
		}
	}
	return true
}
