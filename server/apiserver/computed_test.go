package apiserver_test

import (
	"context"
	"net/http"
	"testing"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/apiserver"
)

// widgets is a computed resource whose objects are bare metadata.
func widgets() apiserver.ComputedResource {
	gv := schema.GroupVersion{Group: "example.orch.dev", Version: "v1"}
	items := []metav1.PartialObjectMetadata{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "w1", Labels: map[string]string{"app": "web"}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "w2", Labels: map[string]string{"app": "db"}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "w3", Labels: map[string]string{"app": "web"}}},
	}
	typed := func(o metav1.PartialObjectMetadata) metav1.PartialObjectMetadata {
		o.TypeMeta = metav1.TypeMeta{APIVersion: gv.String(), Kind: "Widget"}
		return o
	}
	return apiserver.ComputedResource{
		GroupVersion: gv, Name: "widgets", SingularName: "widget", Kind: "Widget", Namespaced: true,
		Get: func(_ context.Context, ns, name string) (runtime.Object, error) {
			for _, it := range items {
				if it.Namespace == ns && it.Name == name {
					o := typed(it)
					return &o, nil
				}
			}
			return nil, apierrors.NewNotFound(gv.WithResource("widgets").GroupResource(), name)
		},
		List: func(_ context.Context, ns string) (runtime.Object, error) {
			list := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: gv.String(), Kind: "WidgetList"}}
			for _, it := range items {
				if ns == "" || it.Namespace == ns {
					list.Items = append(list.Items, typed(it))
				}
			}
			return list, nil
		},
	}
}

func TestComputedResource(t *testing.T) {
	ts := startServer(t)
	if err := ts.api.AddComputed(widgets()); err != nil {
		t.Fatal(err)
	}
	if err := ts.api.AddComputed(widgets()); err == nil {
		t.Fatal("a resource was added twice")
	}
	base := ts.URL + "/apis/example.orch.dev/v1"
	names := func(r response) []string {
		t.Helper()
		var list metav1.PartialObjectMetadataList
		decode(t, r, &list)
		var out []string
		for _, it := range list.Items {
			out = append(out, it.Namespace+"/"+it.Name)
		}
		return out
	}
	for _, tc := range []struct {
		url  string
		want []string
	}{
		{base + "/widgets", []string{"a/w1", "a/w2", "b/w3"}},
		{base + "/namespaces/a/widgets", []string{"a/w1", "a/w2"}},
		{base + "/widgets?labelSelector=app%3Dweb", []string{"a/w1", "b/w3"}},
		{base + "/namespaces/a/widgets?labelSelector=app%3Dweb", []string{"a/w1"}},
		{base + "/widgets?fieldSelector=metadata.name%3Dw3", []string{"b/w3"}},
		{base + "/widgets?labelSelector=app%3Dnone", nil},
	} {
		if got := names(get(t, tc.url)); len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) || (len(got) > 1 && got[len(got)-1] != tc.want[len(tc.want)-1]) {
			t.Errorf("GET %s = %v, want %v", tc.url, got, tc.want)
		}
	}
	var one metav1.PartialObjectMetadata
	decode(t, get(t, base+"/namespaces/b/widgets/w3"), &one)
	if one.Name != "w3" || one.Kind != "Widget" {
		t.Errorf("get = %+v", one)
	}
	for _, tc := range []struct {
		method, url string
		code        int
	}{
		{http.MethodGet, base + "/namespaces/a/widgets/w3", http.StatusNotFound},
		{http.MethodGet, base + "/widgets?labelSelector=app%3D%3D%3D", http.StatusBadRequest},
		{http.MethodGet, base + "/widgets?fieldSelector=spec.x%3Dy", http.StatusBadRequest},
		{http.MethodGet, base + "/widgets?watch=true", http.StatusMethodNotAllowed},
		{http.MethodDelete, base + "/namespaces/a/widgets/w1", http.StatusMethodNotAllowed},
		{http.MethodPost, base + "/namespaces/a/widgets", http.StatusMethodNotAllowed},
		{http.MethodGet, base + "/namespaces/a/widgets/w1/status", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.url, resp.StatusCode, tc.code)
		}
	}

	// kubectl get asks for a table: Name and Age without columns.
	var table metav1.Table
	decode(t, get(t, base+"/widgets?labelSelector=app%3Dweb", "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"), &table)
	if len(table.Rows) != 2 || len(table.ColumnDefinitions) != 2 || table.Rows[0].Cells[0] != "w1" {
		t.Errorf("table = %+v", table)
	}

	// Discovery, classic and aggregated.
	var rl metav1.APIResourceList
	decode(t, get(t, base), &rl)
	if r := findResource(rl.APIResources, "widgets"); r == nil || !r.Namespaced || r.Kind != "Widget" || len(r.Verbs) != 2 {
		t.Errorf("classic discovery of widgets = %+v", r)
	}
	var groups metav1.APIGroupList
	decode(t, get(t, ts.URL+"/apis"), &groups)
	found := false
	for _, g := range groups.Groups {
		found = found || (g.Name == "example.orch.dev" && g.PreferredVersion.Version == "v1")
	}
	if !found {
		t.Errorf("/apis lacks example.orch.dev: %+v", groups)
	}
	var agg apidiscoveryv2.APIGroupDiscoveryList
	decode(t, get(t, ts.URL+"/apis", "Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), &agg)
	found = false
	for _, g := range agg.Items {
		if g.Name == "example.orch.dev" {
			rs := g.Versions[0].Resources
			found = len(rs) == 1 && rs[0].Resource == "widgets" && rs[0].Scope == apidiscoveryv2.ScopeNamespace && rs[0].ResponseKind.Kind == "Widget"
		}
	}
	if !found {
		t.Errorf("aggregated discovery lacks widgets")
	}
}
