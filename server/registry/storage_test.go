package registry

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestStorageEntries(t *testing.T) {
	gv := storagev1.SchemeGroupVersion
	checkEntries(t, []entryCase{
		{gv, "storageclasses", "StorageClass", false, []string{"sc"}, nil,
			[]string{"Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"}},
		{gv, "csidrivers", "CSIDriver", false, nil, nil,
			[]string{"Name", "AttachRequired", "PodInfoOnMount", "StorageCapacity", "TokenRequests", "RequiresRepublish", "Modes", "Age"}},
		{gv, "csinodes", "CSINode", false, nil, nil, []string{"Name", "Drivers", "Age"}},
		{gv, "volumeattachments", "VolumeAttachment", false, nil, []string{"status"},
			[]string{"Name", "Attacher", "PV", "Node", "Attached", "Age"}},
	})
}

func validStorageClass() *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-path"},
		Provisioner: "rancher.io/local-path",
		Parameters:  map[string]string{"nodePath": "/var/lib/orch/storage"},
	}
}

func TestStorageClassDefaults(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "storageclasses")
	sc := validStorageClass()
	r.Default(sc)
	if sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("reclaimPolicy %v, want Delete", sc.ReclaimPolicy)
	}
	if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingImmediate {
		t.Errorf("volumeBindingMode %v, want Immediate", sc.VolumeBindingMode)
	}
	sc = validStorageClass()
	sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRetain)
	sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)
	r.Default(sc)
	if *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("explicit values overwritten: %v %v", *sc.ReclaimPolicy, *sc.VolumeBindingMode)
	}
}

func TestValidateStorageClass(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "storageclasses")
	tests := []struct {
		name   string
		mutate func(*storagev1.StorageClass)
		want   []string
	}{
		{"valid", func(*storagev1.StorageClass) {}, nil},
		{"provisioner required", func(sc *storagev1.StorageClass) { sc.Provisioner = "" }, []string{"provisioner: FieldValueRequired"}},
		{"provisioner not a qualified name", func(sc *storagev1.StorageClass) { sc.Provisioner = "a/b/c" },
			[]string{"provisioner: FieldValueInvalid"}},
		{"upper-case provisioner", func(sc *storagev1.StorageClass) { sc.Provisioner = "Example.com/Disk" }, nil},
		{"empty parameter key", func(sc *storagev1.StorageClass) { sc.Parameters[""] = "x" },
			[]string{"parameters: FieldValueInvalid"}},
		{"parameters too large", func(sc *storagev1.StorageClass) { sc.Parameters["big"] = strings.Repeat("x", 256*1024) },
			[]string{"parameters: FieldValueTooLong"}},
		{"recycle not allowed", func(sc *storagev1.StorageClass) {
			sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRecycle)
		}, []string{"reclaimPolicy: FieldValueNotSupported"}},
		{"bad binding mode", func(sc *storagev1.StorageClass) {
			sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingMode("Later"))
		}, []string{"volumeBindingMode: FieldValueNotSupported"}},
		{"allowed topologies", func(sc *storagev1.StorageClass) {
			sc.AllowedTopologies = []corev1.TopologySelectorTerm{
				{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: "topology.kubernetes.io/zone", Values: []string{"a"}}}},
				{},
				{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: "k"}, {Key: "k", Values: []string{"v"}}}},
			}
		}, []string{"allowedTopologies[1].matchLabelExpressions: FieldValueRequired",
			"allowedTopologies[2].matchLabelExpressions[0].values: FieldValueRequired",
			"allowedTopologies[2].matchLabelExpressions[1].key: FieldValueDuplicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := validStorageClass()
			r.Default(sc)
			tt.mutate(sc)
			checkErrors(t, r.Validate(sc), tt.want...)
		})
	}
}

func TestValidateStorageClassUpdate(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "storageclasses")
	tests := []struct {
		name   string
		mutate func(*storagev1.StorageClass)
		want   []string
	}{
		{"labels and expansion may change", func(sc *storagev1.StorageClass) {
			sc.Labels = map[string]string{"a": "b"}
			sc.AllowVolumeExpansion = ptr.To(true)
		}, nil},
		{"parameters", func(sc *storagev1.StorageClass) { sc.Parameters["nodePath"] = "/data" },
			[]string{"parameters: FieldValueForbidden"}},
		{"provisioner", func(sc *storagev1.StorageClass) { sc.Provisioner = "example.com/disk" },
			[]string{"provisioner: FieldValueForbidden"}},
		{"reclaim policy", func(sc *storagev1.StorageClass) { sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRetain) },
			[]string{"reclaimPolicy: FieldValueForbidden"}},
		{"binding mode", func(sc *storagev1.StorageClass) {
			sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)
		}, []string{"volumeBindingMode: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := validStorageClass()
			r.Default(old)
			sc := old.DeepCopy()
			tt.mutate(sc)
			checkErrors(t, r.ValidateUpdate(sc, old), tt.want...)
		})
	}
}

func TestStorageClassRow(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "storageclasses")
	created := metav1.NewTime(time.Now().Add(-90 * time.Second))
	tests := []struct {
		name string
		sc   *storagev1.StorageClass
		want string
	}{
		{"unset fields", &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "a", CreationTimestamp: created},
			Provisioner: "example.com/a"}, "[a example.com/a Delete Immediate false 90s]"},
		{"default class", &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "local-path", CreationTimestamp: created,
				Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
			Provisioner:          "rancher.io/local-path",
			ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimRetain),
			VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
			AllowVolumeExpansion: ptr.To(true),
		}, "[local-path (default) rancher.io/local-path Retain WaitForFirstConsumer true 90s]"},
		{"beta default annotation", &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "b", CreationTimestamp: created,
			Annotations: map[string]string{"storageclass.beta.kubernetes.io/is-default-class": "true"}}},
			"[b (default)  Delete Immediate false 90s]"},
		{"not default", &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: created,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "false"}}},
			"[c  Delete Immediate false 90s]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sprint(r.Row(tt.sc)); got != tt.want {
				t.Errorf("row %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCSIDriver(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "csidrivers")
	d := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "hostpath.csi.k8s.io"}}
	r.Default(d)
	if !*d.Spec.AttachRequired || *d.Spec.PodInfoOnMount || *d.Spec.StorageCapacity || *d.Spec.RequiresRepublish ||
		*d.Spec.FSGroupPolicy != storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy ||
		len(d.Spec.VolumeLifecycleModes) != 1 || d.Spec.VolumeLifecycleModes[0] != storagev1.VolumeLifecyclePersistent {
		t.Errorf("defaults: %+v", d.Spec)
	}
	checkErrors(t, r.Validate(d))
	if got, want := sprint(r.Row(d)), "[hostpath.csi.k8s.io true false false <unset> false Persistent <unknown>]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}

	for _, tt := range []struct {
		name  string
		valid bool
	}{{"hostpath.csi.k8s.io", true}, {"Disk.Example.COM", true}, {strings.Repeat("a", 64), false}, {"a_b", false}} {
		if got := len(r.NameValidation(tt.name, false)) == 0; got != tt.valid {
			t.Errorf("name %q valid = %v, want %v", tt.name, got, tt.valid)
		}
	}

	tests := []struct {
		name   string
		mutate func(*storagev1.CSIDriver)
		want   []string
	}{
		{"fsGroupPolicy", func(d *storagev1.CSIDriver) { d.Spec.FSGroupPolicy = ptr.To(storagev1.FSGroupPolicy("Always")) },
			[]string{"spec.fsGroupPolicy: FieldValueNotSupported"}},
		{"lifecycle mode", func(d *storagev1.CSIDriver) {
			d.Spec.VolumeLifecycleModes = []storagev1.VolumeLifecycleMode{"Ephemeral", "Forever"}
		}, []string{"spec.volumeLifecycleModes[1]: FieldValueNotSupported"}},
		{"token requests", func(d *storagev1.CSIDriver) {
			d.Spec.TokenRequests = []storagev1.TokenRequest{{Audience: "a"}, {Audience: "a", ExpirationSeconds: ptr.To[int64](60)}}
		}, []string{"spec.tokenRequests[1].audience: FieldValueDuplicate", "spec.tokenRequests[1].expirationSeconds: FieldValueInvalid"}},
		{"attachRequired null", func(d *storagev1.CSIDriver) { d.Spec.AttachRequired = nil },
			[]string{"spec.attachRequired: FieldValueRequired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "x.example.com"}}
			r.Default(d)
			tt.mutate(d)
			checkErrors(t, r.Validate(d), tt.want...)
		})
	}

	old := d.DeepCopy()
	upd := d.DeepCopy()
	upd.Spec.AttachRequired = ptr.To(false)
	upd.Spec.VolumeLifecycleModes = append(upd.Spec.VolumeLifecycleModes, storagev1.VolumeLifecycleEphemeral)
	upd.Spec.StorageCapacity = ptr.To(true)
	checkErrors(t, r.ValidateUpdate(upd, old), "spec.attachRequired: FieldValueInvalid", "spec.volumeLifecycleModes: FieldValueInvalid")
}

func TestCSINode(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "csinodes")
	valid := func() *storagev1.CSINode {
		return &storagev1.CSINode{
			ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
			Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{
				Name: "hostpath.csi.k8s.io", NodeID: "node-1",
				TopologyKeys: []string{"topology.hostpath.csi/node"},
				Allocatable:  &storagev1.VolumeNodeResources{Count: ptr.To[int32](10)},
			}}},
		}
	}
	d0 := "spec.drivers[0]"
	tests := []struct {
		name   string
		mutate func(*storagev1.CSINode)
		want   []string
	}{
		{"valid", func(*storagev1.CSINode) {}, nil},
		{"node ID required", func(n *storagev1.CSINode) { n.Spec.Drivers[0].NodeID = "" }, []string{d0 + ".nodeID: FieldValueRequired"}},
		{"node ID too long", func(n *storagev1.CSINode) { n.Spec.Drivers[0].NodeID = strings.Repeat("n", 193) },
			[]string{d0 + ".nodeID: FieldValueTooLong"}},
		{"driver name", func(n *storagev1.CSINode) { n.Spec.Drivers[0].Name = "" }, []string{d0 + ".name: FieldValueRequired"}},
		{"duplicate driver", func(n *storagev1.CSINode) { n.Spec.Drivers = append(n.Spec.Drivers, n.Spec.Drivers[0]) },
			[]string{"spec.drivers[1].name: FieldValueDuplicate"}},
		{"topology keys", func(n *storagev1.CSINode) {
			n.Spec.Drivers[0].TopologyKeys = []string{"a", "a", "", "a/b/c"}
		}, []string{d0 + ".topologyKeys[1]: FieldValueDuplicate", d0 + ".topologyKeys[2]: FieldValueRequired",
			d0 + ".topologyKeys[3]: FieldValueInvalid"}},
		{"negative count", func(n *storagev1.CSINode) { n.Spec.Drivers[0].Allocatable.Count = ptr.To[int32](-1) },
			[]string{d0 + ".allocatable.count: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := valid()
			tt.mutate(n)
			checkErrors(t, r.Validate(n), tt.want...)
		})
	}

	old := valid()
	upd := valid()
	upd.Spec.Drivers[0].NodeID = "other"
	upd.Spec.Drivers[0].TopologyKeys = nil
	upd.Spec.Drivers = append(upd.Spec.Drivers, storagev1.CSINodeDriver{Name: "new.csi", NodeID: "x"})
	checkErrors(t, r.ValidateUpdate(upd, old), d0+".nodeID: FieldValueInvalid", d0+".topologyKeys: FieldValueInvalid")
	checkErrors(t, r.ValidateUpdate(&storagev1.CSINode{}, old))
	if got, want := sprint(r.Row(valid())), "[node-1 1 <unknown>]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}

func TestVolumeAttachment(t *testing.T) {
	r := tableResource(t, storagev1.SchemeGroupVersion, "volumeattachments")
	valid := func() *storagev1.VolumeAttachment {
		return &storagev1.VolumeAttachment{
			ObjectMeta: metav1.ObjectMeta{Name: "csi-123"},
			Spec: storagev1.VolumeAttachmentSpec{
				Attacher: "hostpath.csi.k8s.io",
				Source:   storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pv-1")},
				NodeName: "node-1",
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(*storagev1.VolumeAttachment)
		want   []string
	}{
		{"valid", func(*storagev1.VolumeAttachment) {}, nil},
		{"attacher required", func(va *storagev1.VolumeAttachment) { va.Spec.Attacher = "" }, []string{"spec.attacher: FieldValueRequired"}},
		{"node required", func(va *storagev1.VolumeAttachment) { va.Spec.NodeName = "" },
			[]string{"spec.nodeName: FieldValueInvalid"}},
		{"no source", func(va *storagev1.VolumeAttachment) { va.Spec.Source = storagev1.VolumeAttachmentSource{} },
			[]string{"spec.source: FieldValueRequired"}},
		{"two sources", func(va *storagev1.VolumeAttachment) {
			va.Spec.Source.InlineVolumeSpec = &corev1.PersistentVolumeSpec{}
		}, []string{"spec.source: FieldValueForbidden"}},
		{"bad pv name", func(va *storagev1.VolumeAttachment) { va.Spec.Source.PersistentVolumeName = ptr.To("PV_1") },
			[]string{"spec.source.persistentVolumeName: FieldValueInvalid"}},
		{"long attach error", func(va *storagev1.VolumeAttachment) {
			va.Status.AttachError = &storagev1.VolumeError{Message: strings.Repeat("e", 1025)}
		}, []string{"status.attachError.message: FieldValueTooLong"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			va := valid()
			tt.mutate(va)
			checkErrors(t, r.Validate(va), tt.want...)
		})
	}

	// The spec is fixed; the attacher reports through status.
	old := valid()
	upd := valid()
	upd.Spec.NodeName = "node-2"
	checkErrors(t, r.ValidateUpdate(upd, old), "spec: FieldValueInvalid")

	created := valid()
	created.Status.Attached = true
	r.PrepareForCreate(created)
	if created.Status.Attached {
		t.Error("create kept status")
	}
	stored := valid()
	stored.Status.Attached = true
	main := valid()
	r.PrepareForUpdate(main, stored)
	if !main.Status.Attached {
		t.Error("main update changed status")
	}
	st := valid()
	st.Spec.NodeName = "node-9"
	st.Status.AttachmentMetadata = map[string]string{"dev": "/dev/sdb"}
	r.PrepareForStatusUpdate(st, stored)
	if st.Spec.NodeName != "node-1" || st.Status.AttachmentMetadata["dev"] != "/dev/sdb" {
		t.Errorf("status update: spec %v status %v", st.Spec, st.Status)
	}
	if got, want := sprint(r.Row(stored)), "[csi-123 hostpath.csi.k8s.io pv-1 node-1 true <unknown>]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}
