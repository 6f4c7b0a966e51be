package authz

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/registry"
)

// Attach makes the authorization.k8s.io/v1 reviews of table answer with
// c: SelfSubjectAccessReview and SelfSubjectRulesReview about the caller,
// SubjectAccessReview and LocalSubjectAccessReview about anyone (whoever
// may create those).
func (c *Cluster) Attach(table *registry.Table) error {
	gv := authorizationv1.SchemeGroupVersion
	for name, review := range map[string]func(context.Context, runtime.Object) (runtime.Object, error){
		"selfsubjectaccessreviews":  c.selfSubjectAccessReview,
		"subjectaccessreviews":      c.subjectAccessReview,
		"localsubjectaccessreviews": c.subjectAccessReview,
		"selfsubjectrulesreviews":   c.selfSubjectRulesReview,
	} {
		res := table.Lookup(gv, name)
		if res == nil {
			return fmt.Errorf("authz: resource %s/%s is not in the table", gv, name)
		}
		res.Ephemeral = review
	}
	return nil
}

func requestingUser(ctx context.Context) (apiserver.UserInfo, error) {
	u, ok := apiserver.UserFrom(ctx)
	if !ok {
		return u, apierrors.NewInternalError(fmt.Errorf("no user on the request"))
	}
	return u, nil
}

func (c *Cluster) selfSubjectAccessReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	r := obj.(*authorizationv1.SelfSubjectAccessReview)
	u, err := requestingUser(ctx)
	if err != nil {
		return nil, err
	}
	r.Status = c.review(ctx, reviewAttributes(u, r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes))
	return r, nil
}

// subjectAccessReview answers SubjectAccessReviews and, namespaced,
// LocalSubjectAccessReviews (whose spec.resourceAttributes.namespace
// validation ties to the request's namespace).
func (c *Cluster) subjectAccessReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	var spec *authorizationv1.SubjectAccessReviewSpec
	var status *authorizationv1.SubjectAccessReviewStatus
	switch r := obj.(type) {
	case *authorizationv1.SubjectAccessReview:
		spec, status = &r.Spec, &r.Status
	case *authorizationv1.LocalSubjectAccessReview:
		spec, status = &r.Spec, &r.Status
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not an access review: %T", obj))
	}
	u := apiserver.UserInfo{Name: spec.User, UID: spec.UID, Groups: spec.Groups}
	if len(spec.Extra) > 0 {
		u.Extra = make(map[string][]string, len(spec.Extra))
		for k, v := range spec.Extra {
			u.Extra[k] = v
		}
	}
	*status = c.review(ctx, reviewAttributes(u, spec.ResourceAttributes, spec.NonResourceAttributes))
	return obj, nil
}

func (c *Cluster) review(ctx context.Context, a apiserver.Attributes) authorizationv1.SubjectAccessReviewStatus {
	d, reason, err := c.Authorize(ctx, a)
	st := authorizationv1.SubjectAccessReviewStatus{
		Allowed: d == apiserver.DecisionAllow,
		Denied:  d == apiserver.DecisionDeny,
		Reason:  reason,
	}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	return st
}

// reviewAttributes are the attributes of the request a review asks about.
func reviewAttributes(u apiserver.UserInfo, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) apiserver.Attributes {
	a := apiserver.Attributes{User: u}
	if nra != nil {
		a.Verb, a.Path = nra.Verb, nra.Path
		return a
	}
	if ra == nil {
		return a
	}
	a.ResourceRequest = true
	a.Verb, a.APIGroup, a.APIVersion = ra.Verb, ra.Group, ra.Version
	a.Namespace, a.Resource, a.Subresource, a.Name = ra.Namespace, ra.Resource, ra.Subresource, ra.Name
	if fs := ra.FieldSelector; fs != nil && fs.RawSelector != "" {
		if sel, err := fields.ParseSelector(fs.RawSelector); err == nil {
			a.FieldSelector = sel.Requirements()
		}
	}
	return a
}

func (c *Cluster) selfSubjectRulesReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	r := obj.(*authorizationv1.SelfSubjectRulesReview)
	u, err := requestingUser(ctx)
	if err != nil {
		return nil, err
	}
	rules, incomplete, err := c.RulesFor(ctx, u, r.Spec.Namespace)
	st := authorizationv1.SubjectRulesReviewStatus{
		ResourceRules:    []authorizationv1.ResourceRule{},
		NonResourceRules: []authorizationv1.NonResourceRule{},
	}
	if err != nil {
		st.Incomplete, st.EvaluationError = true, err.Error()
	}
	if len(incomplete) > 0 {
		st.Incomplete = true
		st.EvaluationError = fmt.Sprintf("%v", incomplete)
	}
	for _, rule := range rules {
		if len(rule.NonResourceURLs) > 0 {
			st.NonResourceRules = append(st.NonResourceRules, authorizationv1.NonResourceRule{Verbs: rule.Verbs, NonResourceURLs: rule.NonResourceURLs})
			continue
		}
		st.ResourceRules = append(st.ResourceRules, authorizationv1.ResourceRule{
			Verbs: rule.Verbs, APIGroups: rule.APIGroups, Resources: rule.Resources, ResourceNames: rule.ResourceNames,
		})
	}
	r.Status = st
	return r, nil
}
