package volume

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestWaitForFirstConsumerProvisionsOnSelectedNode(t *testing.T) {
	h := start(t, Options{StorageDir: "/data/storage"}, LocalPathClass(), node("n1"), node("n2"))
	h.create(claim("data", "-", "2Gi"))

	// The default class appears, the claim gets it and waits for a pod.
	h.eventually("default class assigned", func() bool {
		pvc, ok := h.claim("data")
		return ok && pvc.Spec.StorageClassName != nil && *pvc.Spec.StorageClassName == LocalPathClassName
	})
	h.eventually("WaitForFirstConsumer event", func() bool {
		return h.rec.Has("Normal WaitForFirstConsumer waiting for first consumer to be created before binding")
	})
	h.eventually("claim pending", h.claimPhase("data", corev1.ClaimPending))
	pvc, _ := h.claim("data")
	if !slices.Contains(pvc.Finalizers, pvcProtectionFinalizer) {
		t.Errorf("claim finalizers = %v, want %s", pvc.Finalizers, pvcProtectionFinalizer)
	}
	pvName := "pvc-" + string(pvc.UID)
	h.never("volume provisioned before a node was selected", func() bool { _, ok := h.volume(pvName); return ok })

	// The scheduler picks n2.
	h.update(pvc, "", func(obj runtime.Object) {
		metav1.SetMetaDataAnnotation(&obj.(*corev1.PersistentVolumeClaim).ObjectMeta, annSelectedNode, "n2")
	})
	h.eventually("claim bound", h.claimPhase("data", corev1.ClaimBound))
	h.eventually("volume bound", h.volumePhase(pvName, corev1.VolumeBound))

	pv, _ := h.volume(pvName)
	wantPath := "/data/storage/" + pvName + "_default_data"
	if hp := pv.Spec.HostPath; hp == nil || hp.Path != wantPath || hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("hostPath = %+v, want %s DirectoryOrCreate", hp, wantPath)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 ||
		terms[0].MatchExpressions[0].Key != corev1.LabelHostname || !slices.Equal(terms[0].MatchExpressions[0].Values, []string{"n2"}) {
		t.Errorf("node affinity = %+v, want hostname in [n2]", terms)
	}
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.String() != "2Gi" {
		t.Errorf("capacity = %s, want 2Gi", got.String())
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.StorageClassName != LocalPathClassName {
		t.Errorf("reclaim %s class %s, want Delete local-path", pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.StorageClassName)
	}
	if pv.Annotations[annProvisionedBy] != LocalPathProvisioner || !slices.Contains(pv.Finalizers, pvProtectionFinalizer) {
		t.Errorf("volume annotations %v finalizers %v", pv.Annotations, pv.Finalizers)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != "data" || ref.UID != pvc.UID {
		t.Errorf("claimRef = %+v", ref)
	}

	pvc, _ = h.claim("data")
	if pvc.Spec.VolumeName != pvName || pvc.Annotations[annBindCompleted] != "yes" || pvc.Annotations[annBoundByController] != "yes" {
		t.Errorf("claim volumeName %q annotations %v", pvc.Spec.VolumeName, pvc.Annotations)
	}
	if pvc.Annotations[annStorageProvisioner] != LocalPathProvisioner {
		t.Errorf("claim storage-provisioner annotation = %q", pvc.Annotations[annStorageProvisioner])
	}
	if got := pvc.Status.Capacity[corev1.ResourceStorage]; got.String() != "2Gi" || !slices.Equal(pvc.Status.AccessModes, pv.Spec.AccessModes) {
		t.Errorf("claim status = %+v", pvc.Status)
	}
	if !h.rec.Has("Normal ProvisioningSucceeded Successfully provisioned volume " + pvName) {
		t.Errorf("no ProvisioningSucceeded event in %v", h.rec.Events())
	}
}

func TestImmediateBindsSmallestFit(t *testing.T) {
	h := start(t, Options{},
		immediateClass("manual"),
		volume("pv-1g", "manual", "1Gi", corev1.PersistentVolumeReclaimRetain),
		volume("pv-10g", "manual", "10Gi", corev1.PersistentVolumeReclaimRetain),
		volume("pv-3g", "manual", "3Gi", corev1.PersistentVolumeReclaimRetain),
		volume("pv-2g-rwx", "manual", "2Gi", corev1.PersistentVolumeReclaimRetain, corev1.ReadWriteOnce, corev1.ReadWriteMany),
		volume("pv-2g-other", "other", "2Gi", corev1.PersistentVolumeReclaimRetain),
	)
	for _, name := range []string{"pv-1g", "pv-10g", "pv-3g", "pv-2g-rwx", "pv-2g-other"} {
		h.eventually(name+" available", h.volumePhase(name, corev1.VolumeAvailable))
	}
	h.eventually("volumes available in the controller's cache", h.cachedAvailable(5))
	h.create(claim("a", "manual", "1500Mi"))
	h.eventually("a bound", h.claimPhase("a", corev1.ClaimBound))
	pvc, _ := h.claim("a")
	if pvc.Spec.VolumeName != "pv-3g" {
		t.Errorf("a bound to %s, want pv-3g (smallest fit with the fewest access modes)", pvc.Spec.VolumeName)
	}
	h.eventually("pv-3g bound", h.volumePhase("pv-3g", corev1.VolumeBound))
	pv, _ := h.volume("pv-3g")
	if pv.Annotations[annBoundByController] != "yes" || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != pvc.UID {
		t.Errorf("pv-3g annotations %v claimRef %+v", pv.Annotations, pv.Spec.ClaimRef)
	}

	// The next claim of the same size takes what is left.
	h.create(claim("b", "manual", "1500Mi"))
	h.eventually("b bound", h.claimPhase("b", corev1.ClaimBound))
	if pvc, _ := h.claim("b"); pvc.Spec.VolumeName != "pv-10g" {
		t.Errorf("b bound to %s, want pv-10g", pvc.Spec.VolumeName)
	}

	// A claim nothing fits stays Pending until a volume appears.
	h.create(claim("c", "manual", "20Gi"))
	h.eventually("c pending", h.claimPhase("c", corev1.ClaimPending))
	h.create(volume("pv-50g", "manual", "50Gi", corev1.PersistentVolumeReclaimRetain))
	h.eventually("c bound", h.claimPhase("c", corev1.ClaimBound))

	// A claim without a class and no default class: the FailedBinding event.
	h.create(claim("d", "-", "1Gi"))
	h.eventually("FailedBinding", func() bool {
		return h.rec.Has("Normal FailedBinding no persistent volumes available for this claim and no storage class is set")
	})
}

func TestPreboundClaimAndVolume(t *testing.T) {
	pre := volume("pv-pre", "manual", "5Gi", corev1.PersistentVolumeReclaimRetain)
	pre.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "wants-pre"}
	h := start(t, Options{},
		immediateClass("manual"), pre,
		volume("pv-small", "manual", "1Gi", corev1.PersistentVolumeReclaimRetain),
		volume("pv-named", "manual", "1Gi", corev1.PersistentVolumeReclaimRetain),
	)
	h.eventually("pv-pre available", h.volumePhase("pv-pre", corev1.VolumeAvailable))
	h.create(claim("wants-pre", "manual", "1Gi"))
	h.eventually("wants-pre bound", h.claimPhase("wants-pre", corev1.ClaimBound))
	if pvc, _ := h.claim("wants-pre"); pvc.Spec.VolumeName != "pv-pre" {
		t.Errorf("wants-pre bound to %s, want pv-pre", pvc.Spec.VolumeName)
	}
	if pv, _ := h.volume("pv-pre"); pv.Annotations[annBoundByController] != "" {
		t.Errorf("a user's pre-bound volume got %s", annBoundByController)
	}

	named := claim("named", "manual", "1Gi")
	named.Spec.VolumeName = "pv-named"
	h.create(named)
	h.eventually("named bound", h.claimPhase("named", corev1.ClaimBound))
	h.eventually("pv-named bound", h.volumePhase("pv-named", corev1.VolumeBound))
	if pvc, _ := h.claim("named"); pvc.Annotations[annBoundByController] != "" || pvc.Annotations[annBindCompleted] != "yes" {
		t.Errorf("named annotations = %v", pvc.Annotations)
	}
}

func TestReclaim(t *testing.T) {
	provisioned := func(name string, policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
		pv := volume(name, "manual", "1Gi", policy)
		pv.Annotations = map[string]string{annProvisionedBy: LocalPathProvisioner}
		return pv
	}
	tests := []struct {
		name      string
		volume    *corev1.PersistentVolume
		wantGone  bool
		wantPhase corev1.PersistentVolumePhase
		wantEvent string
	}{
		{name: "delete provisioned", volume: provisioned("pv", corev1.PersistentVolumeReclaimDelete), wantGone: true},
		{name: "retain", volume: provisioned("pv", corev1.PersistentVolumeReclaimRetain), wantPhase: corev1.VolumeReleased},
		{name: "delete static", volume: volume("pv", "manual", "1Gi", corev1.PersistentVolumeReclaimDelete), wantPhase: corev1.VolumeFailed,
			wantEvent: `Warning VolumeFailedDelete error getting deleter volume plugin for volume "pv": no deletable volume plugin matched`},
		{name: "recycle", volume: volume("pv", "manual", "1Gi", corev1.PersistentVolumeReclaimRecycle), wantPhase: corev1.VolumeFailed,
			wantEvent: "Warning VolumeFailedRecycle No recycler plugin found for the volume!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Options{}, immediateClass("manual"), tt.volume)
			pvc := h.create(claim("data", "manual", "1Gi"))
			h.eventually("bound", h.claimPhase("data", corev1.ClaimBound))
			h.eventually("volume bound", h.volumePhase("pv", corev1.VolumeBound))
			h.delete(pvc)
			h.eventually("claim gone", h.claimGone("data"))
			if tt.wantGone {
				h.eventually("volume deleted", h.volumeGone("pv"))
				return
			}
			h.eventually("volume "+string(tt.wantPhase), h.volumePhase("pv", tt.wantPhase))
			h.never("volume deleted", h.volumeGone("pv"))
			if tt.wantEvent != "" && !h.rec.Has(tt.wantEvent) {
				t.Errorf("no event %q in %v", tt.wantEvent, h.rec.Events())
			}
		})
	}
}

func TestRetainedVolumeIsReusedAfterClaimRefIsCleared(t *testing.T) {
	h := start(t, Options{}, immediateClass("manual"),
		volume("pv", "manual", "1Gi", corev1.PersistentVolumeReclaimRetain))
	first := h.create(claim("first", "manual", "1Gi"))
	h.eventually("first bound", h.claimPhase("first", corev1.ClaimBound))
	h.delete(first)
	h.eventually("released", h.volumePhase("pv", corev1.VolumeReleased))

	h.create(claim("second", "manual", "1Gi"))
	h.eventually("second pending", h.claimPhase("second", corev1.ClaimPending))
	h.never("released volume rebound", h.claimPhase("second", corev1.ClaimBound))

	pv, _ := h.volume("pv")
	h.update(pv, "", func(obj runtime.Object) { obj.(*corev1.PersistentVolume).Spec.ClaimRef = nil })
	h.eventually("second bound", h.claimPhase("second", corev1.ClaimBound))
}

func TestClaimProtectionWhilePodUsesIt(t *testing.T) {
	h := start(t, Options{}, LocalPathClass(), node("n1"))
	pvc := h.create(claim("data", "-", "1Gi"))
	h.eventually("claim gets the default class", func() bool {
		c, _ := h.claim("data")
		return c.Spec.StorageClassName != nil
	})
	h.update(pvc, "", func(obj runtime.Object) {
		metav1.SetMetaDataAnnotation(&obj.(*corev1.PersistentVolumeClaim).ObjectMeta, annSelectedNode, "n1")
	})
	h.eventually("bound", h.claimPhase("data", corev1.ClaimBound))
	bound, _ := h.claim("data")
	pvName := bound.Spec.VolumeName

	pod := h.create(podUsing("app", "n1", "data"))
	// An unscheduled pod does not hold a claim.
	h.create(podUsing("pending", "", "data"))
	h.delete(pvc)
	h.never("claim deleted while a pod uses it", h.claimGone("data"))
	if c, _ := h.claim("data"); c.DeletionTimestamp == nil || c.Status.Phase != corev1.ClaimBound {
		t.Errorf("claim = %+v, want being deleted and still Bound", c)
	}

	// A Bound volume keeps its pv-protection finalizer.
	pv, _ := h.volume(pvName)
	h.delete(pv)
	h.never("bound volume deleted", h.volumeGone(pvName))

	// The pod finishing releases the claim; the volume is then Released
	// and, being deleted already, goes.
	h.update(pod, "status", func(obj runtime.Object) { obj.(*corev1.Pod).Status.Phase = corev1.PodSucceeded })
	h.eventually("claim deleted", h.claimGone("data"))
	h.eventually("volume deleted", h.volumeGone(pvName))
}

func TestLostClaim(t *testing.T) {
	h := start(t, Options{}, immediateClass("manual"),
		volume("pv", "manual", "1Gi", corev1.PersistentVolumeReclaimRetain))
	h.create(claim("data", "manual", "1Gi"))
	h.eventually("bound", h.claimPhase("data", corev1.ClaimBound))
	pv, _ := h.volume("pv")
	// Force the volume away: delete it, then take its protection
	// finalizer off by hand.
	h.delete(pv)
	h.update(pv, "", func(obj runtime.Object) { obj.(*corev1.PersistentVolume).Finalizers = nil })
	h.eventually("volume gone", h.volumeGone("pv"))
	h.eventually("claim lost", h.claimPhase("data", corev1.ClaimLost))
	if !h.rec.Has("Warning ClaimLost Bound claim has lost its PersistentVolume. Data on the volume is lost!") {
		t.Errorf("no ClaimLost event in %v", h.rec.Events())
	}
}

func TestDefaultClassName(t *testing.T) {
	at := func(sec int64) metav1.Time { return metav1.NewTime(time.Unix(sec, 0)) }
	class := func(name string, created int64, ann map[string]string) *storagev1.StorageClass {
		return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(created), Annotations: ann}}
	}
	def := map[string]string{annDefaultClass: "true"}
	beta := map[string]string{annBetaDefaultClass: "true"}
	notDef := map[string]string{annDefaultClass: "false"}
	tests := []struct {
		name    string
		classes []*storagev1.StorageClass
		want    string
	}{
		{name: "none", want: ""},
		{name: "no default", classes: []*storagev1.StorageClass{class("a", 1, nil), class("b", 2, notDef)}, want: ""},
		{name: "one", classes: []*storagev1.StorageClass{class("a", 1, nil), class("local-path", 2, def)}, want: "local-path"},
		{name: "beta annotation", classes: []*storagev1.StorageClass{class("old", 1, beta)}, want: "old"},
		{name: "newest wins", classes: []*storagev1.StorageClass{class("new", 5, def), class("old", 1, def)}, want: "new"},
		{name: "tie by name", classes: []*storagev1.StorageClass{class("z", 3, def), class("m", 3, beta)}, want: "m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultClassName(tt.classes); got != tt.want {
				t.Errorf("DefaultClassName = %q, want %q", got, tt.want)
			}
		})
	}
}
