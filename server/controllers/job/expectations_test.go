package job

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestFinalizerExpectations(t *testing.T) {
	e := newFinalizerExpectations()
	e.expect("ns/a", "p1")
	e.expect("ns/a", "p2")
	e.expect("ns/b", "p1")
	e.observe("ns/a", "p1")
	e.observe("ns/c", "p1") // unknown job: nothing to do
	for _, tc := range []struct {
		key  string
		uid  types.UID
		want bool
	}{
		{"ns/a", "p1", false},
		{"ns/a", "p2", true},
		{"ns/b", "p1", true},
		{"ns/c", "p1", false},
	} {
		if _, got := e.removed(tc.key)[tc.uid]; got != tc.want {
			t.Errorf("removed(%s) has %s = %v, want %v", tc.key, tc.uid, got, tc.want)
		}
	}
	// The set is a copy: observing after it was taken does not change it.
	removed := e.removed("ns/a")
	e.forget("ns/b")
	e.observe("ns/a", "p2")
	if _, ok := removed["p2"]; !ok {
		t.Errorf("removed set changed after it was taken: %v", removed)
	}
	if len(e.removed("ns/b"))+len(e.removed("ns/a")) != 0 || len(e.jobs) != 0 {
		t.Errorf("left after forget and observe: %v", e.jobs)
	}
}
