package container

import (
	"slices"
	"sort"
	"testing"
)

// The per-pod listings return exactly what filtering the whole lists
// gives, from records alone (no processes: no root needed).
func TestListOnePodsSandboxesAndContainers(t *testing.T) {
	r, err := Open(Config{StateDir: t.TempDir(), Exe: "/bin/true", ShimExe: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sandboxState{{ID: "s1", PodUID: "a"}, {ID: "s2", PodUID: "b"}, {ID: "s3", PodUID: "a"}} {
		r.sandboxes[s.ID] = s
	}
	for _, c := range []*containerState{
		{ID: "c1", SandboxID: "s1", Labels: map[string]string{"pod": "a"}},
		{ID: "c2", SandboxID: "s2", Labels: map[string]string{"pod": "b"}},
		{ID: "c3", SandboxID: "s3", Labels: map[string]string{"pod": "a", "x": "y"}},
		{ID: "c4", SandboxID: "s3", Labels: map[string]string{"x": ""}},
		{ID: "c5", SandboxID: "s3"},
	} {
		r.containers[c.ID] = c
	}
	sandboxIDs := func(l []*Sandbox) []string {
		var out []string
		for _, s := range l {
			out = append(out, s.ID)
		}
		sort.Strings(out)
		return out
	}
	containerIDs := func(l []ContainerStatus) []string {
		var out []string
		for _, c := range l {
			out = append(out, c.ID)
		}
		sort.Strings(out)
		return out
	}
	for _, tc := range []struct {
		got, want []string
	}{
		{sandboxIDs(r.PodSandboxes("a")), []string{"s1", "s3"}},
		{sandboxIDs(r.PodSandboxes("b")), []string{"s2"}},
		{sandboxIDs(r.PodSandboxes("c")), nil},
		{sandboxIDs(r.ListSandboxes()), []string{"s1", "s2", "s3"}},
		{containerIDs(r.ListContainersWithLabel("pod", "a")), []string{"c1", "c3"}},
		{containerIDs(r.ListContainersWithLabel("x", "")), []string{"c4"}},
		{containerIDs(r.ListContainersWithLabel("pod", "c")), nil},
		{containerIDs(r.ListContainers()), []string{"c1", "c2", "c3", "c4", "c5"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
	// Exited without an exit record: the status says so (Unknown).
	if st := r.ListContainersWithLabel("pod", "b"); len(st) != 1 || st[0].State != StateExited || st[0].Reason != "Unknown" {
		t.Errorf("c2: %+v", st)
	}
}
