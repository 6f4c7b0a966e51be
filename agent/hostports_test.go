package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/netproxy/proxy"
)

type fakeHostPortRules map[types.UID][]proxy.HostPort

func (f fakeHostPortRules) SetPodHostPorts(uid types.UID, hps []proxy.HostPort) {
	if len(hps) == 0 {
		delete(f, uid)
		return
	}
	f[uid] = hps
}

// fixedNetwork gives every pod ip, or fails.
type fixedNetwork struct {
	ip   string
	fail bool
}

func (f fixedNetwork) Setup(context.Context, *v1.Pod, string) (string, error) {
	if f.fail {
		return "", errors.New("no addresses left")
	}
	return f.ip, nil
}

func (fixedNetwork) Teardown(context.Context, *v1.Pod, string) error { return nil }

func TestHostPortNetwork(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-1"},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Ports: []v1.ContainerPort{
			{ContainerPort: 80, HostPort: 8081, Protocol: v1.ProtocolTCP},
		}}}},
	}
	ctx := context.Background()

	rules := fakeHostPortRules{}
	n := hostPortNetwork{PodNetwork: fixedNetwork{fail: true}, rules: rules}
	if _, err := n.Setup(ctx, pod, "/proc/1/ns/net"); err == nil || len(rules) != 0 {
		t.Fatalf("failed setup: err %v, mappings %v", err, rules)
	}

	n.PodNetwork = fixedNetwork{ip: "10.42.0.7"}
	ip, err := n.Setup(ctx, pod, "/proc/1/ns/net")
	if err != nil || ip != "10.42.0.7" {
		t.Fatalf("Setup = %q, %v", ip, err)
	}
	want := proxy.HostPort{Pod: types.NamespacedName{Namespace: "ns", Name: "web"}, HostPort: 8081, Protocol: proxy.ProtoTCP,
		PodIP: netip.MustParseAddr("10.42.0.7"), ContainerPort: 80}
	if got := rules["uid-1"]; len(got) != 1 || got[0] != want {
		t.Fatalf("mappings after setup: %+v, want [%+v]", got, want)
	}
	if err := n.Teardown(ctx, pod, "/proc/1/ns/net"); err != nil {
		t.Fatal(err)
	}
	if len(rules) != 0 {
		t.Fatalf("mappings after teardown: %v", rules)
	}
}

// TestRestoreHostPorts: after a restart the mappings of the node's
// running pods come from the API before any pod worker runs.
func TestRestoreHostPorts(t *testing.T) {
	port := func(host int32) v1.PodSpec {
		return v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c", Ports: []v1.ContainerPort{{ContainerPort: 80, HostPort: host}}}}}
	}
	now := metav1.Now()
	pods := v1.PodList{Items: []v1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "running", UID: "uid-1"}, Spec: port(8081),
			Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.42.0.7"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "done", UID: "uid-2"}, Spec: port(8082),
			Status: v1.PodStatus{Phase: v1.PodSucceeded, PodIP: "10.42.0.8"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "going", UID: "uid-3", DeletionTimestamp: &now}, Spec: port(8083),
			Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.42.0.9"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "no-ip-yet", UID: "uid-4"}, Spec: port(8084),
			Status: v1.PodStatus{Phase: v1.PodPending}},
	}}
	var query string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.Query().Get("fieldSelector")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&pods)
	}))
	t.Cleanup(ts.Close)
	a := newStaticTestAgent(t, ts.URL, ts.Client())

	rules := fakeHostPortRules{}
	a.restoreHostPorts(t.Context(), rules)
	if query != "spec.nodeName=n1" {
		t.Errorf("listed pods with fieldSelector %q", query)
	}
	if len(rules) != 1 || len(rules["uid-1"]) != 1 || rules["uid-1"][0].HostPort != 8081 {
		t.Errorf("restored %+v, want only the running pod's 8081", rules)
	}
}
