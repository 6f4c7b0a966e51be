package server

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNodeAuthorizationE2E runs the real orch server (ORCH_BIN) with its
// node and secrets encryption on, and checks that the node's agent does
// all it needs under the node authorizer: registers, heartbeats, runs a
// pod whose secret, config map and service account token it fetches, and
// reports its status; and that the secret is not in the database file as
// plain text. It shares the logs e2e test's server harness and directory.
func TestNodeAuthorizationE2E(t *testing.T) {
	bin := requireNodeE2E(t, "kubectl")
	data := filepath.Join(logsE2EDir, "data")
	importBusybox(t, data, "busybox:authz")
	t.Setenv("ORCH_SECRETS_ENCRYPTION", "true")
	c := &cluster{t: t, kubeconfig: startLogsServer(t, bin, data), cacheDir: filepath.Join(logsE2EDir, "cache")}
	t.Cleanup(func() {
		if out, err := c.try("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"); err != nil {
			t.Logf("delete pods: %v\n%s", err, out)
		}
	})
	c.eventually(90*time.Second, []string{" Ready "}, "get", "nodes")

	const password = "s3cr3t-authz-e2e"
	c.kubectl("create", "secret", "generic", "app-secret", "--from-literal=password="+password)
	c.kubectl("create", "configmap", "app-config", "--from-literal=greeting=hello-authz-e2e")
	c.apply(`apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - name: app
    image: busybox:authz
    imagePullPolicy: Never
    command: [sh, -c, 'echo "pw=$PASSWORD"; cat /cfg/greeting; echo; echo "ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"; sleep 3600']
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: app-secret, key: password}}
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - name: cfg
    configMap: {name: app-config}
`)
	c.eventually(90*time.Second, []string{"Running"}, "get", "pod", "app", "-o", "jsonpath={.status.phase}")
	c.eventually(30*time.Second, []string{"pw=" + password, "hello-authz-e2e", "ns=default"}, "logs", "app")

	db, err := os.ReadFile(filepath.Join(data, "server", "db", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{password, base64.StdEncoding.EncodeToString([]byte(password))} {
		if bytes.Contains(db, []byte(plain)) {
			t.Errorf("the database file holds the secret as plain text (%s)", plain)
		}
	}
	if !bytes.Contains(db, []byte("k8s:enc:aesgcm:v1:key1:")) {
		t.Error("no encrypted value in the database file")
	}
	log, err := os.ReadFile(filepath.Join(logsE2EDir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, `User \"system:node:`) || strings.Contains(line, `User "system:node:`) {
			t.Errorf("the node was denied something it needs: %s", line)
		}
	}
}
