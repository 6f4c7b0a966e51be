package registry

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// coreResource builds the whole table (so t.add's checks run) and returns
// one core/v1 entry.
func coreResource(t *testing.T, name string) *Resource {
	t.Helper()
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	r := tbl.Lookup(schema.GroupVersion{Version: "v1"}, name)
	if r == nil {
		t.Fatalf("v1 %s not in the table", name)
	}
	return r
}

// errorKeys renders errors as "path: Type" sorted, for comparison.
func errorKeys(errs field.ErrorList) []string {
	keys := make([]string, 0, len(errs))
	for _, e := range errs {
		keys = append(keys, e.Field+": "+string(e.Type))
	}
	sort.Strings(keys)
	return keys
}

// checkErrors compares errs with want ("path: FieldValueX" entries, in any
// order); nil want means valid.
func checkErrors(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := errorKeys(errs)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n got  %q\n want %q\n (%v)", got, want, errs)
	}
}

func sprint(v interface{}) string { return fmt.Sprintf("%v", v) }
