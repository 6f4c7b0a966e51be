package registry

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// storage.k8s.io/v1: storageclasses, csidrivers, csinodes and
// volumeattachments (pkg/registry/storage, pkg/apis/storage/{v1,
// validation}). orch has no volume plugins of its own; provisioners such
// as local-path and CSI drivers installed by users read and write these.

// Annotations marking the default StorageClass (the beta one is still
// honoured by Kubernetes).
const (
	storageClassDefaultAnnotation     = "storageclass.kubernetes.io/is-default-class"
	storageClassBetaDefaultAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// Limits from Kubernetes' storage validation.
const (
	maxProvisionerParameters      = 512
	maxProvisionerParameterSize   = 256 * (1 << 10)
	maxCSIDriverNameLen           = 63
	maxCSINodeIDLen               = 192
	maxAttachedVolumeMetadataSize = 256 * (1 << 10)
	maxVolumeErrorMessageSize     = 1024
	minTokenExpirationSeconds     = 10 * 60
	maxTokenExpirationSeconds     = 1 << 32
)

var (
	storageClassReclaimPolicies = sets.New(corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain)
	volumeBindingModes          = sets.New(storagev1.VolumeBindingImmediate, storagev1.VolumeBindingWaitForFirstConsumer)
	volumeLifecycleModes        = sets.New(storagev1.VolumeLifecyclePersistent, storagev1.VolumeLifecycleEphemeral)
	fsGroupPolicies             = sets.New(storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy, storagev1.FileFSGroupPolicy,
		storagev1.NoneFSGroupPolicy)
)

var storageGV = storagev1.SchemeGroupVersion

func storageResources() []*Resource {
	return []*Resource{storageClassesResource(), csiDriversResource(), csiNodesResource(), volumeAttachmentsResource()}
}

func storageClassesResource() *Resource {
	doc := storagev1.StorageClass{}.SwaggerDoc()
	return &Resource{
		GroupVersion: storageGV,
		Name:         "storageclasses",
		Kind:         "StorageClass",
		SingularName: "storageclass",
		ShortNames:   []string{"sc"},
		New:          func() runtime.Object { return &storagev1.StorageClass{} },
		NewList:      func() runtime.Object { return &storagev1.StorageClassList{} },
		Default:      func(obj runtime.Object) { defaultStorageClass(obj.(*storagev1.StorageClass)) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateStorageClass(obj.(*storagev1.StorageClass))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateStorageClassUpdate(obj.(*storagev1.StorageClass), old.(*storagev1.StorageClass))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Provisioner", "string", doc["provisioner"], 0),
			column("ReclaimPolicy", "string", doc["reclaimPolicy"], 0),
			column("VolumeBindingMode", "string", doc["volumeBindingMode"], 0),
			column("AllowVolumeExpansion", "string", doc["allowVolumeExpansion"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} { return storageClassRow(obj.(*storagev1.StorageClass)) },
	}
}

// defaultStorageClass is SetDefaults_StorageClass.
func defaultStorageClass(sc *storagev1.StorageClass) {
	if sc.ReclaimPolicy == nil {
		p := corev1.PersistentVolumeReclaimDelete
		sc.ReclaimPolicy = &p
	}
	if sc.VolumeBindingMode == nil {
		m := storagev1.VolumeBindingImmediate
		sc.VolumeBindingMode = &m
	}
}

func validateStorageClass(sc *storagev1.StorageClass) field.ErrorList {
	var allErrs field.ErrorList
	provPath := field.NewPath("provisioner")
	if sc.Provisioner == "" {
		allErrs = append(allErrs, field.Required(provPath, ""))
	} else {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(sc.Provisioner)) {
			allErrs = append(allErrs, field.Invalid(provPath, sc.Provisioner, msg))
		}
	}
	allErrs = append(allErrs, validateProvisionerParameters(sc.Parameters, field.NewPath("parameters"))...)
	if sc.ReclaimPolicy != nil && *sc.ReclaimPolicy != "" && !storageClassReclaimPolicies.Has(*sc.ReclaimPolicy) {
		allErrs = append(allErrs, field.NotSupported(field.NewPath("reclaimPolicy"), *sc.ReclaimPolicy, sets.List(storageClassReclaimPolicies)))
	}
	modePath := field.NewPath("volumeBindingMode")
	if sc.VolumeBindingMode == nil {
		allErrs = append(allErrs, field.Required(modePath, ""))
	} else if !volumeBindingModes.Has(*sc.VolumeBindingMode) {
		allErrs = append(allErrs, field.NotSupported(modePath, *sc.VolumeBindingMode, sets.List(volumeBindingModes)))
	}
	allErrs = append(allErrs, validateAllowedTopologies(sc.AllowedTopologies, field.NewPath("allowedTopologies"))...)
	return allErrs
}

func validateProvisionerParameters(params map[string]string, fldPath *field.Path) field.ErrorList {
	if len(params) > maxProvisionerParameters {
		return field.ErrorList{field.TooLong(fldPath, "Provisioner Parameters exceeded max allowed", maxProvisionerParameters)}
	}
	var allErrs field.ErrorList
	size := 0
	for _, k := range configKeys(params) {
		if k == "" {
			allErrs = append(allErrs, field.Invalid(fldPath, k, "field can not be empty."))
		}
		size += len(k) + len(params[k])
	}
	if size > maxProvisionerParameterSize {
		allErrs = append(allErrs, field.TooLong(fldPath, "", maxProvisionerParameterSize))
	}
	return allErrs
}

// validateAllowedTopologies: each term is a non-empty set of label
// requirements with distinct keys and at least one value each.
func validateAllowedTopologies(terms []corev1.TopologySelectorTerm, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, term := range terms {
		termPath := fldPath.Index(i)
		exprsPath := termPath.Child("matchLabelExpressions")
		if len(term.MatchLabelExpressions) == 0 {
			allErrs = append(allErrs, field.Required(exprsPath, "must have at least one label selector"))
		}
		keys := sets.New[string]()
		for j, req := range term.MatchLabelExpressions {
			p := exprsPath.Index(j)
			allErrs = append(allErrs, metav1validation.ValidateLabelName(req.Key, p.Child("key"))...)
			if keys.Has(req.Key) {
				allErrs = append(allErrs, field.Duplicate(p.Child("key"), req.Key))
			}
			keys.Insert(req.Key)
			if len(req.Values) == 0 {
				allErrs = append(allErrs, field.Required(p.Child("values"), "must specify as least one value"))
			}
			for k, v := range req.Values {
				for _, msg := range validation.IsValidLabelValue(v) {
					allErrs = append(allErrs, field.Invalid(p.Child("values").Index(k), v, msg))
				}
			}
		}
	}
	return allErrs
}

// validateStorageClassUpdate: volumes already provisioned from a class
// were made with its parameters, so none of what provisioning reads may
// change.
func validateStorageClassUpdate(sc, old *storagev1.StorageClass) field.ErrorList {
	var allErrs field.ErrorList
	if !apiequality.Semantic.DeepEqual(sc.Parameters, old.Parameters) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
	}
	if sc.Provisioner != old.Provisioner {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
	}
	if !apiequality.Semantic.DeepEqual(sc.ReclaimPolicy, old.ReclaimPolicy) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
	}
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(sc.VolumeBindingMode, old.VolumeBindingMode, field.NewPath("volumeBindingMode"))...)
	return allErrs
}

// storageClassRow is printStorageClass.
func storageClassRow(sc *storagev1.StorageClass) []interface{} {
	name := sc.Name
	if sc.Annotations[storageClassDefaultAnnotation] == "true" || sc.Annotations[storageClassBetaDefaultAnnotation] == "true" {
		name += " (default)"
	}
	reclaim := string(corev1.PersistentVolumeReclaimDelete)
	if sc.ReclaimPolicy != nil {
		reclaim = string(*sc.ReclaimPolicy)
	}
	mode := string(storagev1.VolumeBindingImmediate)
	if sc.VolumeBindingMode != nil {
		mode = string(*sc.VolumeBindingMode)
	}
	expansion := false
	if sc.AllowVolumeExpansion != nil {
		expansion = *sc.AllowVolumeExpansion
	}
	return []interface{}{name, sc.Provisioner, reclaim, mode, expansion, translateTimestampSince(sc.CreationTimestamp)}
}

// validateCSIDriverName is ValidateCSIDriverName: a DNS subdomain (any
// case) of at most 63 characters.
func validateCSIDriverName(name string, fldPath *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var allErrs field.ErrorList
	if len(name) > maxCSIDriverNameLen {
		allErrs = append(allErrs, field.TooLong(fldPath, "" /*unused*/, maxCSIDriverNameLen))
	}
	for _, msg := range validation.IsDNS1123Subdomain(strings.ToLower(name)) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

func csiDriversResource() *Resource {
	doc := storagev1.CSIDriverSpec{}.SwaggerDoc()
	return &Resource{
		GroupVersion: storageGV,
		Name:         "csidrivers",
		Kind:         "CSIDriver",
		SingularName: "csidriver",
		New:          func() runtime.Object { return &storagev1.CSIDriver{} },
		NewList:      func() runtime.Object { return &storagev1.CSIDriverList{} },
		NameValidation: func(name string, prefix bool) []string {
			var msgs []string
			for _, e := range validateCSIDriverName(name, field.NewPath("metadata", "name")) {
				msgs = append(msgs, e.Detail)
			}
			return msgs
		},
		Default: func(obj runtime.Object) { defaultCSIDriver(obj.(*storagev1.CSIDriver)) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateCSIDriverSpec(&obj.(*storagev1.CSIDriver).Spec)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			spec, oldSpec := &obj.(*storagev1.CSIDriver).Spec, &old.(*storagev1.CSIDriver).Spec
			specPath := field.NewPath("spec")
			allErrs := apivalidation.ValidateImmutableField(spec.AttachRequired, oldSpec.AttachRequired, specPath.Child("attachRequired"))
			return append(allErrs, apivalidation.ValidateImmutableField(spec.VolumeLifecycleModes, oldSpec.VolumeLifecycleModes,
				specPath.Child("volumeLifecycleModes"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("AttachRequired", "boolean", doc["attachRequired"], 0),
			column("PodInfoOnMount", "boolean", doc["podInfoOnMount"], 0),
			column("StorageCapacity", "boolean", doc["storageCapacity"], 0),
			column("TokenRequests", "string", doc["tokenRequests"], 0),
			column("RequiresRepublish", "boolean", doc["requiresRepublish"], 0),
			column("Modes", "string", doc["volumeLifecycleModes"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} { return csiDriverRow(obj.(*storagev1.CSIDriver)) },
	}
}

// defaultCSIDriver is SetDefaults_CSIDriver.
func defaultCSIDriver(d *storagev1.CSIDriver) {
	setBool := func(p **bool, v bool) {
		if *p == nil {
			*p = &v
		}
	}
	setBool(&d.Spec.AttachRequired, true)
	setBool(&d.Spec.PodInfoOnMount, false)
	setBool(&d.Spec.StorageCapacity, false)
	setBool(&d.Spec.RequiresRepublish, false)
	setBool(&d.Spec.SELinuxMount, false)
	if d.Spec.FSGroupPolicy == nil {
		p := storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy
		d.Spec.FSGroupPolicy = &p
	}
	if len(d.Spec.VolumeLifecycleModes) == 0 {
		d.Spec.VolumeLifecycleModes = []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}
	}
}

func validateCSIDriverSpec(spec *storagev1.CSIDriverSpec) field.ErrorList {
	specPath := field.NewPath("spec")
	var allErrs field.ErrorList
	for _, f := range []struct {
		name string
		v    *bool
	}{
		{"attachRequired", spec.AttachRequired},
		{"podInfoOnMount", spec.PodInfoOnMount},
		{"storageCapacity", spec.StorageCapacity},
		{"requiresRepublish", spec.RequiresRepublish},
	} {
		if f.v == nil {
			allErrs = append(allErrs, field.Required(specPath.Child(f.name), ""))
		}
	}
	if spec.FSGroupPolicy == nil {
		allErrs = append(allErrs, field.Required(specPath.Child("fsGroupPolicy"), ""))
	} else if !fsGroupPolicies.Has(*spec.FSGroupPolicy) {
		allErrs = append(allErrs, field.NotSupported(specPath.Child("fsGroupPolicy"), *spec.FSGroupPolicy, sets.List(fsGroupPolicies)))
	}
	for i, m := range spec.VolumeLifecycleModes {
		if !volumeLifecycleModes.Has(m) {
			allErrs = append(allErrs, field.NotSupported(specPath.Child("volumeLifecycleModes").Index(i), m, sets.List(volumeLifecycleModes)))
		}
	}
	audiences := sets.New[string]()
	for i, tr := range spec.TokenRequests {
		p := specPath.Child("tokenRequests").Index(i)
		if audiences.Has(tr.Audience) {
			allErrs = append(allErrs, field.Duplicate(p.Child("audience"), tr.Audience))
		}
		audiences.Insert(tr.Audience)
		if tr.ExpirationSeconds != nil {
			switch {
			case *tr.ExpirationSeconds < minTokenExpirationSeconds:
				allErrs = append(allErrs, field.Invalid(p.Child("expirationSeconds"), *tr.ExpirationSeconds, "may not specify a duration less than 10 minutes"))
			case *tr.ExpirationSeconds > maxTokenExpirationSeconds:
				allErrs = append(allErrs, field.Invalid(p.Child("expirationSeconds"), *tr.ExpirationSeconds, "may not specify a duration larger than 2^32 seconds"))
			}
		}
	}
	return allErrs
}

// csiDriverRow is printCSIDriver.
func csiDriverRow(d *storagev1.CSIDriver) []interface{} {
	boolOr := func(p *bool, def bool) bool {
		if p == nil {
			return def
		}
		return *p
	}
	modes := make([]string, 0, len(d.Spec.VolumeLifecycleModes))
	for _, m := range d.Spec.VolumeLifecycleModes {
		modes = append(modes, string(m))
	}
	modesCell := strings.Join(modes, ",")
	if modesCell == "" {
		modesCell = "<none>"
	}
	tokens := "<unset>"
	if d.Spec.TokenRequests != nil {
		audiences := make([]string, 0, len(d.Spec.TokenRequests))
		for _, t := range d.Spec.TokenRequests {
			audiences = append(audiences, t.Audience)
		}
		tokens = strings.Join(audiences, ",")
	}
	return []interface{}{d.Name, boolOr(d.Spec.AttachRequired, true), boolOr(d.Spec.PodInfoOnMount, false),
		boolOr(d.Spec.StorageCapacity, false), tokens, boolOr(d.Spec.RequiresRepublish, false), modesCell,
		translateTimestampSince(d.CreationTimestamp)}
}

// csiNodesResource is storage.k8s.io/v1 csinodes; a CSINode is named after
// its Node.
func csiNodesResource() *Resource {
	return &Resource{
		GroupVersion: storageGV,
		Name:         "csinodes",
		Kind:         "CSINode",
		SingularName: "csinode",
		New:          func() runtime.Object { return &storagev1.CSINode{} },
		NewList:      func() runtime.Object { return &storagev1.CSINodeList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateCSINodeDrivers(obj.(*storagev1.CSINode).Spec.Drivers, field.NewPath("spec", "drivers"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateCSINodeUpdate(obj.(*storagev1.CSINode), old.(*storagev1.CSINode))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node", 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			n := obj.(*storagev1.CSINode)
			return []interface{}{n.Name, int64(len(n.Spec.Drivers)), translateTimestampSince(n.CreationTimestamp)}
		},
	}
}

func validateCSINodeDrivers(drivers []storagev1.CSINodeDriver, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	names := sets.New[string]()
	for i, d := range drivers {
		p := fldPath.Index(i)
		allErrs = append(allErrs, validateCSIDriverName(d.Name, p.Child("name"))...)
		if names.Has(d.Name) {
			allErrs = append(allErrs, field.Duplicate(p.Child("name"), d.Name))
		}
		names.Insert(d.Name)
		idPath := p.Child("nodeID")
		if d.NodeID == "" {
			allErrs = append(allErrs, field.Required(idPath, ""))
		} else if len(d.NodeID) > maxCSINodeIDLen {
			allErrs = append(allErrs, field.TooLong(idPath, "" /*unused*/, maxCSINodeIDLen))
		}
		if d.Allocatable != nil && d.Allocatable.Count != nil {
			allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*d.Allocatable.Count), p.Child("allocatable", "count"))...)
		}
		keys := sets.New[string]()
		keysPath := p.Child("topologyKeys")
		for j, key := range d.TopologyKeys {
			if key == "" {
				allErrs = append(allErrs, field.Required(keysPath.Index(j), ""))
				continue
			}
			if keys.Has(key) {
				allErrs = append(allErrs, field.Duplicate(keysPath.Index(j), key))
			}
			keys.Insert(key)
			for _, msg := range validation.IsQualifiedName(key) {
				allErrs = append(allErrs, field.Invalid(keysPath.Index(j), key, msg))
			}
		}
	}
	return allErrs
}

// validateCSINodeUpdate: a driver's node ID and topology keys are fixed
// while it stays registered (the kubelet removes and re-adds a driver to
// change them).
func validateCSINodeUpdate(n, old *storagev1.CSINode) field.ErrorList {
	var allErrs field.ErrorList
	for _, oldDriver := range old.Spec.Drivers {
		for i, d := range n.Spec.Drivers {
			if d.Name != oldDriver.Name {
				continue
			}
			p := field.NewPath("spec", "drivers").Index(i)
			if d.NodeID != oldDriver.NodeID {
				allErrs = append(allErrs, field.Invalid(p.Child("nodeID"), d.NodeID, "field is immutable"))
			}
			if !apiequality.Semantic.DeepEqual(d.TopologyKeys, oldDriver.TopologyKeys) {
				allErrs = append(allErrs, field.Invalid(p.Child("topologyKeys"), d.TopologyKeys, "field is immutable"))
			}
		}
	}
	return allErrs
}

// volumeAttachmentsResource is storage.k8s.io/v1 volumeattachments: the
// attach/detach controller writes the spec, the CSI attacher the status.
func volumeAttachmentsResource() *Resource {
	return &Resource{
		GroupVersion: storageGV,
		Name:         "volumeattachments",
		Kind:         "VolumeAttachment",
		SingularName: "volumeattachment",
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &storagev1.VolumeAttachment{} },
		NewList:      func() runtime.Object { return &storagev1.VolumeAttachmentList{} },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*storagev1.VolumeAttachment).Status = storagev1.VolumeAttachmentStatus{}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*storagev1.VolumeAttachment).Status = old.(*storagev1.VolumeAttachment).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*storagev1.VolumeAttachment).Spec = old.(*storagev1.VolumeAttachment).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateVolumeAttachment(obj.(*storagev1.VolumeAttachment))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			va, oldVA := obj.(*storagev1.VolumeAttachment), old.(*storagev1.VolumeAttachment)
			if !apiequality.Semantic.DeepEqual(va.Spec, oldVA.Spec) {
				return field.ErrorList{field.Invalid(field.NewPath("spec"), va.Spec, "field is immutable")}
			}
			return nil
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			{Name: "Attacher", Type: "string", Format: "name", Description: storagev1.VolumeAttachmentSpec{}.SwaggerDoc()["attacher"]},
			column("PV", "string", storagev1.VolumeAttachmentSource{}.SwaggerDoc()["persistentVolumeName"], 0),
			column("Node", "string", storagev1.VolumeAttachmentSpec{}.SwaggerDoc()["nodeName"], 0),
			column("Attached", "boolean", storagev1.VolumeAttachmentStatus{}.SwaggerDoc()["attached"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			va := obj.(*storagev1.VolumeAttachment)
			pv := ""
			if va.Spec.Source.PersistentVolumeName != nil {
				pv = *va.Spec.Source.PersistentVolumeName
			}
			return []interface{}{va.Name, va.Spec.Attacher, pv, va.Spec.NodeName, va.Status.Attached,
				translateTimestampSince(va.CreationTimestamp)}
		},
	}
}

// validateVolumeAttachment is ValidateVolumeAttachment plus the v1 checks
// (the attacher is a CSI driver name). Inline volume specs get only the
// one-source check: orch attaches no volumes itself.
func validateVolumeAttachment(va *storagev1.VolumeAttachment) field.ErrorList {
	specPath := field.NewPath("spec")
	allErrs := validateCSIDriverName(va.Spec.Attacher, specPath.Child("attacher"))
	srcPath := specPath.Child("source")
	src := va.Spec.Source
	const oneSource = "must specify exactly one of inlineVolumeSpec and persistentVolumeName"
	switch {
	case src.InlineVolumeSpec == nil && src.PersistentVolumeName == nil:
		allErrs = append(allErrs, field.Required(srcPath, oneSource))
	case src.InlineVolumeSpec != nil && src.PersistentVolumeName != nil:
		allErrs = append(allErrs, field.Forbidden(srcPath, oneSource))
	case src.PersistentVolumeName != nil:
		pvPath := srcPath.Child("persistentVolumeName")
		if *src.PersistentVolumeName == "" {
			allErrs = append(allErrs, field.Required(pvPath, "must specify non empty persistentVolumeName"))
		}
		for _, msg := range apivalidation.NameIsDNSSubdomain(*src.PersistentVolumeName, false) {
			allErrs = append(allErrs, field.Invalid(pvPath, *src.PersistentVolumeName, msg))
		}
	}
	nodePath := specPath.Child("nodeName")
	for _, msg := range apivalidation.NameIsDNSSubdomain(va.Spec.NodeName, false) {
		allErrs = append(allErrs, field.Invalid(nodePath, va.Spec.NodeName, msg))
	}

	stPath := field.NewPath("status")
	size := 0
	for k, v := range va.Status.AttachmentMetadata {
		size += len(k) + len(v)
	}
	if size > maxAttachedVolumeMetadataSize {
		allErrs = append(allErrs, field.TooLong(stPath.Child("attachmentMetadata"), "" /*unused*/, maxAttachedVolumeMetadataSize))
	}
	for _, ve := range []struct {
		name string
		err  *storagev1.VolumeError
	}{{"attachError", va.Status.AttachError}, {"detachError", va.Status.DetachError}} {
		if ve.err != nil && len(ve.err.Message) > maxVolumeErrorMessageSize {
			allErrs = append(allErrs, field.TooLong(stPath.Child(ve.name, "message"), "" /*unused*/, maxVolumeErrorMessageSize))
		}
	}
	return allErrs
}
