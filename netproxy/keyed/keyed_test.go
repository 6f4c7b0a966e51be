package keyed

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMap(t *testing.T) {
	svc := func(ns, name, rv string) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv}}
	}
	contents := func(m *Map[*v1.Service]) []string {
		var out []string
		for _, o := range m.Values(0) {
			out = append(out, o.Namespace+"/"+o.Name+"@"+o.ResourceVersion)
		}
		slices.Sort(out)
		return out
	}
	var m Map[*v1.Service]
	m.Update(svc("a", "web", "1")) // a watch event before any list
	if m.Listed() {
		t.Fatal("listed before Replace")
	}
	m.Replace([]*v1.Service{svc("a", "web", "2"), svc("b", "web", "3")})
	m.Update(svc("a", "web", "4"))
	m.Update(svc("a", "db", "5"))
	m.Delete("b", "web")
	m.Delete("b", "missing")
	if got, want := contents(&m), []string{"a/db@5", "a/web@4"}; !m.Listed() || !slices.Equal(got, want) || m.Len() != 2 {
		t.Fatalf("got %v (listed %v, len %d), want %v", got, m.Listed(), m.Len(), want)
	}
	if o, ok := m.Get("a", "web"); !ok || o.ResourceVersion != "4" {
		t.Errorf("Get(a, web) = %v, %v", o, ok)
	}
	// A relist drops what is gone.
	m.Replace([]*v1.Service{svc("c", "api", "7")})
	if got, want := contents(&m), []string{"c/api@7"}; !slices.Equal(got, want) {
		t.Fatalf("after relist: got %v, want %v", got, want)
	}
	if got := m.Values(1); cap(got) < 2 {
		t.Errorf("Values(1) has no room for one more: cap %d", cap(got))
	}
}
