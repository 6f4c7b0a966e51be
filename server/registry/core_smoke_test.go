package registry

import "testing"

func TestCoreWorkloadTableBuilds(t *testing.T) {
	if _, err := NewTable(); err != nil {
		t.Fatal(err)
	}
}
