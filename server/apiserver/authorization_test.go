package apiserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/store"
)

// recordingAuthorizer allows system:masters, lets "boss" impersonate, and
// records what it was asked.
type recordingAuthorizer struct {
	mu   sync.Mutex
	seen []apiserver.Attributes
}

func (r *recordingAuthorizer) authorize(_ context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
	r.mu.Lock()
	r.seen = append(r.seen, a)
	r.mu.Unlock()
	switch {
	case slices.Contains(a.User.Groups, "system:masters"):
		return apiserver.DecisionAllow, "", nil
	case a.Verb == "impersonate" && a.User.Name == "boss":
		return apiserver.DecisionAllow, "", nil
	case a.User.Name == "denied-explicitly":
		return apiserver.DecisionDeny, "a reason", nil
	case a.User.Name == "exec-reader" && a.Verb == "get" && a.Resource == "pods":
		return apiserver.DecisionAllow, "", nil
	}
	return apiserver.DecisionNoOpinion, "", nil
}

func (r *recordingAuthorizer) last() apiserver.Attributes {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return apiserver.Attributes{}
	}
	return r.seen[len(r.seen)-1]
}

func (r *recordingAuthorizer) reset() {
	r.mu.Lock()
	r.seen = nil
	r.mu.Unlock()
}

// headerUser authenticates from X-User and X-Groups (tests only).
func headerUser(r *http.Request) (apiserver.UserInfo, bool) {
	name := r.Header.Get("X-User")
	if name == "" {
		return apiserver.UserInfo{}, false
	}
	u := apiserver.UserInfo{Name: name, Groups: []string{"system:authenticated"}}
	if g := r.Header.Get("X-Groups"); g != "" {
		u.Groups = append(strings.Split(g, ","), u.Groups...)
	}
	return u, true
}

func startAuthorizedServer(t *testing.T) (*testServer, *recordingAuthorizer) {
	az := &recordingAuthorizer{}
	ts := startServer(t, func(c *apiserver.Config) {
		c.Authenticate = headerUser
		c.Authorize = az.authorize
	})
	return ts, az
}

func doAs(t *testing.T, ts *testServer, method, path, user string, headers map[string][]string) (int, metav1.Status) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-User", user)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	_ = json.Unmarshal(body, &st)
	return resp.StatusCode, st
}

func TestRequestAttributes(t *testing.T) {
	ts, az := startAuthorizedServer(t)
	tests := []struct {
		method, path string
		want         apiserver.Attributes
		message      string
	}{
		{"GET", "/api/v1/namespaces/default/pods",
			apiserver.Attributes{Verb: "list", ResourceRequest: true, APIVersion: "v1", Namespace: "default", Resource: "pods"},
			`pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default"`},
		{"GET", "/api/v1/pods?watch=true",
			apiserver.Attributes{Verb: "watch", ResourceRequest: true, APIVersion: "v1", Resource: "pods"},
			`pods is forbidden: User "bob" cannot watch resource "pods" in API group "" at the cluster scope`},
		{"GET", "/api/v1/watch/namespaces/ns/pods/p",
			apiserver.Attributes{Verb: "watch", ResourceRequest: true, APIVersion: "v1", Namespace: "ns", Resource: "pods", Name: "p"},
			`pods "p" is forbidden: User "bob" cannot watch resource "pods" in API group "" in the namespace "ns"`},
		{"GET", "/apis/apps/v1/namespaces/ns/deployments/d/scale",
			apiserver.Attributes{Verb: "get", ResourceRequest: true, APIGroup: "apps", APIVersion: "v1", Namespace: "ns", Resource: "deployments", Subresource: "scale", Name: "d"},
			`deployments.apps "d" is forbidden: User "bob" cannot get resource "deployments/scale" in API group "apps" in the namespace "ns"`},
		{"PATCH", "/api/v1/nodes/n1/status",
			apiserver.Attributes{Verb: "patch", ResourceRequest: true, APIVersion: "v1", Resource: "nodes", Subresource: "status", Name: "n1"},
			`nodes "n1" is forbidden: User "bob" cannot patch resource "nodes/status" in API group "" at the cluster scope`},
		{"DELETE", "/api/v1/namespaces/ns/configmaps",
			apiserver.Attributes{Verb: "deletecollection", ResourceRequest: true, APIVersion: "v1", Namespace: "ns", Resource: "configmaps"},
			`configmaps is forbidden: User "bob" cannot deletecollection resource "configmaps" in API group "" in the namespace "ns"`},
		{"GET", "/api/v1/namespaces/ns",
			apiserver.Attributes{Verb: "get", ResourceRequest: true, APIVersion: "v1", Namespace: "ns", Resource: "namespaces", Name: "ns"},
			`namespaces "ns" is forbidden: User "bob" cannot get resource "namespaces" in API group "" in the namespace "ns"`},
		{"GET", "/api/v1/namespaces/ns/secrets?fieldSelector=metadata.name%3Ds1",
			apiserver.Attributes{Verb: "list", ResourceRequest: true, APIVersion: "v1", Namespace: "ns", Resource: "secrets", Name: "s1"},
			`secrets "s1" is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "ns"`},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
			apiserver.Attributes{Verb: "create", ResourceRequest: true, APIGroup: "authorization.k8s.io", APIVersion: "v1", Resource: "selfsubjectaccessreviews"},
			`selfsubjectaccessreviews.authorization.k8s.io is forbidden: User "bob" cannot create resource "selfsubjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope`},
		{"GET", "/api/v1/namespaces/ns/pods/p/proxy/some/path",
			apiserver.Attributes{Verb: "get", ResourceRequest: true, APIVersion: "v1", Namespace: "ns", Resource: "pods", Subresource: "proxy", Name: "p"},
			`pods "p" is forbidden: User "bob" cannot get resource "pods/proxy" in API group "" in the namespace "ns"`},
		{"POST", "/api/v1/nodes/n1/proxy/metrics/x",
			apiserver.Attributes{Verb: "create", ResourceRequest: true, APIVersion: "v1", Resource: "nodes", Subresource: "proxy", Name: "n1"},
			`nodes "n1" is forbidden: User "bob" cannot create resource "nodes/proxy" in API group "" at the cluster scope`},
		{"GET", "/apis", apiserver.Attributes{Verb: "get", Path: "/apis"}, `forbidden: User "bob" cannot get path "/apis"`},
		{"GET", "/apis/apps/v1", apiserver.Attributes{Verb: "get", Path: "/apis/apps/v1"}, `forbidden: User "bob" cannot get path "/apis/apps/v1"`},
		{"POST", "/api/v1", apiserver.Attributes{Verb: "post", Path: "/api/v1"}, `forbidden: User "bob" cannot post path "/api/v1"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			az.reset()
			code, st := doAs(t, ts, tt.method, tt.path, "bob", nil)
			if code != http.StatusForbidden || st.Reason != metav1.StatusReasonForbidden || st.Message != tt.message {
				t.Errorf("got %d %s %q, want 403 Forbidden %q", code, st.Reason, st.Message, tt.message)
			}
			got := az.last()
			got.User, tt.want.User = apiserver.UserInfo{}, apiserver.UserInfo{}
			if tt.want.Name == "s1" {
				got.FieldSelector = nil // checked by the node authorizer's tests
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("attributes\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}

	// The reason of a denial follows the message.
	if _, st := doAs(t, ts, "GET", "/api/v1/namespaces/default/pods", "denied-explicitly", nil); !strings.HasSuffix(st.Message, `in the namespace "default": a reason`) {
		t.Errorf("explicit deny: %q", st.Message)
	}
	// Public paths and unauthenticated requests are not authorized.
	az.reset()
	if code, _ := doAs(t, ts, "GET", "/healthz", "", nil); code != http.StatusOK || len(az.seen) != 0 {
		t.Errorf("/healthz: %d, authorizer asked %v", code, az.seen)
	}
	if code, _ := doAs(t, ts, "GET", "/api/v1/pods", "", nil); code != http.StatusUnauthorized || len(az.seen) != 0 {
		t.Errorf("anonymous: %d, authorizer asked %v", code, az.seen)
	}
}

func TestImpersonation(t *testing.T) {
	ts, az := startAuthorizedServer(t)
	tests := []struct {
		name    string
		user    string
		headers map[string][]string
		code    int
		message string
		acting  apiserver.UserInfo // whom the request was finally authorized as
	}{
		{name: "not allowed", user: "bob", headers: map[string][]string{"Impersonate-User": {"alice"}}, code: http.StatusForbidden,
			message: `users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope`},
		{name: "user and groups", user: "boss", headers: map[string][]string{"Impersonate-User": {"alice"}, "Impersonate-Group": {"devs", "ops"}},
			code: http.StatusForbidden, acting: apiserver.UserInfo{Name: "alice", Groups: []string{"devs", "ops", "system:authenticated"}},
			message: `pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"`},
		{name: "service account gets its groups", user: "boss", headers: map[string][]string{"Impersonate-User": {"system:serviceaccount:ns:robot"}},
			code: http.StatusForbidden, acting: apiserver.UserInfo{Name: "system:serviceaccount:ns:robot",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"}}},
		{name: "impersonating system:masters", user: "boss", headers: map[string][]string{"Impersonate-User": {"root"}, "Impersonate-Group": {"system:masters"}},
			code: http.StatusOK, acting: apiserver.UserInfo{Name: "root", Groups: []string{"system:masters", "system:authenticated"}}},
		{name: "groups without a user", user: "boss", headers: map[string][]string{"Impersonate-Group": {"system:masters"}}, code: http.StatusBadRequest,
			message: "requested impersonation of groups, extra or uid without impersonating a user"},
		{name: "malformed service account", user: "boss", headers: map[string][]string{"Impersonate-User": {"system:serviceaccount:ns"}}, code: http.StatusBadRequest,
			message: `invalid service account username "system:serviceaccount:ns"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			az.reset()
			code, st := doAs(t, ts, "GET", "/api/v1/namespaces/default/pods", tt.user, tt.headers)
			if code != tt.code || (tt.message != "" && st.Message != tt.message) {
				t.Errorf("got %d %q, want %d %q", code, st.Message, tt.code, tt.message)
			}
			if tt.acting.Name != "" {
				got := az.last()
				if got.Verb != "list" || !reflect.DeepEqual(got.User, tt.acting) {
					t.Errorf("authorized %s as %+v, want list as %+v", got.Verb, got.User, tt.acting)
				}
			}
		})
	}
	// The service account check names the account in its namespace.
	az.reset()
	doAs(t, ts, "GET", "/api/v1/namespaces/default/pods", "boss", map[string][]string{"Impersonate-User": {"system:serviceaccount:ns:robot"}})
	if first := az.seen[0]; first.Verb != "impersonate" || first.Resource != "serviceaccounts" || first.Namespace != "ns" || first.Name != "robot" {
		t.Errorf("impersonation check %+v", first)
	}
}

func TestEphemeralResourcesAreCreateOnly(t *testing.T) {
	ts, _ := startAuthorizedServer(t)
	admin := map[string][]string{"X-Groups": {"system:masters"}}
	for _, m := range []string{"GET", "DELETE", "PUT"} {
		path := "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
		if m == "PUT" {
			path += "/x"
		}
		if code, st := doAs(t, ts, m, path, "admin", admin); code != http.StatusMethodNotAllowed || st.Reason != metav1.StatusReasonMethodNotAllowed {
			t.Errorf("%s %s: %d %s", m, path, code, st.Reason)
		}
	}
	// Invalid reviews are rejected before the hook; without an authorizer
	// attached to answer, a valid one is unanswered, never stored.
	code, st := doAs(t, ts, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "admin", admin)
	if code != http.StatusUnprocessableEntity || !strings.Contains(st.Message, "exactly one of nonResourceAttributes or resourceAttributes must be specified") {
		t.Errorf("empty review: %d %q", code, st.Message)
	}
	req, _ := http.NewRequest("POST", ts.URL+"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		strings.NewReader(`{"spec":{"nonResourceAttributes":{"verb":"get","path":"/api"}}}`))
	req.Header.Set("X-User", "admin")
	req.Header.Set("X-Groups", "system:masters")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("review without an authorizer: %d", resp.StatusCode)
	}
	if n, err := ts.store.Count(context.Background(), "/registry/"); err == nil {
		if kvs, _ := ts.store.List(context.Background(), "/registry/authorization.k8s.io/", store.ListOptions{}); kvs != nil && len(kvs.KVs) > 0 {
			t.Errorf("reviews were stored (%d keys in all)", n)
		}
	}
}

// A WebSocket exec is a GET, but since Kubernetes 1.31 it also needs
// create on pods/exec, the verb of the SPDY POST.
func TestStreamingGetNeedsCreate(t *testing.T) {
	ts, az := startAuthorizedServer(t)
	for _, sub := range []string{"exec?command=sh", "attach", "portforward?ports=80"} {
		az.reset()
		code, st := doAs(t, ts, http.MethodGet, "/api/v1/namespaces/default/pods/web/"+sub, "exec-reader", nil)
		resource := "pods/" + strings.SplitN(sub, "?", 2)[0]
		if code != http.StatusForbidden || !strings.Contains(st.Message, `User "exec-reader" cannot create resource "`+resource+`"`) {
			t.Errorf("GET %s: %d %q, want 403 for create", sub, code, st.Message)
		}
		if a := az.last(); a.Verb != "create" || a.Subresource != strings.TrimPrefix(resource, "pods/") {
			t.Errorf("GET %s: last check %+v, want create", sub, a)
		}
	}
	// A plain get of the pod needs only get.
	az.reset()
	if code, st := doAs(t, ts, http.MethodGet, "/api/v1/namespaces/default/pods/web", "exec-reader", nil); code == http.StatusForbidden {
		t.Errorf("GET pod: forbidden: %s", st.Message)
	}
}
