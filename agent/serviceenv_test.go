package agent

import (
	"context"
	"errors"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/runtime/image"
)

func service(ns, name, ip string, ports ...v1.ServicePort) *v1.Service {
	return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceEnvVars(t *testing.T) {
	got := serviceEnvVars([]*v1.Service{
		service("default", "kubernetes", "10.43.0.1", v1.ServicePort{Name: "https", Port: 443, Protocol: v1.ProtocolTCP}),
		service("app", "my-db", "10.43.0.7", v1.ServicePort{Port: 5432}, v1.ServicePort{Name: "metrics-udp", Port: 9187, Protocol: v1.ProtocolUDP}),
		service("app", "headless", v1.ClusterIPNone, v1.ServicePort{Port: 80}),
		service("app", "external", "", v1.ServicePort{Port: 80}),
		service("app", "v6", "fd00::10", v1.ServicePort{Port: 80}),
	})
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST":       "10.43.0.1",
		"KUBERNETES_SERVICE_PORT":       "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT":               "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP":       "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":  "443",
		"KUBERNETES_PORT_443_TCP_ADDR":  "10.43.0.1",

		"MY_DB_SERVICE_HOST":             "10.43.0.7",
		"MY_DB_SERVICE_PORT":             "5432",
		"MY_DB_SERVICE_PORT_METRICS_UDP": "9187",
		"MY_DB_PORT":                     "tcp://10.43.0.7:5432",
		"MY_DB_PORT_5432_TCP":            "tcp://10.43.0.7:5432",
		"MY_DB_PORT_5432_TCP_PROTO":      "tcp",
		"MY_DB_PORT_5432_TCP_PORT":       "5432",
		"MY_DB_PORT_5432_TCP_ADDR":       "10.43.0.7",
		"MY_DB_PORT_9187_UDP":            "udp://10.43.0.7:9187",
		"MY_DB_PORT_9187_UDP_PROTO":      "udp",
		"MY_DB_PORT_9187_UDP_PORT":       "9187",
		"MY_DB_PORT_9187_UDP_ADDR":       "10.43.0.7",

		"V6_SERVICE_HOST":      "fd00::10",
		"V6_SERVICE_PORT":      "80",
		"V6_PORT":              "tcp://[fd00::10]:80",
		"V6_PORT_80_TCP":       "tcp://[fd00::10]:80",
		"V6_PORT_80_TCP_PROTO": "tcp",
		"V6_PORT_80_TCP_PORT":  "80",
		"V6_PORT_80_TCP_ADDR":  "fd00::10",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s=%s", k, got[k])
		}
	}
}

// agentWithServices is an agent whose service mirror holds svcs (listed
// when svcs is not nil).
func agentWithServices(svcs []*v1.Service) *Agent {
	a := &Agent{cfg: Config{Network: &NetworkConfig{}}}
	if svcs != nil {
		st := &serviceState{}
		st.services.Replace(svcs)
		a.services.Store(st)
	}
	return a
}

func TestContainerEnvServiceVariables(t *testing.T) {
	svcs := []*v1.Service{
		service("default", "kubernetes", "10.43.0.1", v1.ServicePort{Name: "https", Port: 443}),
		service("app", "web", "10.43.0.9", v1.ServicePort{Port: 80}),
		service("other", "db", "10.43.0.8", v1.ServicePort{Port: 5432}),
	}
	img := image.Image{Config: image.Config{Env: []string{"PATH=/bin", "WEB_SERVICE_HOST=from-image"}}}
	c := &v1.Container{Env: []v1.EnvVar{
		{Name: "WEB_SERVICE_PORT", Value: "8080"},
		{Name: "URL", Value: "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/"},
	}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "p"}}

	env, err := agentWithServices(svcs).containerEnv(context.Background(), pod, c, img, "10.42.0.5")
	if err != nil {
		t.Fatal(err)
	}
	got := envMap(env)
	for k, want := range map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.43.0.1",
		"KUBERNETES_SERVICE_PORT": "443",
		"WEB_SERVICE_HOST":        "10.43.0.9", // the service's beats the image's, as with CRI
		"WEB_SERVICE_PORT":        "8080",      // the container's own beats the service's
		"URL":                     "http://10.43.0.9:8080/",
		"PATH":                    "/bin",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if _, ok := got["DB_SERVICE_HOST"]; ok {
		t.Error("a service of another namespace leaked into the environment")
	}

	// enableServiceLinks: false keeps only the API server's variables.
	off := false
	pod.Spec.EnableServiceLinks = &off
	env, err = agentWithServices(svcs).containerEnv(context.Background(), pod, &v1.Container{}, image.Image{}, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range env {
		names = append(names, e.name)
	}
	if !slices.Contains(names, "KUBERNETES_SERVICE_HOST") || slices.Contains(names, "WEB_SERVICE_HOST") {
		t.Errorf("enableServiceLinks=false: %v", names)
	}

	// Before the first list of services a pod does not start (it would
	// miss KUBERNETES_SERVICE_HOST); a node without networking has no
	// service variables to give.
	if _, err := agentWithServices(nil).containerEnv(context.Background(), pod, &v1.Container{}, image.Image{}, ""); !errors.Is(err, errServicesNotRead) {
		t.Errorf("before the list: err %v, want %v", err, errServicesNotRead)
	}
	if _, err := (&Agent{}).containerEnv(context.Background(), pod, &v1.Container{}, image.Image{}, ""); err != nil {
		t.Errorf("no networking: %v", err)
	}
}
