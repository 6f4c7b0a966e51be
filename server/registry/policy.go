package registry

import (
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// policy/v1: PodDisruptionBudgets, after pkg/apis/policy/validation and
// pkg/registry/policy/poddisruptionbudget/strategy.go.

var policyGV = schema.GroupVersion{Group: "policy", Version: "v1"}

func policyResources() []*Resource {
	return []*Resource{podDisruptionBudgetsResource()}
}

func podDisruptionBudgetsResource() *Resource {
	return &Resource{
		GroupVersion: policyGV,
		Name:         "poddisruptionbudgets",
		Kind:         "PodDisruptionBudget",
		SingularName: "poddisruptionbudget",
		Namespaced:   true,
		ShortNames:   []string{"pdb"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		NewList:      func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		PrepareForCreate: func(obj runtime.Object) {
			pdb := obj.(*policyv1.PodDisruptionBudget)
			pdb.Status = policyv1.PodDisruptionBudgetStatus{}
			pdb.Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			pdb, oldPDB := obj.(*policyv1.PodDisruptionBudget), old.(*policyv1.PodDisruptionBudget)
			pdb.Status = oldPDB.Status
			bumpGeneration(pdb, oldPDB, &pdb.Spec, &oldPDB.Spec)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			pdb, oldPDB := obj.(*policyv1.PodDisruptionBudget), old.(*policyv1.PodDisruptionBudget)
			pdb.Spec = oldPDB.Spec
			pdb.Generation = oldPDB.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePodDisruptionBudget(obj.(*policyv1.PodDisruptionBudget))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Min Available", "string", policyv1.PodDisruptionBudgetSpec{}.SwaggerDoc()["minAvailable"], 0),
			column("Max Unavailable", "string", policyv1.PodDisruptionBudgetSpec{}.SwaggerDoc()["maxUnavailable"], 0),
			column("Allowed Disruptions", "integer", policyv1.PodDisruptionBudgetStatus{}.SwaggerDoc()["disruptionsAllowed"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			pdb := obj.(*policyv1.PodDisruptionBudget)
			cell := func(v *intstr.IntOrString) string {
				if v == nil {
					return "N/A"
				}
				return v.String()
			}
			return []interface{}{
				pdb.Name, cell(pdb.Spec.MinAvailable), cell(pdb.Spec.MaxUnavailable),
				int64(pdb.Status.DisruptionsAllowed), translateTimestampSince(pdb.CreationTimestamp),
			}
		},
	}
}

// validatePodDisruptionBudget is ValidatePodDisruptionBudget (policy/v1,
// where an empty selector selects every pod of the namespace) plus the
// status counters.
func validatePodDisruptionBudget(pdb *policyv1.PodDisruptionBudget) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &pdb.Spec
	var allErrs field.ErrorList
	if spec.MinAvailable != nil && spec.MaxUnavailable != nil {
		allErrs = append(allErrs, field.Invalid(specPath, spec, "minAvailable and maxUnavailable cannot be both set"))
	}
	for name, v := range map[string]*intstr.IntOrString{"minAvailable": spec.MinAvailable, "maxUnavailable": spec.MaxUnavailable} {
		if v == nil {
			continue
		}
		allErrs = append(allErrs, validatePositiveIntOrPercent(*v, specPath.Child(name))...)
		allErrs = append(allErrs, validateNotMoreThan100Percent(*v, specPath.Child(name))...)
	}
	if spec.Selector != nil {
		allErrs = append(allErrs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, specPath.Child("selector"))...)
	}
	if p := spec.UnhealthyPodEvictionPolicy; p != nil {
		switch *p {
		case policyv1.IfHealthyBudget, policyv1.AlwaysAllow:
		default:
			allErrs = append(allErrs, field.NotSupported(specPath.Child("unhealthyPodEvictionPolicy"), *p,
				[]policyv1.UnhealthyPodEvictionPolicyType{policyv1.AlwaysAllow, policyv1.IfHealthyBudget}))
		}
	}
	st, stPath := &pdb.Status, field.NewPath("status")
	allErrs = append(allErrs, validateNonnegativeFields(stPath, map[string]int64{
		"disruptionsAllowed": int64(st.DisruptionsAllowed),
		"currentHealthy":     int64(st.CurrentHealthy),
		"desiredHealthy":     int64(st.DesiredHealthy),
		"expectedPods":       int64(st.ExpectedPods),
	})...)
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(st.ObservedGeneration, stPath.Child("observedGeneration"))...)
	return allErrs
}
