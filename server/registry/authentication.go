package registry

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// authenticationResources are authentication.k8s.io/v1's kinds that are
// never stored: TokenReview (is this token valid, and whose is it?) and
// SelfSubjectReview (who am I? — kubectl auth whoami). Their Ephemeral hooks
// are attached by the server, which knows the authenticators. TokenRequest
// is not here: it is the serviceaccounts/token subresource.
func authenticationResources() []*Resource {
	gv := authenticationv1.SchemeGroupVersion
	resources := []*Resource{
		{
			GroupVersion: gv,
			Name:         "tokenreviews",
			Kind:         "TokenReview",
			SingularName: "tokenreview",
			New:          func() runtime.Object { return &authenticationv1.TokenReview{} },
			NewList:      func() runtime.Object { return &metav1.Status{} },
		},
		{
			GroupVersion: gv,
			Name:         "selfsubjectreviews",
			Kind:         "SelfSubjectReview",
			SingularName: "selfsubjectreview",
			New:          func() runtime.Object { return &authenticationv1.SelfSubjectReview{} },
			NewList:      func() runtime.Object { return &metav1.Status{} },
		},
	}
	for _, r := range resources {
		r.Ephemeral = unansweredReview
	}
	return resources
}
