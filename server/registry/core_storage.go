package registry

import (
	"path"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// PersistentVolumes and PersistentVolumeClaims: pkg/registry/core/
// persistentvolume and persistentvolumeclaim, the v1 defaults and the
// printers of `kubectl get pv,pvc`. orch runs no volume plugins itself, but
// clients (Helm charts, operators, local-path provisioners) create these
// objects and expect Kubernetes' answers.

var (
	pvAccessModes     = sets.New(corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod)
	pvReclaimPolicies = sets.New(corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRecycle,
		corev1.PersistentVolumeReclaimRetain)
	pvVolumeModes   = sets.New(corev1.PersistentVolumeBlock, corev1.PersistentVolumeFilesystem)
	pvHostPathTypes = sets.New(corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
		corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev)
)

// pvUnsetCell is what printers show for an optional field left unset.
const pvUnsetCell = "<unset>"

func persistentVolumesResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "persistentvolumes",
		Kind:         "PersistentVolume",
		SingularName: "persistentvolume",
		Namespaced:   false,
		ShortNames:   []string{"pv"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &corev1.PersistentVolume{} },
		NewList:      func() runtime.Object { return &corev1.PersistentVolumeList{} },
		Default:      func(obj runtime.Object) { defaultPersistentVolume(obj.(*corev1.PersistentVolume)) },
		PrepareForCreate: func(obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			now := metav1.NewTime(time.Now().Truncate(time.Second))
			pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending, LastPhaseTransitionTime: &now}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.PersistentVolume).Status = old.(*corev1.PersistentVolume).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			preparePersistentVolumeForStatusUpdate(obj.(*corev1.PersistentVolume), old.(*corev1.PersistentVolume), time.Now())
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePersistentVolume(obj.(*corev1.PersistentVolume))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePersistentVolumeUpdate(obj.(*corev1.PersistentVolume), old.(*corev1.PersistentVolume))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Capacity", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["capacity"], 0),
			column("Access Modes", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["accessModes"], 0),
			column("Reclaim Policy", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["persistentVolumeReclaimPolicy"], 0),
			column("Status", "string", corev1.PersistentVolumeStatus{}.SwaggerDoc()["phase"], 0),
			column("Claim", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["claimRef"], 0),
			column("StorageClass", "string", "StorageClass of the pv", 0),
			column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv", 0),
			column("Reason", "string", corev1.PersistentVolumeStatus{}.SwaggerDoc()["reason"], 0),
			ageColumn(),
			column("VolumeMode", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["volumeMode"], 1),
		},
		Row: func(obj runtime.Object) []interface{} { return persistentVolumeRow(obj.(*corev1.PersistentVolume)) },
	}
}

// defaultPersistentVolume is SetObjectDefaults_PersistentVolume: Pending,
// Retain, Filesystem, rounded capacity and the volume sources' defaults.
func defaultPersistentVolume(pv *corev1.PersistentVolume) {
	if pv.Status.Phase == "" {
		pv.Status.Phase = corev1.VolumePending
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == "" {
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	}
	if pv.Spec.VolumeMode == nil {
		pv.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
	}
	roundResourceList(pv.Spec.Capacity)
	src := &pv.Spec.PersistentVolumeSource
	if src.HostPath != nil && src.HostPath.Type == nil {
		src.HostPath.Type = ptr.To(corev1.HostPathUnset)
	}
	if src.ISCSI != nil && src.ISCSI.ISCSIInterface == "" {
		src.ISCSI.ISCSIInterface = "default"
	}
	if rbd := src.RBD; rbd != nil {
		if rbd.RBDPool == "" {
			rbd.RBDPool = "rbd"
		}
		if rbd.RadosUser == "" {
			rbd.RadosUser = "admin"
		}
		if rbd.Keyring == "" {
			rbd.Keyring = "/etc/ceph/keyring"
		}
	}
	if az := src.AzureDisk; az != nil {
		if az.CachingMode == nil {
			az.CachingMode = ptr.To(corev1.AzureDataDiskCachingReadWrite)
		}
		if az.Kind == nil {
			az.Kind = ptr.To(corev1.AzureSharedBlobDisk)
		}
		if az.FSType == nil {
			az.FSType = ptr.To("ext4")
		}
		if az.ReadOnly == nil {
			az.ReadOnly = ptr.To(false)
		}
	}
	if sio := src.ScaleIO; sio != nil {
		if sio.StorageMode == "" {
			sio.StorageMode = "ThinProvisioned"
		}
		if sio.FSType == "" {
			sio.FSType = "xfs"
		}
	}
}

// preparePersistentVolumeForStatusUpdate keeps the spec and stamps the
// phase transition time when the phase changes and the writer did not set
// a new time itself.
func preparePersistentVolumeForStatusUpdate(pv, old *corev1.PersistentVolume, now time.Time) {
	pv.Spec = old.Spec
	pv.Generation = old.Generation
	switch {
	case pv.Status.Phase == old.Status.Phase && pv.Status.LastPhaseTransitionTime == nil:
		pv.Status.LastPhaseTransitionTime = old.Status.LastPhaseTransitionTime
	case pv.Status.Phase != old.Status.Phase &&
		(pv.Status.LastPhaseTransitionTime == nil || pv.Status.LastPhaseTransitionTime.Equal(old.Status.LastPhaseTransitionTime)):
		t := metav1.NewTime(now.Truncate(time.Second))
		pv.Status.LastPhaseTransitionTime = &t
	}
}

// validatePersistentVolume is ValidatePersistentVolumeSpec for a
// standalone (not inline) volume.
func validatePersistentVolume(pv *corev1.PersistentVolume) field.ErrorList {
	spec := &pv.Spec
	fldPath := field.NewPath("spec")
	allErrs := validatePVAccessModes(spec.AccessModes, fldPath.Child("accessModes"), "")

	capPath := fldPath.Child("capacity")
	if len(spec.Capacity) == 0 {
		allErrs = append(allErrs, field.Required(capPath, ""))
	}
	if _, ok := spec.Capacity[corev1.ResourceStorage]; !ok || len(spec.Capacity) > 1 {
		allErrs = append(allErrs, field.NotSupported(capPath, spec.Capacity, []corev1.ResourceName{corev1.ResourceStorage}))
	}
	for _, name := range sortedResourceNames(spec.Capacity) {
		q := spec.Capacity[name]
		if q.Sign() < 0 {
			allErrs = append(allErrs, field.Invalid(capPath.Key(string(name)), q.Value(), "must be a valid resource quantity"))
		}
		allErrs = append(allErrs, validatePVPositiveQuantity(q, capPath.Key(string(name)))...)
	}

	if p := spec.PersistentVolumeReclaimPolicy; p != "" && !pvReclaimPolicies.Has(p) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("persistentVolumeReclaimPolicy"), p, sets.List(pvReclaimPolicies)))
	}

	hasNodeAffinity := false
	if na := spec.NodeAffinity; na != nil {
		hasNodeAffinity = true
		if na.Required == nil {
			allErrs = append(allErrs, field.Required(fldPath.Child("nodeAffinity", "required"), "must specify required node constraints"))
		} else {
			allErrs = append(allErrs, validatePVNodeSelector(na.Required, fldPath.Child("nodeAffinity", "required"))...)
		}
	}

	allErrs = append(allErrs, validatePersistentVolumeSource(&spec.PersistentVolumeSource, hasNodeAffinity, fldPath)...)

	if spec.HostPath != nil && path.Clean(spec.HostPath.Path) == "/" && spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRecycle {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("persistentVolumeReclaimPolicy"), "may not be 'recycle' for a hostPath mount of '/'"))
	}
	if spec.StorageClassName != "" {
		allErrs = append(allErrs, validateStorageClassName(spec.StorageClassName, fldPath.Child("storageClassName"))...)
	}
	if m := spec.VolumeMode; m != nil && !pvVolumeModes.Has(*m) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("volumeMode"), *m, sets.List(pvVolumeModes)))
	}
	if vac := spec.VolumeAttributesClassName; vac != nil {
		if *vac == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("volumeAttributesClassName"), "an empty string is disallowed"))
		} else {
			allErrs = append(allErrs, validateStorageClassName(*vac, fldPath.Child("volumeAttributesClassName"))...)
		}
		if spec.CSI == nil {
			allErrs = append(allErrs, field.Required(fldPath.Child("csi"), "has to be specified when using volumeAttributesClassName"))
		}
	}
	return allErrs
}

// pvSource is one possible volume source of a PersistentVolume, in the
// order Kubernetes checks them.
type pvSource struct {
	name  string
	set   bool
	check func(*field.Path) field.ErrorList
}

// validatePersistentVolumeSource: exactly one source, and the sources orch
// users actually use (hostPath, local, nfs, csi) are checked in depth;
// cloud sources only count.
func validatePersistentVolumeSource(src *corev1.PersistentVolumeSource, hasNodeAffinity bool, fldPath *field.Path) field.ErrorList {
	sources := []pvSource{
		{name: "hostPath", set: src.HostPath != nil, check: func(p *field.Path) field.ErrorList { return validatePVHostPath(src.HostPath, p) }},
		{name: "gcePersistentDisk", set: src.GCEPersistentDisk != nil},
		{name: "awsElasticBlockStore", set: src.AWSElasticBlockStore != nil},
		{name: "glusterfs", set: src.Glusterfs != nil},
		{name: "flocker", set: src.Flocker != nil},
		{name: "nfs", set: src.NFS != nil, check: func(p *field.Path) field.ErrorList { return validatePVNFS(src.NFS, p) }},
		{name: "rbd", set: src.RBD != nil},
		{name: "quobyte", set: src.Quobyte != nil},
		{name: "cephFS", set: src.CephFS != nil},
		{name: "iscsi", set: src.ISCSI != nil},
		{name: "cinder", set: src.Cinder != nil},
		{name: "fc", set: src.FC != nil},
		{name: "flexVolume", set: src.FlexVolume != nil},
		{name: "azureFile", set: src.AzureFile != nil},
		{name: "vsphereVolume", set: src.VsphereVolume != nil},
		{name: "photonPersistentDisk", set: src.PhotonPersistentDisk != nil},
		{name: "portworxVolume", set: src.PortworxVolume != nil},
		{name: "azureDisk", set: src.AzureDisk != nil},
		{name: "scaleIO", set: src.ScaleIO != nil},
		{name: "local", set: src.Local != nil, check: func(p *field.Path) field.ErrorList {
			errs := validatePVLocal(src.Local, p)
			if !hasNodeAffinity {
				errs = append(errs, field.Required(fldPath.Child("nodeAffinity"), "Local volume requires node affinity"))
			}
			return errs
		}},
		{name: "storageos", set: src.StorageOS != nil},
		{name: "csi", set: src.CSI != nil, check: func(p *field.Path) field.ErrorList { return validatePVCSI(src.CSI, p) }},
	}
	var allErrs field.ErrorList
	n := 0
	for _, s := range sources {
		if !s.set {
			continue
		}
		// Kubernetes never counted flexVolume against the others.
		if n > 0 && s.name != "flexVolume" {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(s.name), "may not specify more than 1 volume type"))
			continue
		}
		n++
		if s.check != nil {
			allErrs = append(allErrs, s.check(fldPath.Child(s.name))...)
		}
	}
	if n == 0 {
		allErrs = append(allErrs, field.Required(fldPath, "must specify a volume type"))
	}
	return allErrs
}

func validatePVHostPath(hp *corev1.HostPathVolumeSource, fldPath *field.Path) field.ErrorList {
	if hp.Path == "" {
		return field.ErrorList{field.Required(fldPath.Child("path"), "")}
	}
	allErrs := validatePVNoBacksteps(hp.Path, fldPath.Child("path"))
	if hp.Type != nil && !pvHostPathTypes.Has(*hp.Type) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("type"), *hp.Type, sets.List(pvHostPathTypes)))
	}
	return allErrs
}

func validatePVLocal(l *corev1.LocalVolumeSource, fldPath *field.Path) field.ErrorList {
	if l.Path == "" {
		return field.ErrorList{field.Required(fldPath.Child("path"), "")}
	}
	return validatePVNoBacksteps(l.Path, fldPath.Child("path"))
}

func validatePVNFS(nfs *corev1.NFSVolumeSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if nfs.Server == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("server"), ""))
	}
	if nfs.Path == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("path"), ""))
	}
	if !path.IsAbs(nfs.Path) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("path"), nfs.Path, "must be an absolute path"))
	}
	return allErrs
}

func validatePVCSI(csi *corev1.CSIPersistentVolumeSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	driverPath := fldPath.Child("driver")
	if csi.Driver == "" {
		allErrs = append(allErrs, field.Required(driverPath, ""))
	}
	if len(csi.Driver) > 63 {
		allErrs = append(allErrs, field.TooLong(driverPath, "", 63))
	}
	for _, msg := range validation.IsDNS1123Subdomain(strings.ToLower(csi.Driver)) {
		allErrs = append(allErrs, field.Invalid(driverPath, csi.Driver, msg))
	}
	if csi.VolumeHandle == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("volumeHandle"), ""))
	}
	for _, ref := range []struct {
		name string
		ref  *corev1.SecretReference
	}{
		{"controllerPublishSecretRef", csi.ControllerPublishSecretRef},
		{"controllerExpandSecretRef", csi.ControllerExpandSecretRef},
		{"nodePublishSecretRef", csi.NodePublishSecretRef},
		{"nodeExpandSecretRef", csi.NodeExpandSecretRef},
	} {
		if ref.ref == nil {
			continue
		}
		p := fldPath.Child(ref.name)
		if ref.ref.Name == "" {
			allErrs = append(allErrs, field.Required(p.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(ref.ref.Name) {
				allErrs = append(allErrs, field.Invalid(p.Child("name"), ref.ref.Name, msg))
			}
		}
		if ref.ref.Namespace == "" {
			allErrs = append(allErrs, field.Required(p.Child("namespace"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Label(ref.ref.Namespace) {
				allErrs = append(allErrs, field.Invalid(p.Child("namespace"), ref.ref.Namespace, msg))
			}
		}
	}
	return allErrs
}

// validatePVNoBacksteps refuses ".." path elements (validatePathNoBacksteps).
func validatePVNoBacksteps(p string, fldPath *field.Path) field.ErrorList {
	for _, part := range strings.Split(strings.ReplaceAll(p, "\\", "/"), "/") {
		if part == ".." {
			return field.ErrorList{field.Invalid(fldPath, p, "must not contain '..'")}
		}
	}
	return nil
}

// validatePVNodeSelector is ValidateNodeSelector for a volume's
// required node affinity.
func validatePVNodeSelector(sel *corev1.NodeSelector, fldPath *field.Path) field.ErrorList {
	termsPath := fldPath.Child("nodeSelectorTerms")
	if len(sel.NodeSelectorTerms) == 0 {
		return field.ErrorList{field.Required(termsPath, "must have at least one node selector term")}
	}
	var allErrs field.ErrorList
	for i, term := range sel.NodeSelectorTerms {
		termPath := termsPath.Index(i)
		for j, req := range term.MatchExpressions {
			p := termPath.Child("matchExpressions").Index(j)
			switch req.Operator {
			case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
				if len(req.Values) == 0 {
					allErrs = append(allErrs, field.Required(p.Child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
				}
			case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
				if len(req.Values) > 0 {
					allErrs = append(allErrs, field.Forbidden(p.Child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
				}
			case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
				if len(req.Values) != 1 {
					allErrs = append(allErrs, field.Required(p.Child("values"), "must be specified single value when `operator` is 'Lt' or 'Gt'"))
				}
			default:
				allErrs = append(allErrs, field.Invalid(p.Child("operator"), req.Operator, "not a valid selector operator"))
			}
			allErrs = append(allErrs, metav1validation.ValidateLabelName(req.Key, p.Child("key"))...)
			for k, v := range req.Values {
				for _, msg := range validation.IsValidLabelValue(v) {
					allErrs = append(allErrs, field.Invalid(p.Child("values").Index(k), v, msg))
				}
			}
		}
		for j, req := range term.MatchFields {
			p := termPath.Child("matchFields").Index(j)
			switch req.Operator {
			case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
				if len(req.Values) != 1 {
					allErrs = append(allErrs, field.Required(p.Child("values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
				}
			default:
				allErrs = append(allErrs, field.Invalid(p.Child("operator"), req.Operator, "not a valid selector operator"))
			}
			if req.Key != metav1.ObjectNameField {
				allErrs = append(allErrs, field.NotSupported(p.Child("key"), req.Key, []string{metav1.ObjectNameField}))
			}
		}
	}
	return allErrs
}

// validatePersistentVolumeUpdate: the volume source and mode never change;
// node affinity may be added but not changed; a volume attributes class
// may not be removed.
func validatePersistentVolumeUpdate(pv, old *corev1.PersistentVolume) field.ErrorList {
	var allErrs field.ErrorList
	newSrc := pv.Spec.PersistentVolumeSource
	// A CSI volume may gain a controllerExpandSecretRef (for resizing).
	if old.Spec.CSI != nil && old.Spec.CSI.ControllerExpandSecretRef == nil && newSrc.CSI != nil && newSrc.CSI.ControllerExpandSecretRef != nil {
		csi := *newSrc.CSI
		csi.ControllerExpandSecretRef = nil
		newSrc.CSI = &csi
	}
	if !apiequality.Semantic.DeepEqual(newSrc, old.Spec.PersistentVolumeSource) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "persistentvolumesource"),
			"spec.persistentvolumesource is immutable after creation\n"+diff.Diff(old.Spec.PersistentVolumeSource, newSrc)))
	}
	// Kubernetes reports volumeMode at the top-level path.
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(pv.Spec.VolumeMode, old.Spec.VolumeMode, field.NewPath("volumeMode"))...)
	if old.Spec.NodeAffinity != nil && !apiequality.Semantic.DeepEqual(pv.Spec.NodeAffinity, old.Spec.NodeAffinity) {
		allErrs = append(allErrs, field.Invalid(field.NewPath("nodeAffinity"), pv.Spec.NodeAffinity, "field is immutable"))
	}
	if old.Spec.VolumeAttributesClassName != nil && pv.Spec.VolumeAttributesClassName == nil {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "volumeAttributesClassName"), "update from non-nil value to nil is forbidden"))
	}
	return allErrs
}

func persistentVolumeRow(pv *corev1.PersistentVolume) []interface{} {
	claim := ""
	if ref := pv.Spec.ClaimRef; ref != nil {
		claim = ref.Namespace + "/" + ref.Name
	}
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	phase := string(pv.Status.Phase)
	if pv.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	return []interface{}{
		pv.Name, size.String(), pvAccessModesString(pv.Spec.AccessModes),
		string(pv.Spec.PersistentVolumeReclaimPolicy), phase, claim,
		persistentVolumeClass(pv), pvUnsetOr(pv.Spec.VolumeAttributesClassName),
		pv.Status.Reason, translateTimestampSince(pv.CreationTimestamp),
		pvVolumeModeCell(pv.Spec.VolumeMode),
	}
}

func persistentVolumeClaimsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "persistentvolumeclaims",
		Kind:         "PersistentVolumeClaim",
		SingularName: "persistentvolumeclaim",
		Namespaced:   true,
		ShortNames:   []string{"pvc"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &corev1.PersistentVolumeClaim{} },
		NewList:      func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
		Default:      func(obj runtime.Object) { defaultPersistentVolumeClaim(obj.(*corev1.PersistentVolumeClaim)) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = old.(*corev1.PersistentVolumeClaim).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			pvc, oldPVC := obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim)
			pvc.Spec = oldPVC.Spec
			pvc.Generation = oldPVC.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePersistentVolumeClaim(obj.(*corev1.PersistentVolumeClaim))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePersistentVolumeClaimUpdate(obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Status", "string", corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["phase"], 0),
			column("Volume", "string", corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeName"], 0),
			column("Capacity", "string", corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["capacity"], 0),
			column("Access Modes", "string", corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["accessModes"], 0),
			column("StorageClass", "string", "StorageClass of the pvc", 0),
			column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc", 0),
			ageColumn(),
			column("VolumeMode", "string", corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeMode"], 1),
		},
		Row: func(obj runtime.Object) []interface{} {
			return persistentVolumeClaimRow(obj.(*corev1.PersistentVolumeClaim))
		},
	}
}

// defaultPersistentVolumeClaim is SetObjectDefaults_PersistentVolumeClaim.
func defaultPersistentVolumeClaim(pvc *corev1.PersistentVolumeClaim) {
	defaultPVCSpec(&pvc.Spec)
	if pvc.Status.Phase == "" {
		pvc.Status.Phase = corev1.ClaimPending
	}
	roundResourceList(pvc.Status.Capacity)
	roundResourceList(pvc.Status.AllocatedResources)
}

// validatePersistentVolumeClaim is ValidatePersistentVolumeClaimSpec.
func validatePersistentVolumeClaim(pvc *corev1.PersistentVolumeClaim) field.ErrorList {
	spec := &pvc.Spec
	fldPath := field.NewPath("spec")
	allErrs := validatePVAccessModes(spec.AccessModes, fldPath.Child("accessModes"), "at least 1 access mode is required")
	if spec.Selector != nil {
		allErrs = append(allErrs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, fldPath.Child("selector"))...)
	}

	// Kubernetes reports the missing request at spec.resources[storage].
	storagePath := fldPath.Child("resources").Key(string(corev1.ResourceStorage))
	if q, ok := spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		allErrs = append(allErrs, field.Required(storagePath, ""))
	} else {
		allErrs = append(allErrs, validatePVPositiveQuantity(q, storagePath)...)
	}

	if sc := spec.StorageClassName; sc != nil && *sc != "" {
		allErrs = append(allErrs, validateStorageClassName(*sc, fldPath.Child("storageClassName"))...)
	}
	if m := spec.VolumeMode; m != nil && !pvVolumeModes.Has(*m) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("volumeMode"), *m, sets.List(pvVolumeModes)))
	}
	if ds := spec.DataSource; ds != nil {
		allErrs = append(allErrs, validatePVCDataSource(ds.Name, ds.Kind, ds.APIGroup, fldPath.Child("dataSource"))...)
	}
	if ref := spec.DataSourceRef; ref != nil {
		refPath := fldPath.Child("dataSourceRef")
		allErrs = append(allErrs, validatePVCDataSource(ref.Name, ref.Kind, ref.APIGroup, refPath)...)
		if ns := ref.Namespace; ns != nil && *ns != "" {
			for _, msg := range apivalidation.ValidateNamespaceName(*ns, false) {
				allErrs = append(allErrs, field.Invalid(refPath.Child("namespace"), *ns, msg))
			}
		}
	}
	if ref := spec.DataSourceRef; ref != nil && ref.Namespace != nil && *ref.Namespace != "" {
		if spec.DataSource != nil {
			allErrs = append(allErrs, field.Invalid(fldPath, fldPath.Child("dataSource"), "may not be specified when dataSourceRef.namespace is specified"))
		}
	} else if ds := spec.DataSource; ds != nil && ref != nil {
		if !apiequality.Semantic.DeepEqual(ds.APIGroup, ref.APIGroup) || ds.Kind != ref.Kind || ds.Name != ref.Name {
			allErrs = append(allErrs, field.Invalid(fldPath, fldPath.Child("dataSource"), "must match dataSourceRef"))
		}
	}
	if vac := spec.VolumeAttributesClassName; vac != nil && *vac != "" {
		allErrs = append(allErrs, validateStorageClassName(*vac, fldPath.Child("volumeAttributesClassName"))...)
	}
	// The status is empty on create and the old one on spec updates, so
	// this checks what status writers (the volume controllers) report.
	capPath := field.NewPath("status", "capacity")
	for _, name := range sortedResourceNames(pvc.Status.Capacity) {
		q := pvc.Status.Capacity[name]
		p := capPath.Key(string(name))
		allErrs = append(allErrs, validatePVCResourceKey(string(name), p)...)
		if q.Sign() < 0 {
			allErrs = append(allErrs, field.Invalid(p, q.Value(), "must be a valid resource quantity"))
		}
	}
	return allErrs
}

// validatePVCResourceKey is validatePersistentVolumeClaimResourceKey: a
// qualified name, and "storage" if it is a native resource.
func validatePVCResourceKey(key string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range validation.IsQualifiedName(key) {
		allErrs = append(allErrs, field.Invalid(fldPath, key, msg))
	}
	if len(allErrs) > 0 {
		return allErrs
	}
	if quotaIsNativeResource(corev1.ResourceName(key)) && key != string(corev1.ResourceStorage) {
		allErrs = append(allErrs, field.NotSupported(fldPath, key, []corev1.ResourceName{corev1.ResourceStorage}))
	}
	return allErrs
}

func validatePVCDataSource(name, kind string, apiGroup *string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), ""))
	}
	if kind == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("kind"), ""))
	}
	group := ptr.Deref(apiGroup, "")
	if group == "" && kind != "PersistentVolumeClaim" {
		allErrs = append(allErrs, field.Invalid(fldPath, kind, "must be 'PersistentVolumeClaim' when referencing the default apiGroup"))
	}
	if group != "" {
		for _, msg := range validation.IsDNS1123Subdomain(group) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("apiGroup"), group, msg))
		}
	}
	return allErrs
}

// validatePersistentVolumeClaimUpdate is ValidatePersistentVolumeClaimUpdate:
// the spec is frozen except that the volume name may be set once, a bound
// claim may grow its storage request and change its volume attributes
// class, and a storage class may be set where none (nor the beta
// annotation) was.
func validatePersistentVolumeClaimUpdate(pvc, old *corev1.PersistentVolumeClaim) field.ErrorList {
	var allErrs field.ErrorList
	newSpec, oldSpec := pvc.Spec.DeepCopy(), old.Spec.DeepCopy()
	if oldSpec.VolumeName == "" {
		oldSpec.VolumeName = newSpec.VolumeName
	}

	oldClass, oldHasAnnotation := old.Annotations[corev1.BetaStorageClassAnnotation]
	newClassAnnotation, newHasAnnotation := pvc.Annotations[corev1.BetaStorageClassAnnotation]
	switch {
	case oldHasAnnotation && oldSpec.StorageClassName == nil && newSpec.StorageClassName != nil &&
		*newSpec.StorageClassName == oldClass && (!newHasAnnotation || newClassAnnotation == oldClass):
		// Moving from the beta annotation to the field.
		newSpec.StorageClassName = nil
	default:
		allErrs = append(allErrs, validatePVCImmutableAnnotation(pvc.Annotations, old.Annotations, corev1.BetaStorageClassAnnotation)...)
		if newSpec.StorageClassName != nil && oldSpec.StorageClassName == nil && (!oldHasAnnotation || *newSpec.StorageClassName == oldClass) {
			// A claim without a class may be given one (default class admission).
			newSpec.StorageClassName = nil
		}
	}

	if pvc.Status.Phase == corev1.ClaimBound {
		if newSpec.Resources.Requests != nil {
			if q, ok := oldSpec.Resources.Requests[corev1.ResourceStorage]; ok {
				newSpec.Resources.Requests[corev1.ResourceStorage] = q
			} else {
				delete(newSpec.Resources.Requests, corev1.ResourceStorage)
			}
		}
		if newSpec.VolumeAttributesClassName != nil {
			newSpec.VolumeAttributesClassName = oldSpec.VolumeAttributesClassName
		}
	}
	if !apiequality.Semantic.DeepEqual(*newSpec, *oldSpec) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec"),
			"spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"+diff.Diff(*oldSpec, *newSpec)))
	}

	oldSize := old.Spec.Resources.Requests[corev1.ResourceStorage]
	newSize := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	// RecoverVolumeExpansionFailure (GA): a request may shrink back, but
	// not to or below the capacity already provisioned.
	if newSize.Cmp(oldSize) < 0 {
		if capacity := old.Status.Capacity[corev1.ResourceStorage]; newSize.Cmp(capacity) <= 0 {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "resources", "requests", "storage"), "field can not be less than status.capacity"))
		}
	}
	// Kubernetes reports volumeMode at the top-level path.
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(pvc.Spec.VolumeMode, old.Spec.VolumeMode, field.NewPath("volumeMode"))...)
	if old.Spec.VolumeAttributesClassName != nil {
		vacPath := field.NewPath("spec", "volumeAttributesClassName")
		if pvc.Spec.VolumeAttributesClassName == nil {
			allErrs = append(allErrs, field.Forbidden(vacPath, "update from non-nil value to nil is forbidden"))
		} else if *pvc.Spec.VolumeAttributesClassName == "" {
			allErrs = append(allErrs, field.Forbidden(vacPath, "update from non-nil value to an empty string is forbidden"))
		}
	}
	return allErrs
}

// validatePVCImmutableAnnotation is ValidateImmutableAnnotation.
func validatePVCImmutableAnnotation(annotations, oldAnnotations map[string]string, key string) field.ErrorList {
	if annotations[key] != oldAnnotations[key] {
		return field.ErrorList{field.Invalid(field.NewPath("metadata", "annotations").Key(key), annotations[key], "field is immutable")}
	}
	return nil
}

func persistentVolumeClaimRow(pvc *corev1.PersistentVolumeClaim) []interface{} {
	phase := string(pvc.Status.Phase)
	if pvc.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	capacity, modes := "", ""
	// Capacity and modes are the bound volume's, shown once it is bound.
	if pvc.Spec.VolumeName != "" {
		modes = pvAccessModesString(pvc.Status.AccessModes)
		q := pvc.Status.Capacity[corev1.ResourceStorage]
		capacity = q.String()
	}
	return []interface{}{
		pvc.Name, phase, pvc.Spec.VolumeName, capacity, modes,
		persistentVolumeClaimClass(pvc), pvUnsetOr(pvc.Spec.VolumeAttributesClassName),
		translateTimestampSince(pvc.CreationTimestamp), pvVolumeModeCell(pvc.Spec.VolumeMode),
	}
}

// validatePVAccessModes: at least one, all known, and ReadWriteOncePod alone.
func validatePVAccessModes(modes []corev1.PersistentVolumeAccessMode, fldPath *field.Path, requiredMsg string) field.ErrorList {
	var allErrs field.ErrorList
	if len(modes) == 0 {
		allErrs = append(allErrs, field.Required(fldPath, requiredMsg))
	}
	rwop, others := false, false
	for _, m := range modes {
		switch {
		case !pvAccessModes.Has(m):
			allErrs = append(allErrs, field.NotSupported(fldPath, m, sets.List(pvAccessModes)))
		case m == corev1.ReadWriteOncePod:
			rwop = true
		default:
			others = true
		}
	}
	if rwop && others {
		allErrs = append(allErrs, field.Forbidden(fldPath, "may not use ReadWriteOncePod with other access modes"))
	}
	return allErrs
}

// validatePVPositiveQuantity is ValidatePositiveQuantityValue.
func validatePVPositiveQuantity(q resource.Quantity, fldPath *field.Path) field.ErrorList {
	if q.Sign() <= 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), "must be greater than zero")}
	}
	return nil
}

// validateStorageClassName is ValidateClassName (storage and volume attributes
// class names are DNS subdomains).
func validateStorageClassName(name string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

// pvAccessModesString is GetAccessModesAsString: RWO,ROX,RWX,RWOP in that
// order, each once.
func pvAccessModesString(modes []corev1.PersistentVolumeAccessMode) string {
	has := sets.New(modes...)
	var out []string
	for _, m := range []struct {
		mode  corev1.PersistentVolumeAccessMode
		short string
	}{
		{corev1.ReadWriteOnce, "RWO"},
		{corev1.ReadOnlyMany, "ROX"},
		{corev1.ReadWriteMany, "RWX"},
		{corev1.ReadWriteOncePod, "RWOP"},
	} {
		if has.Has(m.mode) {
			out = append(out, m.short)
		}
	}
	return strings.Join(out, ",")
}

// persistentVolumeClass prefers the beta annotation, as GetPersistentVolumeClass.
func persistentVolumeClass(pv *corev1.PersistentVolume) string {
	if class, ok := pv.Annotations[corev1.BetaStorageClassAnnotation]; ok {
		return class
	}
	return pv.Spec.StorageClassName
}

// persistentVolumeClaimClass prefers the beta annotation, as
// GetPersistentVolumeClaimClass.
func persistentVolumeClaimClass(pvc *corev1.PersistentVolumeClaim) string {
	if class, ok := pvc.Annotations[corev1.BetaStorageClassAnnotation]; ok {
		return class
	}
	return ptr.Deref(pvc.Spec.StorageClassName, "")
}

func pvUnsetOr(s *string) string {
	if s == nil {
		return pvUnsetCell
	}
	return *s
}

func pvVolumeModeCell(m *corev1.PersistentVolumeMode) string {
	if m == nil {
		return pvUnsetCell
	}
	return string(*m)
}
