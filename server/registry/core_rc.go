package registry

import (
	"maps"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// ReplicationControllers and PodTemplates: pkg/registry/core/
// replicationcontroller and podtemplate. The pod template inside both is
// defaulted and validated by the shared pod spec code.

func replicationControllersResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "replicationcontrollers",
		Kind:         "ReplicationController",
		SingularName: "replicationcontroller",
		Namespaced:   true,
		ShortNames:   []string{"rc"},
		Categories:   []string{"all"},
		Subresources: []string{"status", "scale"},
		New:          func() runtime.Object { return &corev1.ReplicationController{} },
		NewList:      func() runtime.Object { return &corev1.ReplicationControllerList{} },
		Default: func(obj runtime.Object) {
			defaultReplicationController(obj.(*corev1.ReplicationController))
		},
		PrepareForCreate: func(obj runtime.Object) {
			rc := obj.(*corev1.ReplicationController)
			rc.Status = corev1.ReplicationControllerStatus{}
			rc.Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			rc, oldRC := obj.(*corev1.ReplicationController), old.(*corev1.ReplicationController)
			rc.Status = oldRC.Status
			bumpGeneration(rc, oldRC, &rc.Spec, &oldRC.Spec)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			rc, oldRC := obj.(*corev1.ReplicationController), old.(*corev1.ReplicationController)
			rc.Spec = oldRC.Spec
			rc.Generation = oldRC.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateReplicationController(obj.(*corev1.ReplicationController))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			{Name: "Desired", Type: "integer", Description: corev1.ReplicationControllerSpec{}.SwaggerDoc()["replicas"]},
			{Name: "Current", Type: "integer", Description: corev1.ReplicationControllerStatus{}.SwaggerDoc()["replicas"]},
			{Name: "Ready", Type: "integer", Description: corev1.ReplicationControllerStatus{}.SwaggerDoc()["readyReplicas"]},
			ageColumn(),
			column("Containers", "string", "Names of each container in the template.", 1),
			column("Images", "string", "Images referenced by each container in the template.", 1),
			column("Selector", "string", corev1.ReplicationControllerSpec{}.SwaggerDoc()["selector"], 1),
		},
		Row: func(obj runtime.Object) []interface{} {
			return replicationControllerRow(obj.(*corev1.ReplicationController))
		},
		Fields: func(obj runtime.Object) fields.Set {
			rc := obj.(*corev1.ReplicationController)
			return fields.Set{"status.replicas": strconv.Itoa(int(rc.Status.Replicas))}
		},
	}
}

// defaultReplicationController is SetDefaults_ReplicationController: an
// empty selector and empty object labels come from the template's labels,
// one replica, and the pod template's own defaults.
func defaultReplicationController(rc *corev1.ReplicationController) {
	if t := rc.Spec.Template; t != nil && t.Labels != nil {
		if len(rc.Spec.Selector) == 0 {
			rc.Spec.Selector = maps.Clone(t.Labels)
		}
		if len(rc.Labels) == 0 {
			rc.Labels = maps.Clone(t.Labels)
		}
	}
	if rc.Spec.Replicas == nil {
		rc.Spec.Replicas = ptr.To[int32](1)
	}
	defaultPodTemplateSpec(rc.Spec.Template)
}

// validateReplicationController is ValidateReplicationControllerSpec and,
// for status writes, ValidateReplicationControllerStatus (the status is
// empty on create and the old one on spec updates).
func validateReplicationController(rc *corev1.ReplicationController) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &rc.Spec
	allErrs := apivalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))
	if labels.Set(spec.Selector).AsSelector().Empty() {
		allErrs = append(allErrs, field.Required(specPath.Child("selector"), ""))
	}
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(ptr.Deref(spec.Replicas, 0)), specPath.Child("replicas"))...)

	tmplPath := specPath.Child("template")
	if t := spec.Template; t == nil {
		allErrs = append(allErrs, field.Required(tmplPath, ""))
	} else {
		if sel := labels.Set(spec.Selector).AsSelector(); !sel.Empty() && !sel.Matches(labels.Set(t.Labels)) {
			allErrs = append(allErrs, field.Invalid(tmplPath.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
		}
		allErrs = append(allErrs, validatePodTemplateSpec(t, tmplPath)...)
		if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			allErrs = append(allErrs, field.NotSupported(tmplPath.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
		}
		if t.Spec.ActiveDeadlineSeconds != nil {
			allErrs = append(allErrs, field.Forbidden(tmplPath.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicationController is not Supported"))
		}
	}
	allErrs = append(allErrs, validateReplicationControllerStatus(&rc.Status, field.NewPath("status"))...)
	return allErrs
}

func validateReplicationControllerStatus(st *corev1.ReplicationControllerStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, f := range []struct {
		name  string
		value int64
	}{
		{"replicas", int64(st.Replicas)},
		{"fullyLabeledReplicas", int64(st.FullyLabeledReplicas)},
		{"readyReplicas", int64(st.ReadyReplicas)},
		{"availableReplicas", int64(st.AvailableReplicas)},
		{"observedGeneration", st.ObservedGeneration},
	} {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(f.value, fldPath.Child(f.name))...)
	}
	const msg = "cannot be greater than status.replicas"
	if st.FullyLabeledReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("fullyLabeledReplicas"), st.FullyLabeledReplicas, msg))
	}
	if st.ReadyReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("readyReplicas"), st.ReadyReplicas, msg))
	}
	if st.AvailableReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("availableReplicas"), st.AvailableReplicas, msg))
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than readyReplicas"))
	}
	return allErrs
}

func replicationControllerRow(rc *corev1.ReplicationController) []interface{} {
	names, images := "", ""
	if rc.Spec.Template != nil {
		names, images = podTemplateContainerCells(rc.Spec.Template.Spec.Containers)
	}
	return []interface{}{
		rc.Name, int64(ptr.Deref(rc.Spec.Replicas, 0)), int64(rc.Status.Replicas), int64(rc.Status.ReadyReplicas),
		translateTimestampSince(rc.CreationTimestamp),
		names, images, formatLabels(rc.Spec.Selector),
	}
}

func podTemplatesResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "podtemplates",
		Kind:         "PodTemplate",
		SingularName: "podtemplate",
		Namespaced:   true,
		New:          func() runtime.Object { return &corev1.PodTemplate{} },
		NewList:      func() runtime.Object { return &corev1.PodTemplateList{} },
		Default:      func(obj runtime.Object) { defaultPodTemplateSpec(&obj.(*corev1.PodTemplate).Template) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.PodTemplate).Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			pt, oldPT := obj.(*corev1.PodTemplate), old.(*corev1.PodTemplate)
			bumpGeneration(pt, oldPT, &pt.Template, &oldPT.Template)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePodTemplateSpec(&obj.(*corev1.PodTemplate).Template, field.NewPath("template"))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Containers", "string", "Names of each container in the template.", 0),
			column("Images", "string", "Images referenced by each container in the template.", 0),
			column("Pod Labels", "string", "The labels for the pod template.", 0),
		},
		Row: func(obj runtime.Object) []interface{} {
			pt := obj.(*corev1.PodTemplate)
			names, images := podTemplateContainerCells(pt.Template.Spec.Containers)
			return []interface{}{pt.Name, names, images, formatLabels(pt.Template.Labels)}
		},
	}
}

// podTemplateContainerCells is layoutContainerCells: container names and
// images, comma-separated in container order.
func podTemplateContainerCells(containers []corev1.Container) (names, images string) {
	n := make([]string, len(containers))
	im := make([]string, len(containers))
	for i, c := range containers {
		n[i], im[i] = c.Name, c.Image
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}
