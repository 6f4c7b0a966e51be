package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func newTestPV() *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv1"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data/pv1"}},
		},
	}
}

func TestPersistentVolumeDefaults(t *testing.T) {
	r := configResource(t, "persistentvolumes")
	pv := newTestPV()
	pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("0.0001")
	r.Default(pv)
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("reclaim policy %q", pv.Spec.PersistentVolumeReclaimPolicy)
	}
	if pv.Spec.VolumeMode == nil || *pv.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("volume mode %v", pv.Spec.VolumeMode)
	}
	if pv.Status.Phase != corev1.VolumePending {
		t.Errorf("phase %q", pv.Status.Phase)
	}
	if pv.Spec.HostPath.Type == nil || *pv.Spec.HostPath.Type != corev1.HostPathUnset {
		t.Errorf("hostPath type %v", pv.Spec.HostPath.Type)
	}
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "1m" {
		t.Errorf("capacity not rounded: %s", q.String())
	}

	// Set values are kept.
	pv = newTestPV()
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	pv.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	r.Default(pv)
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *pv.Spec.VolumeMode != corev1.PersistentVolumeBlock {
		t.Errorf("set values overwritten: %v %v", pv.Spec.PersistentVolumeReclaimPolicy, *pv.Spec.VolumeMode)
	}
}

func TestPersistentVolumeStrategies(t *testing.T) {
	r := configResource(t, "persistentvolumes")
	pv := newTestPV()
	pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound, Reason: "client"}
	r.PrepareForCreate(pv)
	if pv.Status.Phase != corev1.VolumePending || pv.Status.Reason != "" || pv.Status.LastPhaseTransitionTime == nil {
		t.Errorf("create status %+v", pv.Status)
	}

	old := pv.DeepCopy()
	upd := newTestPV()
	upd.Status.Phase = corev1.VolumeFailed
	r.PrepareForUpdate(upd, old)
	if upd.Status.Phase != corev1.VolumePending {
		t.Errorf("update changed status: %+v", upd.Status)
	}

	// A status write keeps the spec and stamps a phase change.
	stamp := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	old.Status.LastPhaseTransitionTime = &stamp
	st := old.DeepCopy()
	st.Spec.StorageClassName = "changed"
	st.Status.Phase = corev1.VolumeBound
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.StorageClassName != "" {
		t.Errorf("status update changed the spec")
	}
	if st.Status.LastPhaseTransitionTime.Equal(&stamp) {
		t.Errorf("phase change kept the old transition time")
	}
	same := old.DeepCopy()
	same.Status.LastPhaseTransitionTime = nil
	r.PrepareForStatusUpdate(same, old)
	if !same.Status.LastPhaseTransitionTime.Equal(&stamp) {
		t.Errorf("unchanged phase lost its transition time: %v", same.Status.LastPhaseTransitionTime)
	}
}

func TestValidatePersistentVolume(t *testing.T) {
	affinity := &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
	}}}}
	tests := []struct {
		name   string
		mutate func(pv *corev1.PersistentVolume)
		want   []string
	}{
		{"valid hostPath", func(*corev1.PersistentVolume) {}, nil},
		{"valid local with affinity", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.Local = &corev1.LocalVolumeSource{Path: "/mnt/disk"}
			pv.Spec.NodeAffinity = affinity
		}, nil},
		{"valid nfs", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.NFS = &corev1.NFSVolumeSource{Server: "10.0.0.1", Path: "/exports"}
		}, nil},
		{"valid csi", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: "hostpath.csi.k8s.io", VolumeHandle: "v1"}
			pv.Spec.VolumeAttributesClassName = ptr.To("fast")
		}, nil},
		{"no capacity", func(pv *corev1.PersistentVolume) { pv.Spec.Capacity = nil },
			[]string{"spec.capacity: FieldValueRequired", "spec.capacity: FieldValueNotSupported"}},
		{"extra capacity", func(pv *corev1.PersistentVolume) { pv.Spec.Capacity[corev1.ResourceCPU] = resource.MustParse("1") },
			[]string{"spec.capacity: FieldValueNotSupported"}},
		{"zero capacity", func(pv *corev1.PersistentVolume) { pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("0") },
			[]string{"spec.capacity[storage]: FieldValueInvalid"}},
		{"negative capacity", func(pv *corev1.PersistentVolume) {
			pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("-1Gi")
		},
			[]string{"spec.capacity[storage]: FieldValueInvalid", "spec.capacity[storage]: FieldValueInvalid"}},
		{"no access modes", func(pv *corev1.PersistentVolume) { pv.Spec.AccessModes = nil },
			[]string{"spec.accessModes: FieldValueRequired"}},
		{"bad access mode", func(pv *corev1.PersistentVolume) {
			pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{"ReadAll"}
		},
			[]string{"spec.accessModes: FieldValueNotSupported"}},
		{"RWOP with others", func(pv *corev1.PersistentVolume) {
			pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod, corev1.ReadWriteMany}
		}, []string{"spec.accessModes: FieldValueForbidden"}},
		{"bad reclaim policy", func(pv *corev1.PersistentVolume) { pv.Spec.PersistentVolumeReclaimPolicy = "Keep" },
			[]string{"spec.persistentVolumeReclaimPolicy: FieldValueNotSupported"}},
		{"no source", func(pv *corev1.PersistentVolume) { pv.Spec.HostPath = nil }, []string{"spec: FieldValueRequired"}},
		{"two sources", func(pv *corev1.PersistentVolume) {
			pv.Spec.NFS = &corev1.NFSVolumeSource{Server: "s", Path: "/p"}
		}, []string{"spec.nfs: FieldValueForbidden"}},
		{"hostPath with backsteps", func(pv *corev1.PersistentVolume) { pv.Spec.HostPath.Path = "/data/../etc" },
			[]string{"spec.hostPath.path: FieldValueInvalid"}},
		{"hostPath bad type", func(pv *corev1.PersistentVolume) { pv.Spec.HostPath.Type = ptr.To[corev1.HostPathType]("Pipe") },
			[]string{"spec.hostPath.type: FieldValueNotSupported"}},
		{"hostPath / recycled", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath.Path = "/"
			pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRecycle
		}, []string{"spec.persistentVolumeReclaimPolicy: FieldValueForbidden"}},
		{"local without affinity", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.Local = &corev1.LocalVolumeSource{Path: "/mnt/disk"}
		}, []string{"spec.nodeAffinity: FieldValueRequired"}},
		{"affinity without required", func(pv *corev1.PersistentVolume) { pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{} },
			[]string{"spec.nodeAffinity.required: FieldValueRequired"}},
		{"affinity bad operator", func(pv *corev1.PersistentVolume) {
			pv.Spec.NodeAffinity = affinity.DeepCopy()
			pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Operator = "Near"
		}, []string{"spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: FieldValueInvalid"}},
		{"nfs relative path", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.NFS = &corev1.NFSVolumeSource{Path: "exports"}
		}, []string{"spec.nfs.server: FieldValueRequired", "spec.nfs.path: FieldValueInvalid"}},
		{"csi incomplete", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{NodePublishSecretRef: &corev1.SecretReference{}}
		}, []string{"spec.csi.driver: FieldValueRequired", "spec.csi.driver: FieldValueInvalid", "spec.csi.volumeHandle: FieldValueRequired",
			"spec.csi.nodePublishSecretRef.name: FieldValueRequired", "spec.csi.nodePublishSecretRef.namespace: FieldValueRequired"}},
		{"bad storage class", func(pv *corev1.PersistentVolume) { pv.Spec.StorageClassName = "Fast_Disks" },
			[]string{"spec.storageClassName: FieldValueInvalid"}},
		{"bad volume mode", func(pv *corev1.PersistentVolume) { pv.Spec.VolumeMode = ptr.To[corev1.PersistentVolumeMode]("Raw") },
			[]string{"spec.volumeMode: FieldValueNotSupported"}},
		{"attributes class without csi", func(pv *corev1.PersistentVolume) { pv.Spec.VolumeAttributesClassName = ptr.To("") },
			[]string{"spec.volumeAttributesClassName: FieldValueRequired", "spec.csi: FieldValueRequired"}},
	}
	r := configResource(t, "persistentvolumes")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pv := newTestPV()
			tt.mutate(pv)
			r.Default(pv)
			wantErrors(t, r.Validate(pv), tt.want...)
		})
	}
}

func TestValidatePersistentVolumeUpdate(t *testing.T) {
	tests := []struct {
		name   string
		old    func(pv *corev1.PersistentVolume)
		mutate func(pv *corev1.PersistentVolume)
		want   []string
	}{
		{"capacity and class may change", nil, func(pv *corev1.PersistentVolume) {
			pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("2Gi")
			pv.Spec.StorageClassName = "slow"
			pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "c"}
		}, nil},
		{"source immutable", nil, func(pv *corev1.PersistentVolume) { pv.Spec.HostPath.Path = "/other" },
			[]string{"spec.persistentvolumesource: FieldValueForbidden"}},
		{"volume mode immutable", nil, func(pv *corev1.PersistentVolume) { pv.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock) },
			[]string{"volumeMode: FieldValueInvalid"}},
		{"node affinity may be added", nil, func(pv *corev1.PersistentVolume) {
			pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}}
		}, nil},
		{"node affinity immutable once set", func(pv *corev1.PersistentVolume) {
			pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}}
		}, func(pv *corev1.PersistentVolume) { pv.Spec.NodeAffinity = nil }, []string{"nodeAffinity: FieldValueInvalid"}},
		{"csi may gain an expand secret", func(pv *corev1.PersistentVolume) {
			pv.Spec.HostPath = nil
			pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: "d", VolumeHandle: "h"}
		}, func(pv *corev1.PersistentVolume) {
			pv.Spec.CSI.ControllerExpandSecretRef = &corev1.SecretReference{Name: "s", Namespace: "ns"}
		}, nil},
	}
	r := configResource(t, "persistentvolumes")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := newTestPV()
			if tt.old != nil {
				tt.old(old)
			}
			r.Default(old)
			pv := old.DeepCopy()
			tt.mutate(pv)
			wantErrors(t, r.ValidateUpdate(pv, old), tt.want...)
		})
	}
}

func TestPersistentVolumeRow(t *testing.T) {
	r := configResource(t, "persistentvolumes")
	pv := newTestPV()
	pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany, corev1.ReadWriteOnce, corev1.ReadWriteOnce}
	pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "data"}
	pv.Spec.StorageClassName = "local-path"
	r.Default(pv)
	pv.Status.Phase = corev1.VolumeBound
	if got, want := rowString(r.Row(pv)), "[pv1 1Gi RWO,RWX Retain Bound default/data local-path <unset>  <unknown> Filesystem]"; got != want {
		t.Errorf("row\n got  %s\n want %s", got, want)
	}
	pv.Annotations = map[string]string{corev1.BetaStorageClassAnnotation: "beta"}
	pv.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	pv.Spec.VolumeAttributesClassName = ptr.To("gold")
	if got, want := rowString(r.Row(pv)), "[pv1 1Gi RWO,RWX Retain Terminating default/data beta gold  <unknown> Filesystem]"; got != want {
		t.Errorf("row\n got  %s\n want %s", got, want)
	}
}

func newTestPVC() *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse("1Gi"),
			}},
		},
	}
}

func TestPersistentVolumeClaimDefaultsAndStrategies(t *testing.T) {
	r := configResource(t, "persistentvolumeclaims")
	pvc := newTestPVC()
	pvc.Status.Phase = corev1.ClaimBound
	r.Default(pvc)
	r.PrepareForCreate(pvc)
	if pvc.Spec.VolumeMode == nil || *pvc.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("volume mode %v", pvc.Spec.VolumeMode)
	}
	if pvc.Status.Phase != corev1.ClaimPending {
		t.Errorf("phase %q", pvc.Status.Phase)
	}
	fresh := newTestPVC()
	r.Default(fresh)
	if fresh.Status.Phase != corev1.ClaimPending {
		t.Errorf("defaulted phase %q", fresh.Status.Phase)
	}

	old := pvc.DeepCopy()
	old.Status.Phase = corev1.ClaimBound
	upd := pvc.DeepCopy()
	upd.Status.Phase = corev1.ClaimLost
	r.PrepareForUpdate(upd, old)
	if upd.Status.Phase != corev1.ClaimBound {
		t.Errorf("update changed status: %q", upd.Status.Phase)
	}
	st := old.DeepCopy()
	st.Spec.VolumeName = "pv9"
	st.Status.Phase = corev1.ClaimLost
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.VolumeName != "" || st.Status.Phase != corev1.ClaimLost {
		t.Errorf("status update: volumeName %q phase %q", st.Spec.VolumeName, st.Status.Phase)
	}
}

func TestValidatePersistentVolumeClaim(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(pvc *corev1.PersistentVolumeClaim)
		want   []string
	}{
		{"valid", func(*corev1.PersistentVolumeClaim) {}, nil},
		{"valid with class, selector and source", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.StorageClassName = ptr.To("local-path")
			pvc.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "db"}}
			pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "src"}
			pvc.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "src"}
		}, nil},
		{"no access modes", func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.AccessModes = nil },
			[]string{"spec.accessModes: FieldValueRequired"}},
		{"no storage request", func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.Resources.Requests = nil },
			[]string{"spec.resources[storage]: FieldValueRequired"}},
		{"zero storage request", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("0")
		}, []string{"spec.resources[storage]: FieldValueInvalid"}},
		{"negative storage request", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("-1Gi")
		}, []string{"spec.resources[storage]: FieldValueInvalid"}},
		{"bad selector", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}
		}, []string{"spec.selector.matchLabels: FieldValueInvalid"}},
		{"bad class", func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To("UPPER") },
			[]string{"spec.storageClassName: FieldValueInvalid"}},
		{"empty class allowed", func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To("") }, nil},
		{"bad volume mode", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.VolumeMode = ptr.To[corev1.PersistentVolumeMode]("x")
		},
			[]string{"spec.volumeMode: FieldValueNotSupported"}},
		{"data source of a core kind", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "Pod", Name: "x"}
		}, []string{"spec.dataSource: FieldValueInvalid"}},
		{"status capacity", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi"), "example.com/iops": resource.MustParse("100")}
		}, nil},
		{"bad status capacity", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceStorage: resource.MustParse("-1")}
		}, []string{"status.capacity[cpu]: FieldValueNotSupported", "status.capacity[storage]: FieldValueInvalid"}},
		{"data source mismatch", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "a"}
			pvc.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "b"}
		}, []string{"spec: FieldValueInvalid"}},
	}
	r := configResource(t, "persistentvolumeclaims")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pvc := newTestPVC()
			tt.mutate(pvc)
			r.Default(pvc)
			wantErrors(t, r.Validate(pvc), tt.want...)
		})
	}
}

func TestValidatePersistentVolumeClaimUpdate(t *testing.T) {
	bound := func(pvc *corev1.PersistentVolumeClaim) {
		pvc.Spec.VolumeName = "pv1"
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
	}
	tests := []struct {
		name   string
		old    func(pvc *corev1.PersistentVolumeClaim)
		mutate func(pvc *corev1.PersistentVolumeClaim)
		want   []string
	}{
		{"bind volume name once", nil, func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.VolumeName = "pv1" }, nil},
		{"volume name fixed once bound", bound, func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.VolumeName = "pv2" },
			[]string{"spec: FieldValueForbidden"}},
		{"bound claim grows", bound, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("5Gi")
		}, nil},
		{"bound claim may not shrink below capacity", bound, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("512Mi")
		}, []string{"spec.resources.requests.storage: FieldValueForbidden"}},
		{"unbound claim request immutable", nil, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("5Gi")
		}, []string{"spec: FieldValueForbidden"}},
		{"access modes immutable", nil, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}, []string{"spec: FieldValueForbidden"}},
		{"class may be set when unset", nil, func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To("local-path") }, nil},
		{"class immutable once set", func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To("a") },
			func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To("b") }, []string{"spec: FieldValueForbidden"}},
		{"class from beta annotation", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Annotations = map[string]string{corev1.BetaStorageClassAnnotation: "gold"}
		}, func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To("gold") }, nil},
		{"beta annotation immutable", func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Annotations = map[string]string{corev1.BetaStorageClassAnnotation: "gold"}
		}, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Annotations[corev1.BetaStorageClassAnnotation] = "silver"
		}, []string{"metadata.annotations[volume.beta.kubernetes.io/storage-class]: FieldValueInvalid"}},
		{"volume mode immutable", nil, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
		}, []string{"spec: FieldValueForbidden", "volumeMode: FieldValueInvalid"}},
		{"bound claim changes attributes class", func(pvc *corev1.PersistentVolumeClaim) {
			bound(pvc)
			pvc.Spec.VolumeAttributesClassName = ptr.To("silver")
		}, func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.VolumeAttributesClassName = ptr.To("gold") }, nil},
		{"attributes class may not be removed", func(pvc *corev1.PersistentVolumeClaim) {
			bound(pvc)
			pvc.Spec.VolumeAttributesClassName = ptr.To("silver")
		}, func(pvc *corev1.PersistentVolumeClaim) { pvc.Spec.VolumeAttributesClassName = nil },
			[]string{"spec: FieldValueForbidden", "spec.volumeAttributesClassName: FieldValueForbidden"}},
	}
	r := configResource(t, "persistentvolumeclaims")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := newTestPVC()
			if tt.old != nil {
				tt.old(old)
			}
			r.Default(old)
			pvc := old.DeepCopy()
			tt.mutate(pvc)
			errs := r.ValidateUpdate(pvc, old)
			wantErrors(t, errs, tt.want...)
			for _, e := range errs {
				if e.Field == "spec" {
					wantDetail(t, errs, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")
				}
			}
		})
	}
}

func TestPersistentVolumeClaimRow(t *testing.T) {
	r := configResource(t, "persistentvolumeclaims")
	pvc := newTestPVC()
	r.Default(pvc)
	if got, want := rowString(r.Row(pvc)), "[data Pending     <unset> <unknown> Filesystem]"; got != want {
		t.Errorf("pending row\n got  %s\n want %s", got, want)
	}
	pvc.Spec.VolumeName = "pv1"
	pvc.Spec.StorageClassName = ptr.To("local-path")
	pvc.Status = corev1.PersistentVolumeClaimStatus{
		Phase:       corev1.ClaimBound,
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod},
		Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
	}
	if got, want := rowString(r.Row(pvc)), "[data Bound pv1 2Gi RWOP local-path <unset> <unknown> Filesystem]"; got != want {
		t.Errorf("bound row\n got  %s\n want %s", got, want)
	}
}
