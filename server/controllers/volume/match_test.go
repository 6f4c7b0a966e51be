package volume

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func available(pv *corev1.PersistentVolume) *corev1.PersistentVolume {
	pv.Status.Phase = corev1.VolumeAvailable
	return pv
}

func onNode(pv *corev1.PersistentVolume, hostname string) *corev1.PersistentVolume {
	pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
		}}}},
	}}
	return pv
}

func TestFindMatch(t *testing.T) {
	const retain = corev1.PersistentVolumeReclaimRetain
	block := corev1.PersistentVolumeBlock
	labelled := available(volume("labelled", "c", "5Gi", retain))
	labelled.Labels = map[string]string{"tier": "fast"}
	prebound := volume("prebound", "c", "5Gi", retain)
	prebound.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "data"}
	boundElsewhere := available(volume("elsewhere", "c", "1Gi", retain))
	boundElsewhere.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "other", UID: "x"}
	blockPV := available(volume("block", "c", "1Gi", retain))
	blockPV.Spec.VolumeMode = &block
	deleting := available(volume("deleting", "c", "1Gi", retain))
	deleting.DeletionTimestamp = &metav1.Time{}

	withSelector := claim("data", "c", "1Gi")
	withSelector.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "fast"}}
	blockClaim := claim("data", "c", "1Gi")
	blockClaim.Spec.VolumeMode = &block

	tests := []struct {
		name    string
		claim   *corev1.PersistentVolumeClaim
		volumes []*corev1.PersistentVolume
		node    string
		want    string
	}{
		{name: "smallest that fits", claim: claim("data", "c", "2Gi"), volumes: []*corev1.PersistentVolume{
			available(volume("1g", "c", "1Gi", retain)), available(volume("8g", "c", "8Gi", retain)),
			available(volume("2g", "c", "2Gi", retain)), available(volume("4g", "c", "4Gi", retain)),
		}, want: "2g"},
		{name: "nothing fits", claim: claim("data", "c", "10Gi"), volumes: []*corev1.PersistentVolume{
			available(volume("1g", "c", "1Gi", retain)),
		}},
		{name: "class must match", claim: claim("data", "c", "1Gi"), volumes: []*corev1.PersistentVolume{
			available(volume("other", "d", "1Gi", retain)), available(volume("mine", "c", "3Gi", retain)),
		}, want: "mine"},
		{name: "fewest access modes first", claim: claim("data", "c", "1Gi"), volumes: []*corev1.PersistentVolume{
			available(volume("rwx", "c", "1Gi", retain, corev1.ReadWriteOnce, corev1.ReadWriteMany)),
			available(volume("rwo", "c", "2Gi", retain)),
		}, want: "rwo"},
		{name: "access modes must cover the claim's", claim: claim("data", "c", "1Gi", corev1.ReadWriteMany), volumes: []*corev1.PersistentVolume{
			available(volume("rwo", "c", "1Gi", retain)),
			available(volume("rwx", "c", "2Gi", retain, corev1.ReadWriteOnce, corev1.ReadWriteMany)),
		}, want: "rwx"},
		{name: "only Available volumes", claim: claim("data", "c", "1Gi"), volumes: []*corev1.PersistentVolume{
			volume("pending", "c", "1Gi", retain), boundElsewhere, deleting,
		}},
		{name: "selector", claim: withSelector, volumes: []*corev1.PersistentVolume{
			available(volume("plain", "c", "1Gi", retain)), labelled,
		}, want: "labelled"},
		{name: "volume mode", claim: blockClaim, volumes: []*corev1.PersistentVolume{
			available(volume("fs", "c", "1Gi", retain)), blockPV,
		}, want: "block"},
		{name: "pre-bound volume wins over a smaller one", claim: claim("data", "c", "1Gi"), volumes: []*corev1.PersistentVolume{
			available(volume("1g", "c", "1Gi", retain)), prebound,
		}, want: "prebound"},
		{name: "node affinity", claim: claim("data", "c", "1Gi"), node: "n2", volumes: []*corev1.PersistentVolume{
			available(onNode(volume("on-n1", "c", "1Gi", retain), "n1")),
			available(onNode(volume("on-n2", "c", "2Gi", retain), "n2")),
		}, want: "on-n2"},
		{name: "node affinity ignored without a node", claim: claim("data", "c", "1Gi"), volumes: []*corev1.PersistentVolume{
			available(onNode(volume("on-n1", "c", "1Gi", retain), "n1")),
		}, want: "on-n1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.claim.UID = "claim-uid"
			var n *corev1.Node
			if tt.node != "" {
				n = node(tt.node)
			}
			got, err := findMatch(tt.claim, tt.volumes, n)
			if err != nil {
				t.Fatal(err)
			}
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tt.want {
				t.Errorf("findMatch = %q, want %q", name, tt.want)
			}
		})
	}
}

func TestWaitForFirstConsumerPrefersStaticVolumeOnNode(t *testing.T) {
	mode := LocalPathClass().VolumeBindingMode
	local := immediateClass("local")
	local.VolumeBindingMode = mode
	h := start(t, Options{}, node("n1"), node("n2"), local,
		onNode(volume("disk-n1", "local", "10Gi", corev1.PersistentVolumeReclaimRetain), "n1"),
		onNode(volume("disk-n2", "local", "10Gi", corev1.PersistentVolumeReclaimRetain), "n2"),
	)
	h.eventually("disk-n2 available", h.volumePhase("disk-n2", corev1.VolumeAvailable))
	pvc := h.create(claim("data", "local", "1Gi"))
	h.eventually("claim pending", h.claimPhase("data", corev1.ClaimPending))
	h.never("bound before a node is selected", h.claimPhase("data", corev1.ClaimBound))
	h.update(pvc, "", func(obj runtime.Object) {
		metav1.SetMetaDataAnnotation(&obj.(*corev1.PersistentVolumeClaim).ObjectMeta, annSelectedNode, "n2")
	})
	h.eventually("claim bound", h.claimPhase("data", corev1.ClaimBound))
	if c, _ := h.claim("data"); c.Spec.VolumeName != "disk-n2" {
		t.Errorf("bound to %s, want disk-n2", c.Spec.VolumeName)
	}
}

func TestExternalProvisionerIsLeftToItsWork(t *testing.T) {
	class := immediateClass("ext")
	class.Provisioner = "rancher.io/local-path"
	h := start(t, Options{}, class)
	h.create(claim("data", "ext", "1Gi"))
	h.eventually("provisioner annotation", func() bool {
		c, ok := h.claim("data")
		return ok && c.Annotations[annStorageProvisioner] == "rancher.io/local-path" && c.Annotations[annBetaStorageProvisioner] == "rancher.io/local-path"
	})
	h.eventually("ExternalProvisioning event", func() bool {
		return h.rec.Has("Normal ExternalProvisioning Waiting for a volume to be created either by the external provisioner 'rancher.io/local-path'")
	})
	// The external provisioner's volume, pre-bound to the claim, binds.
	c, _ := h.claim("data")
	pv := volume("pvc-ext", "ext", "1Gi", corev1.PersistentVolumeReclaimDelete)
	pv.Annotations = map[string]string{annProvisionedBy: "rancher.io/local-path"}
	pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "data", UID: c.UID}
	h.create(pv)
	h.eventually("claim bound", h.claimPhase("data", corev1.ClaimBound))
	// Deleting the claim releases the volume but leaves it to its
	// provisioner.
	h.delete(c)
	h.eventually("released", h.volumePhase("pvc-ext", corev1.VolumeReleased))
	h.never("deleted by orch", h.volumeGone("pvc-ext"))
}
