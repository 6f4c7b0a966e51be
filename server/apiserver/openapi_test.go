package apiserver

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/managedfields"

	"github.com/orch-dev/orch/server/openapi"
	"github.com/orch-dev/orch/server/registry"
)

func TestTypeConverterFromTable(t *testing.T) {
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	b := openapi.NewBuilder(openAPIResources(table))
	defs := b.Definitions()
	if _, err := managedfields.NewTypeConverter(defs, false); err != nil {
		t.Fatalf("type converter: %v", err)
	}
	t.Logf("%d definitions", len(defs))
}
