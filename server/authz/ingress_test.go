package authz

import (
	"context"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/apiserver"
)

type ingressList []*networkingv1.Ingress

func (l ingressList) List(ns string, _ labels.Selector) []*networkingv1.Ingress {
	var out []*networkingv1.Ingress
	for _, i := range l {
		if i.Namespace == ns {
			out = append(out, i)
		}
	}
	return out
}

func TestIngressTLS(t *testing.T) {
	az := NewIngressTLS(ingressList{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site"},
		Spec:       networkingv1.IngressSpec{TLS: []networkingv1.IngressTLS{{Hosts: []string{"a.example"}, SecretName: "a-tls"}}},
	}})
	ingressUser := apiserver.UserInfo{Name: jointoken.IngressUser, Groups: []string{"system:authenticated"}}
	node := apiserver.UserInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	with := func(u apiserver.UserInfo, a apiserver.Attributes) apiserver.Attributes { a.User = u; return a }
	for _, tt := range []struct {
		name       string
		a          apiserver.Attributes
		want       apiserver.Decision
		wantReason string
	}{
		{"a secret an ingress names", with(ingressUser, resourceAttrs("get", "", "secrets", "", "web", "a-tls")), apiserver.DecisionAllow, ""},
		{"the same name elsewhere", with(ingressUser, resourceAttrs("get", "", "secrets", "", "other", "a-tls")), apiserver.DecisionNoOpinion,
			`no ingress in namespace "other" names secret "a-tls" for TLS`},
		{"a secret no ingress names", with(ingressUser, resourceAttrs("get", "", "secrets", "", "web", "db-password")), apiserver.DecisionNoOpinion,
			`no ingress in namespace "web" names secret "db-password" for TLS`},
		{"no lists", with(ingressUser, resourceAttrs("list", "", "secrets", "", "web", "")), apiserver.DecisionNoOpinion,
			"can only get secrets named for TLS by an ingress, one by one"},
		{"no watches of one", with(ingressUser, resourceAttrs("watch", "", "secrets", "", "web", "a-tls")), apiserver.DecisionNoOpinion,
			"can only get secrets named for TLS by an ingress, one by one"},
		{"no writes", with(ingressUser, resourceAttrs("update", "", "secrets", "", "web", "a-tls")), apiserver.DecisionNoOpinion,
			"can only get secrets named for TLS by an ingress, one by one"},
		{"other users are not its business", with(node, resourceAttrs("get", "", "secrets", "", "web", "a-tls")), apiserver.DecisionNoOpinion, ""},
		{"other resources are not its business", with(ingressUser, resourceAttrs("get", "", "configmaps", "", "web", "a-tls")), apiserver.DecisionNoOpinion, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, reason, err := az.Authorize(context.Background(), tt.a)
			if err != nil {
				t.Fatal(err)
			}
			if d != tt.want || reason != tt.wantReason {
				t.Errorf("= %v %q, want %v %q", d, reason, tt.want, tt.wantReason)
			}
		})
	}
}
