package agent

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/runtime/image"
)

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	tests := map[string]string{
		"plain":        "plain",
		"$(A)":         "1",
		"x$(A)y$(B)":   "x1ytwo",
		"$(MISSING)":   "$(MISSING)",
		"$$(A)":        "$(A)",
		"cost $5":      "cost $5",
		"open $(A":     "open $(A",
		"trailing $":   "trailing $",
		"$(A)$(A)$$$$": "11$$",
	}
	for in, want := range tests {
		if got := expandVars(in, vars); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContainerArgs(t *testing.T) {
	ic := image.Config{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	env := []envVar{{"NAME", "world"}}
	tests := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/entry", "default"}},
		{"args replace cmd", nil, []string{"hello", "$(NAME)"}, []string{"/entry", "hello", "world"}},
		{"command replaces both", []string{"sh", "-c"}, nil, []string{"sh", "-c"}},
		{"command and args", []string{"echo"}, []string{"$(NAME)"}, []string{"echo", "world"}},
	}
	for _, tt := range tests {
		c := &v1.Container{Command: tt.command, Args: tt.args}
		if got := containerArgs(c, ic, env); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPodFieldValue(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, nil, "c")
	pod.Labels = map[string]string{"app": "web", "tier": "x"}
	pod.Spec.NodeName = "n1"
	tests := map[string]string{
		"metadata.name":          "p",
		"metadata.namespace":     "ns",
		"metadata.uid":           "u",
		"metadata.labels['app']": "web",
		"metadata.labels":        "app=\"web\"\ntier=\"x\"",
		"spec.nodeName":          "n1",
		"status.hostIP":          "198.18.0.1",
		"status.podIP":           "10.42.0.9",
	}
	for path, want := range tests {
		got, err := podFieldValue(pod, path, "198.18.0.1", "10.42.0.9")
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := podFieldValue(pod, "spec.bogus", "", ""); err == nil {
		t.Error("unknown path accepted")
	}
}

func TestEnvListOverrides(t *testing.T) {
	got := envList([]envVar{{"PATH", "/bin"}, {"A", "1"}, {"PATH", "/usr/bin"}})
	want := []string{"PATH=/usr/bin", "A=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("envList = %q, want %q", got, want)
	}
}
