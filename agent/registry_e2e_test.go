package agent

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/orch-dev/orch/internal/testregistry"
	"github.com/orch-dev/orch/runtime/registry"
)

var _ ImagePuller = (*registry.Puller)(nil)

// TestImagePullE2E runs pods whose images come from registries on
// 127.0.0.1 (internal/testregistry) through runtime/registry, with the
// real orch server (ORCH_BIN) and this package's agent, as TestAgentE2E
// does: a plain image, a multi-platform index, a private registry with a
// bearer token and an imagePullSecret, and an image that does not exist.
func TestImagePullE2E(t *testing.T) {
	bin := e2eBinary(t)
	freshAgentE2EDir(t)

	host := testregistry.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	public := testregistry.New(t, testregistry.Options{})
	public.PushImage("test/busybox", "1", host)
	public.PushIndex("test/multi", "1",
		testregistry.Platform{OS: "linux", Architecture: "amd64"},
		testregistry.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	private := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBearer, Username: "puller", Password: "pa55"})
	private.PushImage("team/busybox", "2", host)

	restCfg := startServer(t, bin)
	cs := kubernetes.NewForConfigOrDie(restCfg)
	puller, err := registry.New(registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := localNodeConfig(t, restCfg, e2eDir, e2eCgroupRoot)
	cfg.ImagePuller = puller
	agent := startAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	pullPod := func(name, image string, c v1.Container) *v1.Pod {
		p := newPod(name, c)
		p.Spec.Containers[0].Image = image
		createPod(t, cs, p)
		return p
	}
	running := func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning && podReady(p) }

	// A plain image from a registry.
	plainRef := public.Host + "/test/busybox:1"
	pullPod("pulled", plainRef, v1.Container{Name: "c", Command: []string{"sleep", "3600"}})
	pulled := waitPod(t, cs, "pulled", 90*time.Second, "Running", running)
	if id := pulled.Status.ContainerStatuses[0].ImageID; !strings.HasPrefix(id, "sha256:") && !strings.Contains(id, "@sha256:") {
		t.Errorf("imageID = %q", id)
	}
	for _, reason := range []string{"Pulling", "Pulled"} {
		if !hasEvent(ctx, t, cs, "pulled", reason) {
			t.Errorf("no %s event for the pulled pod", reason)
		}
	}

	// A multi-platform index: the node's platform is picked. Each image of
	// the index carries /etc/platform; the pod is Ready only if it is ours.
	want := "linux/" + goruntime.GOARCH
	if goruntime.GOARCH == "arm64" {
		want += "/v8"
	}
	multi := newPod("multiarch", v1.Container{Name: "c", Command: []string{"sleep", "3600"},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"sh", "-c", "test \"$(cat /etc/platform)\" = " + want}}},
			PeriodSeconds: 1,
		}})
	multi.Spec.Containers[0].Image = public.Host + "/test/multi:1"
	createPod(t, cs, multi)
	waitPod(t, cs, "multiarch", 90*time.Second, "Running and Ready with /etc/platform "+want, running)
	img, err := agent.current().images.Get(public.Host + "/test/multi:1")
	if err != nil || img.Platform.Architecture != goruntime.GOARCH {
		t.Errorf("stored multi-platform image = %+v, %v; want architecture %s", img.Platform, err, goruntime.GOARCH)
	}

	// A private registry: bearer token with the pod's imagePullSecret.
	auths, _ := json.Marshal(map[string]any{"auths": map[string]any{private.Host: map[string]string{"username": "puller", "password": "pa55"}}})
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: v1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{v1.DockerConfigJsonKey: auths},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	priv := newPod("private", v1.Container{Name: "c", Command: []string{"sleep", "3600"}})
	priv.Spec.Containers[0].Image = private.Host + "/team/busybox:2"
	priv.Spec.ImagePullSecrets = []v1.LocalObjectReference{{Name: "regcred"}}
	createPod(t, cs, priv)
	waitPod(t, cs, "private", 90*time.Second, "Running", running)
	if private.TokenRequests() == 0 {
		t.Error("the private registry issued no token")
	}

	// An image the registry does not have: ErrImagePull, then
	// ImagePullBackOff, with a Failed event saying why.
	pullPod("unknown", public.Host+"/test/nothing:1", v1.Container{Name: "c", Command: []string{"true"}})
	sawErrImagePull := false
	waitPod(t, cs, "unknown", 90*time.Second, "ImagePullBackOff", func(p *v1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		if w.Reason == reasonErrImagePull {
			sawErrImagePull = true
			if !strings.Contains(w.Message, "manifest unknown") {
				t.Errorf("ErrImagePull message = %q, want it to say manifest unknown", w.Message)
			}
		}
		return w.Reason == reasonImagePullBackOff
	})
	if !sawErrImagePull {
		t.Error("the pod never showed ErrImagePull before ImagePullBackOff")
	}
	if _, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command("kubectl", "--kubeconfig", filepath.Join(e2eDir, "kubeconfig.yaml"),
			"--cache-dir", filepath.Join(e2eDir, "kubectl-cache"), "describe", "pod", "unknown").CombinedOutput()
		for _, s := range []string{"ImagePullBackOff", "Failed", "Failed to pull image \"" + public.Host + "/test/nothing:1\"", "manifest unknown"} {
			if err != nil || !strings.Contains(string(out), s) {
				t.Errorf("kubectl describe pod unknown (err %v) lacks %q:\n%s", err, s, out)
				break
			}
		}
	}

	for _, name := range []string{"pulled", "multiarch", "private", "unknown"} {
		zero := int64(0)
		if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", name, err)
		}
	}
	waitFor(t, 60*time.Second, "runtime empty", func() (bool, error) {
		return len(agent.current().rt.ListSandboxes()) == 0 && len(agent.current().rt.ListContainers()) == 0, nil
	})
}
