package apiserver_test

import (
	"strings"
	"testing"
)

// TestKubectlOpenAPIAndApply drives the discovery, OpenAPI and patch paths
// with the real kubectl: api-resources, explain, create, apply (client-
// and server-side), server-side conflicts, and every patch type.
func TestKubectlOpenAPIAndApply(t *testing.T) {
	ts := startServer(t)
	k := ts.kubectl(t, "/usr/bin/kubectl")

	out := k.run("api-resources")
	mustContain(t, out, "replicationcontrollers", "rc", "ReplicationController", "pods", "po")

	out = k.run("explain", "rc.spec.replicas")
	mustContain(t, out, "KIND:", "ReplicationController", "replicas", "integer", "number of desired replicas")
	out = k.run("explain", "pods.spec.containers.ports")
	mustContain(t, out, "containerPort", "<[]ContainerPort>")

	rc := `apiVersion: v1
kind: ReplicationController
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
        ports:
        - containerPort: 80
`
	k.withStdin(rc).run("apply", "--server-side", "-f", "-")
	out = k.run("get", "rc", "web", "-o", "jsonpath={.spec.replicas} {.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}")
	if out != "2 kubectl Apply" {
		t.Errorf("after server-side apply: %q", out)
	}
	// Applying the same configuration again is a no-op.
	k.withStdin(rc).run("apply", "--server-side", "-f", "-")

	// Another manager changing replicas conflicts, then forces.
	other := strings.Replace(rc, "replicas: 2", "replicas: 3", 1)
	errOut := k.withStdin(other).fail("apply", "--server-side", "--field-manager=other", "-f", "-")
	mustContain(t, errOut, "conflict", `"kubectl"`, ".spec.replicas")
	k.withStdin(other).run("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-")
	if out := k.run("get", "rc", "web", "-o", "jsonpath={.spec.replicas}"); out != "3" {
		t.Errorf("after forced apply replicas = %q", out)
	}

	// Client-side apply computes a strategic merge patch.
	cm := `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
`
	k.withStdin(cm).run("apply", "-f", "-")
	k.withStdin(strings.Replace(cm, `a: "1"`, `b: "2"`, 1)).run("apply", "-f", "-")
	if out := k.run("get", "configmap", "settings", "-o", "jsonpath={.data}"); out != `{"b":"2"}` {
		t.Errorf("after client-side apply data = %s", out)
	}

	// Unknown fields: kubectl relies on the server's Strict validation.
	bad := strings.Replace(cm, "data:", "bogus: 1\ndata:", 1)
	errOut = k.withStdin(bad).fail("create", "-f", "-")
	mustContain(t, errOut, "bogus")

	k.run("patch", "rc", "web", "--type=merge", "-p", `{"spec":{"replicas":1}}`)
	k.run("patch", "rc", "web", "--type=json", "-p", `[{"op":"replace","path":"/spec/replicas","value":4}]`)
	k.run("patch", "rc", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:2"}]}}}}`)
	out = k.run("get", "rc", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}")
	if out != "4 busybox:2 80" {
		t.Errorf("after patches: %q", out)
	}
	errOut = k.fail("patch", "rc", "web", "--type=json", "-p", `[{"op":"remove","path":"/spec/nothere"}]`)
	// As Kubernetes: 422 with the library's reason in the causes.
	mustContain(t, errOut, "The request is invalid")
}
