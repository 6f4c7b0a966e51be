package registry

import (
	"strings"
	"testing"
)

// TestCoreWorkloadEntries checks what discovery and kubectl see of each
// kind: scope, short names, categories, subresources, and that a row of an
// empty object has one cell per column.
func TestCoreWorkloadEntries(t *testing.T) {
	cases := []struct {
		name, kind   string
		namespaced   bool
		shortNames   string
		categories   string
		subresources string
	}{
		{"namespaces", "Namespace", false, "ns", "", "status,finalize"},
		{"pods", "Pod", true, "po", "all", "status,binding,eviction,log,exec,attach,portforward,ephemeralcontainers"},
		{"nodes", "Node", false, "no", "", "status"},
		{"services", "Service", true, "svc", "all", "status"},
		{"endpoints", "Endpoints", true, "ep", "", ""},
		{"events", "Event", true, "ev", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := coreResource(t, tc.name)
			got := []string{r.Kind, strings.Join(r.ShortNames, ","), strings.Join(r.Categories, ","), strings.Join(r.Subresources, ",")}
			want := []string{tc.kind, tc.shortNames, tc.categories, tc.subresources}
			if sprint(got) != sprint(want) || r.Namespaced != tc.namespaced {
				t.Errorf("entry = %q namespaced %v, want %q namespaced %v", got, r.Namespaced, want, tc.namespaced)
			}
			obj := r.New()
			if r.Default != nil {
				r.Default(obj)
			}
			if cells := r.Row(obj); len(cells) != len(r.Columns) {
				t.Errorf("%d cells for %d columns", len(cells), len(r.Columns))
			}
			if r.NewList() == nil {
				t.Errorf("no list type")
			}
		})
	}
}
