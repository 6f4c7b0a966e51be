package apiserver_test

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const acceptAggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"

type response struct {
	code int
	hdr  http.Header
	body []byte
}

func get(t *testing.T, url string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func decode(t *testing.T, r response, into interface{}) {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("status %d: %s", r.code, r.body)
	}
	if err := json.Unmarshal(r.body, into); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func findResource(list []metav1.APIResource, name string) *metav1.APIResource {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func TestDiscoveryClassic(t *testing.T) {
	ts := startServer(t)

	var versions metav1.APIVersions
	decode(t, get(t, ts.URL+"/api"), &versions)
	if versions.Kind != "APIVersions" || len(versions.Versions) != 1 || versions.Versions[0] != "v1" {
		t.Errorf("/api = %+v", versions)
	}

	var core metav1.APIResourceList
	decode(t, get(t, ts.URL+"/api/v1"), &core)
	if core.Kind != "APIResourceList" || core.GroupVersion != "v1" {
		t.Errorf("/api/v1 type = %+v", core.TypeMeta)
	}
	pods := findResource(core.APIResources, "pods")
	if pods == nil || !pods.Namespaced || pods.Kind != "Pod" || pods.SingularName != "pod" ||
		strings.Join(pods.ShortNames, ",") != "po" || len(pods.Verbs) != 8 {
		t.Errorf("pods = %+v", pods)
	}
	if ev := findResource(core.APIResources, "pods/eviction"); ev == nil || ev.Group != "policy" || ev.Kind != "Eviction" {
		t.Errorf("pods/eviction = %+v", ev)
	}
	if st := findResource(core.APIResources, "pods/status"); st == nil || st.Kind != "Pod" || strings.Join(st.Verbs, ",") != "get,patch,update" {
		t.Errorf("pods/status = %+v", st)
	}
	if sc := findResource(core.APIResources, "replicationcontrollers/scale"); sc == nil || sc.Group != "autoscaling" || sc.Version != "v1" || sc.Kind != "Scale" {
		t.Errorf("replicationcontrollers/scale = %+v", sc)
	}
	if ns := findResource(core.APIResources, "namespaces"); ns == nil || ns.Namespaced {
		t.Errorf("namespaces = %+v", ns)
	}

	var groups metav1.APIGroupList
	decode(t, get(t, ts.URL+"/apis"), &groups)
	if groups.Kind != "APIGroupList" {
		t.Errorf("/apis kind = %q", groups.Kind)
	}
	for _, g := range groups.Groups {
		if g.Name == "" || len(g.Versions) == 0 || g.PreferredVersion != g.Versions[0] {
			t.Errorf("group %+v", g)
		}
		var group metav1.APIGroup
		decode(t, get(t, ts.URL+"/apis/"+g.Name), &group)
		var list metav1.APIResourceList
		decode(t, get(t, ts.URL+"/apis/"+g.PreferredVersion.GroupVersion), &list)
		if len(list.APIResources) == 0 {
			t.Errorf("%s has no resources", g.PreferredVersion.GroupVersion)
		}
	}

	for _, path := range []string{"/api/v2", "/apis/nothere", "/apis/nothere/v1", "/apis/v1", "/api/apps/v1"} {
		if r := get(t, ts.URL+path); r.code != http.StatusNotFound {
			t.Errorf("%s: %d %s", path, r.code, r.body)
		}
	}
	if r := get(t, ts.URL+"/api/v1", "Accept", "application/vnd.kubernetes.protobuf"); r.code != http.StatusOK ||
		r.hdr.Get("Content-Type") != "application/vnd.kubernetes.protobuf" {
		t.Errorf("protobuf /api/v1: %d %s", r.code, r.hdr.Get("Content-Type"))
	}
}

func TestDiscoveryAggregated(t *testing.T) {
	ts := startServer(t)

	r := get(t, ts.URL+"/api", "Accept", acceptAggregated)
	if ct := r.hdr.Get("Content-Type"); ct != "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" {
		t.Fatalf("content type %q", ct)
	}
	var legacy apidiscoveryv2.APIGroupDiscoveryList
	decode(t, r, &legacy)
	if legacy.APIVersion != "apidiscovery.k8s.io/v2" || legacy.Kind != "APIGroupDiscoveryList" || len(legacy.Items) != 1 {
		t.Fatalf("legacy = %+v", legacy.TypeMeta)
	}
	v1 := legacy.Items[0].Versions[0]
	if legacy.Items[0].Name != "" || v1.Version != "v1" || v1.Freshness != apidiscoveryv2.DiscoveryFreshnessCurrent {
		t.Errorf("legacy group %q version %q", legacy.Items[0].Name, v1.Version)
	}
	var rc *apidiscoveryv2.APIResourceDiscovery
	for i := range v1.Resources {
		if v1.Resources[i].Resource == "replicationcontrollers" {
			rc = &v1.Resources[i]
		}
	}
	if rc == nil || rc.Scope != apidiscoveryv2.ScopeNamespace || rc.SingularResource != "replicationcontroller" ||
		rc.ResponseKind == nil || rc.ResponseKind.Kind != "ReplicationController" || strings.Join(rc.ShortNames, ",") != "rc" {
		t.Fatalf("replicationcontrollers = %+v", rc)
	}
	subs := map[string]apidiscoveryv2.APISubresourceDiscovery{}
	for _, s := range rc.Subresources {
		subs[s.Subresource] = s
	}
	if s := subs["scale"]; s.ResponseKind == nil || s.ResponseKind.Group != "autoscaling" || s.ResponseKind.Kind != "Scale" {
		t.Errorf("scale = %+v", s)
	}
	if s := subs["status"]; s.ResponseKind == nil || s.ResponseKind.Kind != "ReplicationController" {
		t.Errorf("status = %+v", s)
	}

	// ETag: an unchanged document is a 304.
	etag := r.hdr.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if r := get(t, ts.URL+"/api", "Accept", acceptAggregated, "If-None-Match", etag); r.code != http.StatusNotModified || len(r.body) != 0 {
		t.Errorf("If-None-Match: %d", r.code)
	}
	if r := get(t, ts.URL+"/api", "Accept", acceptAggregated, "If-None-Match", `"other"`); r.code != http.StatusOK {
		t.Errorf("stale If-None-Match: %d", r.code)
	}

	var named apidiscoveryv2.APIGroupDiscoveryList
	r = get(t, ts.URL+"/apis", "Accept", acceptAggregated)
	decode(t, r, &named)
	for _, g := range named.Items {
		if g.Name == "" || len(g.Versions) == 0 {
			t.Errorf("named group %+v", g.Name)
		}
	}
	if r.hdr.Get("ETag") == etag {
		t.Error("/api and /apis share an ETag")
	}

	// Both forms name the same verbs: a create-only kind (a review) listed
	// with list or get would make `kubectl api-resources --verbs=list`
	// and `kubectl get` try it.
	sawCreateOnly := false
	for _, g := range named.Items {
		for _, v := range g.Versions {
			var classic metav1.APIResourceList
			decode(t, get(t, ts.URL+"/apis/"+g.Name+"/"+v.Version), &classic)
			for _, res := range v.Resources {
				c := findResource(classic.APIResources, res.Resource)
				if c == nil {
					t.Errorf("%s/%s %s: in aggregated discovery only", g.Name, v.Version, res.Resource)
					continue
				}
				if a, b := strings.Join(res.Verbs, ","), strings.Join(c.Verbs, ","); a != b {
					t.Errorf("%s/%s %s: aggregated verbs %s, classic %s", g.Name, v.Version, res.Resource, a, b)
				}
				if res.Resource == "selfsubjectaccessreviews" {
					sawCreateOnly = true
					if strings.Join(res.Verbs, ",") != "create" {
						t.Errorf("selfsubjectaccessreviews verbs %v, want [create]", res.Verbs)
					}
				}
			}
		}
	}
	if !sawCreateOnly {
		t.Error("no selfsubjectaccessreviews in aggregated discovery")
	}

	// v2beta1 alone is answered as v2beta1.
	r = get(t, ts.URL+"/api", "Accept", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
	if ct := r.hdr.Get("Content-Type"); ct != "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList" {
		t.Errorf("v2beta1 content type %q", ct)
	}
	// A client preferring the classic document gets it.
	r = get(t, ts.URL+"/api", "Accept", "application/json,"+acceptAggregated)
	if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("classic-first content type %q", ct)
	}
}

func TestOpenAPIEndpoints(t *testing.T) {
	ts := startServer(t)
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	decode(t, get(t, ts.URL+"/openapi/v3"), &index)
	core, ok := index.Paths["api/v1"]
	if !ok {
		t.Fatalf("index = %+v", index)
	}
	r := get(t, ts.URL+core.ServerRelativeURL, "Accept", "application/json")
	if r.code != http.StatusOK || !strings.Contains(r.hdr.Get("Cache-Control"), "immutable") {
		t.Errorf("hashed document: %d %q", r.code, r.hdr.Get("Cache-Control"))
	}
	var doc struct {
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	decode(t, r, &doc)
	if _, ok := doc.Components.Schemas["io.k8s.api.core.v1.Pod"]; !ok {
		t.Error("core/v1 document lacks Pod")
	}
	if r := get(t, ts.URL+"/openapi/v3/api/v1"); r.code != http.StatusOK || r.hdr.Get("Cache-Control") == "public, immutable, max-age=31536000" {
		t.Errorf("unhashed document: %d %q", r.code, r.hdr.Get("Cache-Control"))
	}
	if r := get(t, ts.URL+"/openapi/v3/apis/nothere/v1"); r.code != http.StatusNotFound {
		t.Errorf("unknown group version: %d", r.code)
	}
	if r := get(t, ts.URL+"/openapi/v2", "Accept", "application/json"); r.code != http.StatusOK || !strings.Contains(string(r.body), `"swagger":"2.0"`) {
		t.Errorf("v2: %d", r.code)
	}
	r = get(t, ts.URL+"/openapi/v2", "Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	var v2 openapiv2.Document
	if r.code != http.StatusOK || proto.Unmarshal(r.body, &v2) != nil || v2.Swagger != "2.0" {
		t.Errorf("v2 protobuf: %d", r.code)
	}
	// client-go parses the answer's media type.
	if _, _, err := mime.ParseMediaType(r.hdr.Get("Content-Type")); err != nil {
		t.Errorf("v2 protobuf content type %q: %v", r.hdr.Get("Content-Type"), err)
	}
	if r := get(t, ts.URL+"/openapi/v3/api/v1", "Accept", "application/xml"); r.code != http.StatusNotAcceptable {
		t.Errorf("v3 as xml: %d", r.code)
	}
}
