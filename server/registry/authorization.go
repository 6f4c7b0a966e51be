package registry

import (
	"context"
	"reflect"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// authorization.k8s.io/v1: the access reviews (pkg/registry/authorization,
// pkg/apis/authorization/validation). They are questions, not objects:
// create-only and never stored. The server attaches Resource.Ephemeral,
// which asks the authorizer and fills in the status.

var authorizationGV = authorizationv1.SchemeGroupVersion

func authorizationResources() []*Resource {
	resources := []*Resource{
		{
			GroupVersion: authorizationGV, Name: "selfsubjectaccessreviews", Kind: "SelfSubjectAccessReview",
			SingularName: "selfsubjectaccessreview",
			New:          func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} },
			NewList:      func() runtime.Object { return &metav1.Status{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				r := obj.(*authorizationv1.SelfSubjectAccessReview)
				errs := validateReviewAttributes(r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes, field.NewPath("spec"))
				return append(errs, validateEmptyMeta(r.ObjectMeta, false)...)
			},
		},
		{
			GroupVersion: authorizationGV, Name: "selfsubjectrulesreviews", Kind: "SelfSubjectRulesReview",
			SingularName: "selfsubjectrulesreview",
			New:          func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} },
			NewList:      func() runtime.Object { return &metav1.Status{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				return validateEmptyMeta(obj.(*authorizationv1.SelfSubjectRulesReview).ObjectMeta, false)
			},
		},
		{
			GroupVersion: authorizationGV, Name: "subjectaccessreviews", Kind: "SubjectAccessReview",
			SingularName: "subjectaccessreview",
			New:          func() runtime.Object { return &authorizationv1.SubjectAccessReview{} },
			NewList:      func() runtime.Object { return &metav1.Status{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				r := obj.(*authorizationv1.SubjectAccessReview)
				return append(validateSubjectAccessReviewSpec(r.Spec), validateEmptyMeta(r.ObjectMeta, false)...)
			},
		},
		{
			GroupVersion: authorizationGV, Name: "localsubjectaccessreviews", Kind: "LocalSubjectAccessReview",
			SingularName: "localsubjectaccessreview", Namespaced: true,
			New:     func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} },
			NewList: func() runtime.Object { return &metav1.Status{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				r := obj.(*authorizationv1.LocalSubjectAccessReview)
				errs := validateSubjectAccessReviewSpec(r.Spec)
				errs = append(errs, validateEmptyMeta(r.ObjectMeta, true)...)
				if ra := r.Spec.ResourceAttributes; ra != nil && ra.Namespace != r.Namespace {
					errs = append(errs, field.Invalid(field.NewPath("spec", "resourceAttributes", "namespace"), ra.Namespace, "must match metadata.namespace"))
				}
				if r.Spec.NonResourceAttributes != nil {
					errs = append(errs, field.Invalid(field.NewPath("spec", "nonResourceAttributes"), r.Spec.NonResourceAttributes, "disallowed on this kind of request"))
				}
				return errs
			},
		},
	}
	for _, r := range resources {
		r.Ephemeral = unansweredReview
	}
	return resources
}

// unansweredReview answers access and token reviews until the server
// attaches what answers them (its authorizer, its authenticators), so that
// a review is never stored, whatever the server.
func unansweredReview(context.Context, runtime.Object) (runtime.Object, error) {
	return nil, apierrors.NewServiceUnavailable("reviews are not served: nothing is configured to answer them")
}

func validateSubjectAccessReviewSpec(spec authorizationv1.SubjectAccessReviewSpec) field.ErrorList {
	p := field.NewPath("spec")
	errs := validateReviewAttributes(spec.ResourceAttributes, spec.NonResourceAttributes, p)
	if spec.User == "" && len(spec.Groups) == 0 {
		errs = append(errs, field.Invalid(p.Child("user"), spec.User, "at least one of user or group must be specified"))
	}
	return errs
}

// validateReviewAttributes: a review asks about exactly one request, a
// resource or a non-resource one.
func validateReviewAttributes(ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes, p *field.Path) field.ErrorList {
	switch {
	case ra != nil && nra != nil:
		return field.ErrorList{field.Invalid(p.Child("nonResourceAttributes"), nra, "cannot be specified in combination with resourceAttributes")}
	case ra == nil && nra == nil:
		return field.ErrorList{field.Invalid(p.Child("resourceAttributes"), nra, "exactly one of nonResourceAttributes or resourceAttributes must be specified")}
	}
	return nil
}

// validateEmptyMeta: reviews carry no metadata (but the namespace of a
// local review, and the managed fields a client may send).
func validateEmptyMeta(m metav1.ObjectMeta, namespaced bool) field.ErrorList {
	m.ManagedFields = nil
	if namespaced {
		m.Namespace = ""
	}
	if !reflect.DeepEqual(metav1.ObjectMeta{}, m) {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), m, "must be empty")}
	}
	return nil
}
