package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAutoDeployManifests runs a server with a manifest in its manifest
// directory and --disable ingressclass: built-ins are written and applied
// (but not the disabled one), the user's file is applied despite a bad
// document, and a change to it is applied while keeping fields a user set
// with another field manager.
func TestAutoDeployManifests(t *testing.T) {
	if !servesCoreV1(t) {
		t.Skip("core/v1 not in the resource table yet")
	}
	dataDir := filepath.Join(t.TempDir(), "orch")
	dir := filepath.Join(dataDir, "server", "manifests")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	app := func(value string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  value: " + value + "\n" +
			"---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
	}
	writeManifest := func(content string) {
		t.Helper()
		tmp := filepath.Join(dir, ".app.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "app.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	writeManifest(app("one"))

	cfg := testConfig(t, dataDir)
	cfg.Disable = []string{"ingressclass"}
	startRun(t, cfg)
	url, admin, _, _ := clients(t, cfg.WriteKubeconfig)

	getObject := func(path string) (int, metav1.ObjectMeta, map[string]string) {
		resp, body := get(t, admin, url+path, "")
		var obj struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Data     map[string]string `json:"data"`
		}
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &obj); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return resp.StatusCode, obj.Metadata, obj.Data
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	eventually("the local-path StorageClass", func() bool {
		code, _, _ := getObject("/apis/storage.k8s.io/v1/storageclasses/local-path")
		return code == http.StatusOK
	})
	_, sc, _ := getObject("/apis/storage.k8s.io/v1/storageclasses/local-path")
	if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" ||
		sc.Annotations["deploy.orch.dev/source"] != "local-storage.yaml" || sc.Labels["deploy.orch.dev/manifest"] != "local-storage" {
		t.Errorf("local-path class metadata: labels %v annotations %v", sc.Labels, sc.Annotations)
	}
	if len(sc.ManagedFields) == 0 || sc.ManagedFields[0].Manager != "orch-deploy" || sc.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("local-path managedFields = %+v, want an Apply by orch-deploy", sc.ManagedFields)
	}
	eventually("the configmap of app.yaml", func() bool {
		code, _, _ := getObject("/api/v1/namespaces/default/configmaps/app")
		return code == http.StatusOK
	})
	if code, _, _ := getObject("/apis/networking.k8s.io/v1/ingressclasses/orch"); code != http.StatusNotFound {
		t.Errorf("disabled IngressClass orch: GET answered %d, want 404", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "local-storage.yaml")); err != nil {
		t.Errorf("built-in copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ingressclass.yaml")); err == nil {
		t.Error("disabled built-in written to the manifest directory")
	}

	// A user labels the object with kubectl (another field manager); the
	// manifest changes; both survive.
	patch := []byte(`{"metadata":{"labels":{"team":"blue"}}}`)
	req, err := http.NewRequest(http.MethodPatch, url+"/api/v1/namespaces/default/configmaps/app?fieldManager=kubectl-label", bytes.NewReader(patch))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("label patch: %s", resp.Status)
	}
	writeManifest(app("two"))
	eventually("the changed manifest applied", func() bool {
		_, _, data := getObject("/api/v1/namespaces/default/configmaps/app")
		return data["value"] == "two"
	})
	_, cm, _ := getObject("/api/v1/namespaces/default/configmaps/app")
	if cm.Labels["team"] != "blue" || cm.Labels["deploy.orch.dev/manifest"] != "app" {
		t.Errorf("labels after re-apply = %v, want the user's team=blue kept", cm.Labels)
	}

	// Deleting the file deletes nothing.
	if err := os.Remove(filepath.Join(dir, "app.yaml")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if code, _, _ := getObject("/api/v1/namespaces/default/configmaps/app"); code != http.StatusOK {
		t.Errorf("configmap after its file was deleted: %d", code)
	}
	if strings.Contains(cm.Annotations["deploy.orch.dev/source"], "/") {
		t.Errorf("source annotation %q names a path, want the file name", cm.Annotations["deploy.orch.dev/source"])
	}
}
