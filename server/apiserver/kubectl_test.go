package apiserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// kubectlMinors are the clients /usr/bin/kubectl dispatches to, by the
// server's reported minor version.
var kubectlMinors = []string{"v1.31.9+orch", "v1.32.4+orch", "v1.33.1+orch"}

const appManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
  labels: {app: web}
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: shop
type: Opaque
stringData:
  password: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  rules:
  - host: shop.example.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
`

func TestKubectl(t *testing.T) {
	if testing.Short() {
		t.Skip("drives real kubectl")
	}
	for _, version := range kubectlMinors {
		t.Run(version, func(t *testing.T) {
			ts := startServer(t, withVersion(version))
			k := ts.kubectl(t, "/usr/bin/kubectl")
			dir := t.TempDir()
			testKubectlSession(t, k, dir, version)
		})
	}
}

func testKubectlSession(t *testing.T, k *kubectlRunner, dir, version string) {
	minor := strings.Split(version, ".")[1]

	out := k.run("version", "-o", "json")
	mustContain(t, out, `"gitVersion": "`+version+`"`, `"minor": "`+minor+`"`)

	out = k.run("api-resources")
	mustContain(t, out, "deployments", "deploy", "apps/v1", "Deployment", "pods", "po", "ConfigMap")
	out = k.run("api-versions")
	mustContain(t, out, "apps/v1", "autoscaling/v2", "networking.k8s.io/v1", "v1\n")

	k.run("cluster-info")

	out = k.run("create", "namespace", "team-a")
	mustContain(t, out, "namespace/team-a created")
	out = k.run("get", "ns")
	mustContain(t, out, "NAME", "STATUS", "team-a", "Active", "kube-system", "default")

	manifest := filepath.Join(dir, "app.yaml")
	writeFile(t, manifest, appManifest)
	out = k.run("apply", "-f", manifest)
	mustContain(t, out, "namespace/shop created", "configmap/web-config created", "secret/web-secret created",
		"deployment.apps/web created", "service/web created", "ingress.networking.k8s.io/web created")
	out = k.run("apply", "-f", manifest)
	mustContain(t, out, "namespace/shop unchanged", "configmap/web-config unchanged", "deployment.apps/web unchanged",
		"service/web unchanged", "ingress.networking.k8s.io/web unchanged")

	out = k.run("get", "deploy", "-n", "shop", "-o", "wide")
	mustContain(t, out, "READY", "UP-TO-DATE", "AVAILABLE", "CONTAINERS", "IMAGES", "SELECTOR", "busybox:1.36", "app=web")
	out = k.run("get", "svc", "web", "-n", "shop", "-o", "yaml")
	mustContain(t, out, "clusterIP: 10.43.", "protocol: TCP", "targetPort: 8080", "sessionAffinity: None")
	out = k.run("get", "cm", "web-config", "-n", "shop", "-o", "json")
	mustContain(t, out, `"greeting": "hello"`, `"resourceVersion"`, `"uid"`)
	out = k.run("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.strategy.type}/{.spec.revisionHistoryLimit}")
	if out != "RollingUpdate/10" {
		t.Errorf("deployment defaults: got %q", out)
	}
	out = k.run("get", "cm", "-n", "shop", "-l", "app=web")
	mustContain(t, out, "web-config")
	out = k.run("get", "cm", "-n", "shop", "--show-labels")
	mustContain(t, out, "LABELS", "app=web")
	out = k.run("get", "cm", "-A")
	mustContain(t, out, "NAMESPACE", "shop", "web-config")
	out = k.run("get", "ns", "--field-selector", "metadata.name=shop")
	mustContain(t, out, "shop")
	if strings.Contains(out, "team-a") {
		t.Errorf("field selector did not filter:\n%s", out)
	}

	// A bounded watch sees the initial object and a change.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, k.bin, "get", "cm", "web-config", "-n", "shop", "-w", "-o", "name")
	watch.Env = k.env
	watchOut := &lockedBuffer{}
	watch.Stdout = watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	k.run("label", "cm", "web-config", "-n", "shop", "tier=front")
	waitFor(t, func() bool { return strings.Count(watchOut.String(), "configmap/web-config") >= 2 })
	_ = watch.Process.Kill()
	_ = watch.Wait()

	out = k.run("annotate", "cm", "web-config", "-n", "shop", "owner=team-a")
	mustContain(t, out, "configmap/web-config annotated")
	out = k.run("get", "cm", "web-config", "-n", "shop", "-o", "jsonpath={.metadata.labels.tier},{.metadata.annotations.owner}")
	if out != "front,team-a" {
		t.Errorf("label/annotate: got %q", out)
	}

	k.run("patch", "cm", "web-config", "-n", "shop", "--type=merge", "-p", `{"data":{"merge":"yes"}}`)
	k.run("patch", "cm", "web-config", "-n", "shop", "--type=json", "-p", `[{"op":"add","path":"/data/json","value":"yes"}]`)
	k.run("patch", "deploy", "web", "-n", "shop", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}`)
	out = k.run("get", "cm", "web-config", "-n", "shop", "-o", "jsonpath={.data.merge},{.data.json}")
	if out != "yes,yes" {
		t.Errorf("merge/json patch: got %q", out)
	}
	out = k.run("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image},{.spec.template.spec.containers[0].command[0]},{.metadata.generation}")
	if out != "busybox:1.37,httpd,2" {
		t.Errorf("strategic patch kept the container and bumped generation: got %q", out)
	}

	// edit with an EDITOR script.
	editor := filepath.Join(dir, "editor.sh")
	writeFile(t, editor, "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n")
	os.Chmod(editor, 0o755)
	k.env = append(k.env, "KUBE_EDITOR="+editor)
	out = k.run("edit", "cm", "web-config", "-n", "shop")
	mustContain(t, out, "configmap/web-config edited")

	// replace and diff.
	out = k.run("get", "cm", "web-config", "-n", "shop", "-o", "yaml")
	replaced := strings.Replace(out, "greeting: edited", "greeting: replaced", 1)
	writeFile(t, filepath.Join(dir, "cm.yaml"), replaced)
	k.run("replace", "-f", filepath.Join(dir, "cm.yaml"))
	out = k.run("get", "cm", "web-config", "-n", "shop", "-o", "jsonpath={.data.greeting}")
	if out != "replaced" {
		t.Errorf("replace: got %q", out)
	}
	// diff exits 1 when there are differences.
	diffOut, _, err := k.exec("diff", "-f", manifest)
	if err == nil {
		t.Errorf("kubectl diff found no differences after edits")
	}
	mustContain(t, diffOut, "greeting")

	out = k.run("create", "configmap", "lit", "-n", "team-a", "--from-literal=a=1", "--from-literal=b=2")
	mustContain(t, out, "configmap/lit created")
	envFile := filepath.Join(dir, "app.env")
	writeFile(t, envFile, "MODE=prod\nLEVEL=3\n")
	k.run("create", "configmap", "envfile", "-n", "team-a", "--from-env-file="+envFile)
	k.run("create", "configmap", "file", "-n", "team-a", "--from-file="+envFile)
	out = k.run("get", "cm", "-n", "team-a")
	mustContain(t, out, "DATA", "lit", "envfile", "file")
	out = k.run("get", "cm", "envfile", "-n", "team-a", "-o", "jsonpath={.data.MODE}")
	if out != "prod" {
		t.Errorf("from-env-file: got %q", out)
	}

	k.run("create", "secret", "generic", "gen", "-n", "team-a", "--from-literal=token=abc")
	k.run("create", "secret", "docker-registry", "reg", "-n", "team-a", "--docker-server=registry.test",
		"--docker-username=u", "--docker-password=p")
	crt, key := writeTLSPair(t, dir)
	k.run("create", "secret", "tls", "tls", "-n", "team-a", "--cert="+crt, "--key="+key)
	out = k.run("get", "secrets", "-n", "team-a")
	mustContain(t, out, "kubernetes.io/dockerconfigjson", "kubernetes.io/tls", "Opaque")

	out = k.run("scale", "deploy", "web", "-n", "shop", "--replicas=5")
	mustContain(t, out, "deployment.apps/web scaled")
	out = k.run("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}")
	if out != "5" {
		t.Errorf("scale: got %q", out)
	}

	out = k.run("explain", "pod.spec.containers")
	mustContain(t, out, "KIND:", "Pod", "FIELD:", "containers", "image")

	ssa := filepath.Join(dir, "ssa.yaml")
	writeFile(t, ssa, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: team-a\ndata:\n  k: v\n")
	out = k.run("apply", "--server-side", "-f", ssa)
	mustContain(t, out, "configmap/ssa serverside-applied")
	out = k.run("get", "cm", "ssa", "-n", "team-a", "-o", "jsonpath={.metadata.managedFields[0].manager}")
	if out != "kubectl" {
		t.Errorf("server-side apply manager: got %q", out)
	}

	out = k.run("create", "configmap", "dry", "-n", "team-a", "--from-literal=a=1", "--dry-run=server")
	mustContain(t, out, "configmap/dry created (server dry run)")
	k.fail("get", "cm", "dry", "-n", "team-a")

	// An event shows in describe.
	writeFile(t, filepath.Join(dir, "event.yaml"), `apiVersion: v1
kind: Event
metadata:
  name: web-config.1
  namespace: shop
involvedObject:
  apiVersion: v1
  kind: ConfigMap
  name: web-config
  namespace: shop
reason: Tested
message: the test touched this config map
type: Normal
source:
  component: orch-test
`)
	uid := k.run("get", "cm", "web-config", "-n", "shop", "-o", "jsonpath={.metadata.uid}")
	k.run("create", "-f", filepath.Join(dir, "event.yaml"))
	k.run("patch", "event", "web-config.1", "-n", "shop", "--type=merge", "-p", `{"involvedObject":{"uid":"`+uid+`"}}`)
	out = k.run("describe", "cm", "web-config", "-n", "shop")
	mustContain(t, out, "Name:", "web-config", "Events:", "Tested", "the test touched this config map")

	// Deletes: plain with --wait, and the cascade modes (no dependents here:
	// the garbage collector's cascades are tested with the controllers).
	out = k.run("delete", "cm", "lit", "-n", "team-a", "--wait")
	mustContain(t, out, `configmap "lit" deleted`)
	// Orphaning is finished by the garbage collector: here only the API
	// server's part shows, the orphan finalizer on a deleted object.
	k.run("delete", "cm", "envfile", "-n", "team-a", "--cascade=orphan", "--wait=false")
	out = k.run("get", "cm", "envfile", "-n", "team-a", "-o", "jsonpath={.metadata.finalizers} {.metadata.deletionTimestamp}")
	mustContain(t, out, "orphan", "T")
	k.run("delete", "deploy", "web", "-n", "shop", "--cascade=background")
	out = k.fail("get", "cm", "lit", "-n", "team-a")
	mustContain(t, out, `configmaps "lit" not found`)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTLSPair writes a self-signed certificate and key for `create secret tls`.
func writeTLSPair(t *testing.T, dir string) (crtPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shop.example.test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"shop.example.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crtPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, crtPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return crtPath, keyPath
}

// lockedBuffer collects a running command's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
