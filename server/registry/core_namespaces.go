package registry

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// namespaceNameLabel is set on every namespace to its name, so namespace
// selectors can pick namespaces by name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// namespacesResource is core/v1 namespaces. Deleting a namespace marks it
// Terminating; the namespace controller empties it and removes the
// "kubernetes" finalizer through the finalize subresource.
func namespacesResource() *Resource {
	return &Resource{
		GroupVersion:   schema.GroupVersion{Version: "v1"},
		Name:           "namespaces",
		Kind:           "Namespace",
		SingularName:   "namespace",
		ShortNames:     []string{"ns"},
		Subresources:   []string{"status", "finalize"},
		NameValidation: apivalidation.NameIsDNSLabel,
		New:            func() runtime.Object { return &corev1.Namespace{} },
		NewList:        func() runtime.Object { return &corev1.NamespaceList{} },
		Default:        func(obj runtime.Object) { defaultNamespace(obj.(*corev1.Namespace)) },
		PrepareForCreate: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			if !hasFinalizer(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
				ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
			ns.Spec.Finalizers = oldNS.Spec.Finalizers
			ns.Status = oldNS.Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Namespace).Spec = old.(*corev1.Namespace).Spec
		},
		PrepareForSubresource: map[string]func(obj, old runtime.Object){
			"finalize": func(obj, old runtime.Object) {
				ns := obj.(*corev1.Namespace)
				finalizers, rv := ns.Spec.Finalizers, ns.ResourceVersion
				*ns = *old.(*corev1.Namespace).DeepCopy()
				ns.Spec.Finalizers = finalizers
				ns.ResourceVersion = rv
			},
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return validateNamespace(obj.(*corev1.Namespace)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList { return validateNamespacePhase(obj.(*corev1.Namespace)) },
		GracefulDelete: namespaceGracefulDelete,
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Status", "string", "The status of the namespace", 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			ns := obj.(*corev1.Namespace)
			return []interface{}{ns.Name, string(ns.Status.Phase), translateTimestampSince(ns.CreationTimestamp)}
		},
		Fields: func(obj runtime.Object) fields.Set {
			ns := obj.(*corev1.Namespace)
			// "name" is a historical alias Kubernetes keeps supporting.
			return fields.Set{"status.phase": string(ns.Status.Phase), "name": ns.Name}
		},
	}
}

// defaultNamespace is SetDefaults_Namespace (the name label) and
// SetDefaults_NamespaceStatus.
func defaultNamespace(ns *corev1.Namespace) {
	if ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
	if ns.Name != "" {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[namespaceNameLabel] = ns.Name
	}
}

func hasFinalizer(list []corev1.FinalizerName, f corev1.FinalizerName) bool {
	for _, x := range list {
		if x == f {
			return true
		}
	}
	return false
}

// standardFinalizers are the finalizer names allowed without a domain.
var standardFinalizers = map[string]bool{
	string(corev1.FinalizerKubernetes): true,
	metav1.FinalizerOrphanDependents:   true,
	metav1.FinalizerDeleteDependents:   true,
}

func validateNamespace(ns *corev1.Namespace) field.ErrorList {
	var allErrs field.ErrorList
	p := field.NewPath("spec", "finalizers")
	for i, f := range ns.Spec.Finalizers {
		idxPath := p.Index(i)
		errs := apivalidation.ValidateFinalizerName(string(f), idxPath)
		allErrs = append(allErrs, errs...)
		if len(errs) == 0 && !standardFinalizers[string(f)] && !strings.Contains(string(f), "/") {
			allErrs = append(allErrs, field.Invalid(idxPath, string(f), "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	return allErrs
}

// validateNamespacePhase: Active while not deleted, Terminating after.
func validateNamespacePhase(ns *corev1.Namespace) field.ErrorList {
	p := field.NewPath("status", "phase")
	if ns.DeletionTimestamp.IsZero() {
		if ns.Status.Phase != corev1.NamespaceActive {
			return field.ErrorList{field.Invalid(p, ns.Status.Phase, "may only be 'Active' if `deletionTimestamp` is empty")}
		}
	} else if ns.Status.Phase != corev1.NamespaceTerminating {
		return field.ErrorList{field.Invalid(p, ns.Status.Phase, "may only be 'Terminating' if `deletionTimestamp` is not empty")}
	}
	return nil
}
