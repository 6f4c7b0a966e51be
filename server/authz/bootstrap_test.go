package authz

import (
	"testing"

	"github.com/orch-dev/orch/server/apiserver"
)

// The user-facing roles come out of aggregation with what users of each
// expect, before the aggregation controller has run.
func TestAggregatedBootstrapRoles(t *testing.T) {
	roles, err := aggregatedBootstrapRoles()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, r := range roles {
		byName[r.Name] = i
	}
	u := apiserver.UserInfo{Name: "someone"}
	top := apiserver.Attributes{User: u, Verb: "list", ResourceRequest: true, APIGroup: "metrics.k8s.io", Resource: "pods", Namespace: "default"}
	secrets := apiserver.Attributes{User: u, Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "default"}
	for _, tt := range []struct {
		role string
		a    apiserver.Attributes
		want bool
	}{
		{"view", top, true},
		{"edit", top, true},
		{"admin", top, true},
		{"view", secrets, false},
		{"edit", secrets, true},
	} {
		i, ok := byName[tt.role]
		if !ok {
			t.Fatalf("no bootstrap role %q", tt.role)
		}
		if got := RulesAllow(tt.a, roles[i].Rules...); got != tt.want {
			t.Errorf("%s allows %s %s/%s = %v, want %v", tt.role, tt.a.Verb, tt.a.APIGroup, tt.a.Resource, got, tt.want)
		}
	}
}
