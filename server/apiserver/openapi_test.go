package apiserver

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/managedfields"

	"github.com/orch-dev/orch/server/openapi"
	"github.com/orch-dev/orch/server/registry"
)

// TestTypeConverterCoversTable: server-side apply has a schema for every
// served kind.
func TestTypeConverterCoversTable(t *testing.T) {
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := managedfields.NewTypeConverter(openapi.NewBuilder(openAPIResources(table)).Definitions(), false)
	if err != nil {
		t.Fatalf("type converter: %v", err)
	}
	for _, res := range table.Resources() {
		obj := res.New()
		obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
		if _, err := tc.ObjectToTyped(obj); err != nil {
			t.Errorf("%s: %v", res.GroupVersionKind(), err)
		}
	}
}
