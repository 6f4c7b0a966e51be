package server

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/orch-dev/orch/internal/testregistry"
)

// TestRegistryMirrorE2E runs the real orch server (ORCH_BIN) with its node
// and a registries.yaml (named by ORCH_PRIVATE_REGISTRY, the env form of
// --private-registry) that mirrors a registry to an in-process one on
// 127.0.0.1, with a rewrite and the mirror's credentials for its bearer
// token: a pod of the mirrored image runs. The mirrored registry is
// 127.0.0.2:5000, so that a fallback to it would stay on this machine.
// It shares the logs e2e test's server harness and directory.
func TestRegistryMirrorE2E(t *testing.T) {
	bin := requireNodeE2E(t, "kubectl")
	data := filepath.Join(logsE2EDir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	reg := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBearer, Username: "mirror", Password: "pa55"})
	reg.PushImage("mirror/library/busybox", "1.36", testregistry.Platform{OS: "linux", Architecture: goruntime.GOARCH})
	registries := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(registries, fmt.Appendf(nil, `mirrors:
  "127.0.0.2:5000":
    endpoint: ["http://%s"]
    rewrite:
      "^library/(.*)": "mirror/library/$1"
configs:
  %q:
    auth: {username: mirror, password: pa55}
`, reg.Host, reg.Host), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORCH_PRIVATE_REGISTRY", registries)

	k := &kubectlRunner{t: t, kubeconfig: startLogsServer(t, bin, data), cacheDir: filepath.Join(logsE2EDir, "cache")}
	t.Cleanup(func() {
		if out, err := k.run(nil, "delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"); err != nil {
			t.Logf("delete pods: %v\n%s", err, out)
		}
	})
	k.eventually("the node", func() bool {
		out, _ := k.run(nil, "get", "nodes")
		return strings.Contains(out, " Ready ")
	})
	const image = "127.0.0.2:5000/library/busybox:1.36"
	k.must(nil, "run", "mirrored", "--image="+image, "--", "sh", "-c", "cat /etc/platform; exec sleep 3600")
	k.eventually("the mirrored pod to run", func() bool {
		out, _ := k.run(nil, "get", "pod", "mirrored", "-o", "jsonpath={.status.phase}")
		return out == "Running"
	})
	describe := k.must(nil, "describe", "pod", "mirrored")
	if !strings.Contains(describe, `Successfully pulled image "`+image+`"`) {
		t.Errorf("kubectl describe shows no Pulled event:\n%s", describe)
	}
	k.eventually("the pod's log", func() bool {
		out, _ := k.run(nil, "logs", "mirrored")
		return out == "linux/"+goruntime.GOARCH+"\n"
	})
	if reg.TokenRequests() == 0 || reg.Requests("GET /v2/mirror/library/busybox/manifests/1.36") == 0 {
		t.Error("the pod's image did not come from the mirror with a token")
	}
}
