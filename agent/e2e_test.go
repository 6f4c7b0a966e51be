package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/orch-dev/orch/runtime/container"
)

// The test binary re-executes itself as the container runtime's init,
// pause and shim processes, exactly as orch does.
func TestMain(m *testing.M) {
	container.Reexec()
	os.Exit(m.Run())
}

const (
	e2eDir        = "/tmp/orch-agent-e2e"
	e2eCgroupRoot = "/orch-agent-e2e"
	e2eNode       = "e2e-node"
	e2eImage      = "busybox:e2e"
)

// TestAgentE2E runs the real orch server (ORCH_BIN) on 127.0.0.1 with its
// agent disabled and this package's agent in-process against it, with
// real containers.
func TestAgentE2E(t *testing.T) {
	bin := e2eBinary(t)
	freshAgentE2EDir(t)

	restCfg := startServer(t, bin)
	cs := kubernetes.NewForConfigOrDie(restCfg)
	cfg := localNodeConfig(t, restCfg, e2eDir, e2eCgroupRoot)
	agent := startAgent(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	waitFor(t, 30*time.Second, "node Ready", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, e2eNode, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue && c.Reason == "KubeletReady" {
				return n.Labels["kubernetes.io/hostname"] == e2eNode && n.Status.NodeInfo.KubeletVersion != "", nil
			}
		}
		return false, nil
	})
	waitFor(t, 30*time.Second, "node lease", func() (bool, error) {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, e2eNode, metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == e2eNode, nil
	})

	// A web server with a readiness probe dialled inside the pod's netns.
	web := newPod("web", v1.Container{
		Name:    "httpd",
		Command: []string{"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 1,
		},
	})
	createPod(t, cs, web)
	webPod := waitPod(t, cs, "web", 60*time.Second, "Running and Ready", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodRunning && podReady(p)
	})
	webStatus := webPod.Status.ContainerStatuses[0]
	if !strings.HasPrefix(webStatus.ContainerID, "orch://") || webStatus.ImageID == "" || webStatus.Started == nil || !*webStatus.Started {
		t.Errorf("web container status = %+v", webStatus)
	}
	// As containerd reports an imported image: its tag, and the digest of
	// the manifest it writes for a docker-save tar.
	if webStatus.Image != "docker.io/library/busybox:e2e" || !strings.HasPrefix(webStatus.ImageID, "docker.io/library/busybox@sha256:") || len(webStatus.ImageID) != len("docker.io/library/busybox@sha256:")+64 {
		t.Errorf("web container image %q, imageID %q; want docker.io/library/busybox:e2e and docker.io/library/busybox@sha256:<digest>", webStatus.Image, webStatus.ImageID)
	}

	// Exec in the running container through the runtime.
	id := strings.TrimPrefix(webStatus.ContainerID, "orch://")
	checkServiceAccountToken(ctx, t, agent.current(), restCfg, id, "web")
	var out, errOut bytes.Buffer
	code, err := agent.current().rt.Exec(ctx, id, container.ExecRequest{Args: []string{"wget", "-O", "-", "http://127.0.0.1:8080/"}, Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 || !strings.Contains(out.String(), "hello-from-web") {
		t.Errorf("exec wget in web: code %d, err %v, output %q, stderr %q", code, err, out.String(), errOut.String())
	}

	// A static pod from DATA/agent/pod-manifests, shown by its mirror pod;
	// deleting the mirror does not stop it (staticpods_e2e_test.go).
	static := startStaticPod(ctx, t, cs, agent, cfg.DataDir)
	static.deleteMirror(ctx)

	// A crashing container goes into CrashLoopBackOff.
	createPod(t, cs, newPod("crash", v1.Container{Name: "crash", Command: []string{"sh", "-c", "echo boom; exit 3"}}))
	crash := waitPod(t, cs, "crash", 60*time.Second, "CrashLoopBackOff", func(p *v1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		s := p.Status.ContainerStatuses[0]
		return s.State.Waiting != nil && s.State.Waiting.Reason == reasonCrashLoopBackOff && s.RestartCount >= 1
	})
	if last := crash.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Errorf("crash last state = %+v", crash.Status.ContainerStatuses[0].LastTerminationState)
	}

	// A failing liveness probe restarts the container.
	grace := int64(1)
	live := newPod("liveness", v1.Container{
		Name:    "sleeper",
		Command: []string{"sleep", "3600"},
		LivenessProbe: &v1.Probe{
			ProbeHandler:     v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}},
			PeriodSeconds:    1,
			FailureThreshold: 1,
		},
	})
	live.Spec.TerminationGracePeriodSeconds = &grace
	createPod(t, cs, live)
	waitPod(t, cs, "liveness", 60*time.Second, "restarted by liveness probe", func(p *v1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if !hasEvent(ctx, t, cs, "liveness", "Unhealthy") {
		t.Error("no Unhealthy event for the liveness pod")
	}

	// An unknown image: ErrImagePull, then ImagePullBackOff.
	missing := newPod("missing", v1.Container{Name: "c", Command: []string{"true"}})
	missing.Spec.Containers[0].Image = "example.invalid/nothing:1"
	createPod(t, cs, missing)
	waitPod(t, cs, "missing", 60*time.Second, "ImagePullBackOff", func(p *v1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == reasonImagePullBackOff
	})

	// Init containers, env and volumes from a ConfigMap and a Secret, and
	// a readiness probe that fails until the test makes it pass.
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"greeting": "hello"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "app-secret"}, Data: map[string][]byte{"password": []byte("s3cret")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfgPod := newPod("config", v1.Container{
		Name:    "app",
		Command: []string{"sleep", "3600"},
		Env: []v1.EnvVar{
			{Name: "GREETING", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}, Key: "greeting"}}},
			{Name: "PASSWORD", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "app-secret"}, Key: "password"}}},
			{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "MSG", Value: "$(GREETING) world"},
		},
		VolumeMounts: []v1.VolumeMount{
			{Name: "work", MountPath: "/work"},
			{Name: "config", MountPath: "/etc/config"},
			{Name: "secret", MountPath: "/etc/secret", ReadOnly: true},
		},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "/tmp/ready"}}},
			PeriodSeconds: 1,
		},
	})
	cfgPod.Spec.InitContainers = []v1.Container{{
		Name: "setup", Image: e2eImage, ImagePullPolicy: v1.PullIfNotPresent,
		Command:      []string{"sh", "-c", "echo init-done > /work/marker"},
		VolumeMounts: []v1.VolumeMount{{Name: "work", MountPath: "/work"}},
	}}
	cfgPod.Spec.Volumes = []v1.Volume{
		{Name: "work", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		{Name: "config", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}}}},
		{Name: "secret", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "app-secret"}}},
	}
	createPod(t, cs, cfgPod)
	got := waitPod(t, cs, "config", 60*time.Second, "Running but not Ready", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodRunning && !podReady(p) && len(p.Status.ContainerStatuses) == 1 &&
			p.Status.ContainerStatuses[0].State.Running != nil
	})
	if ics := got.Status.InitContainerStatuses; len(ics) != 1 || ics[0].State.Terminated == nil || ics[0].State.Terminated.Reason != "Completed" || !ics[0].Ready {
		t.Errorf("init container statuses = %+v", ics)
	}
	appID := strings.TrimPrefix(got.Status.ContainerStatuses[0].ContainerID, "orch://")
	out.Reset()
	errOut.Reset()
	code, err = agent.current().rt.Exec(ctx, appID, container.ExecRequest{
		Args:   []string{"sh", "-c", "echo $GREETING $PASSWORD $POD_NAME $MSG; cat /work/marker /etc/config/greeting /etc/secret/password; touch /tmp/ready"},
		Stdout: &out, Stderr: &errOut,
	})
	if want := "hello s3cret config hello world\ninit-done\nhellos3cret"; err != nil || code != 0 || out.String() != want {
		t.Errorf("exec in config pod: code %d, err %v, stdout %q (want %q), stderr %q", code, err, out.String(), want, errOut.String())
	}
	waitPod(t, cs, "config", 30*time.Second, "Ready once the probe passes", podReady)

	// A missing ConfigMap keeps the container from being created.
	badPod := newPod("badconfig", v1.Container{Name: "c", Command: []string{"true"}, EnvFrom: []v1.EnvFromSource{
		{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}}},
	}})
	createPod(t, cs, badPod)
	waitPod(t, cs, "badconfig", 30*time.Second, "CreateContainerConfigError", func(p *v1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w.Reason == reasonCreateConfigError && w.Message == `configmap "nope" not found`
	})

	// A container over its memory limit is OOMKilled.
	oomPod := newPod("oom", v1.Container{Name: "hog", Command: []string{"sh", "-c", "a=0123456789; while :; do a=$a$a; done"},
		Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("32Mi")}}})
	oomPod.Spec.RestartPolicy = v1.RestartPolicyNever
	createPod(t, cs, oomPod)
	waitPod(t, cs, "oom", 60*time.Second, "Failed with OOMKilled", func(p *v1.Pod) bool {
		if p.Status.Phase != v1.PodFailed || len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		term := p.Status.ContainerStatuses[0].State.Terminated
		return term != nil && term.Reason == "OOMKilled" && term.ExitCode == 137
	})

	logKubectl(t, "get", "pods", "-o", "wide")

	// Restart the agent: the web container keeps running, untouched.
	agent.restart(t)
	time.Sleep(3 * time.Second)
	webPod = waitPod(t, cs, "web", 30*time.Second, "Ready after agent restart", func(p *v1.Pod) bool { return podReady(p) })
	after := webPod.Status.ContainerStatuses[0]
	if after.ContainerID != webStatus.ContainerID || after.RestartCount != webStatus.RestartCount ||
		after.State.Running == nil || !after.State.Running.StartedAt.Equal(&webStatus.State.Running.StartedAt) {
		t.Errorf("web container changed across an agent restart:\nbefore %+v\nafter  %+v", webStatus, after)
	}
	if st, err := agent.current().rt.Container(id); err != nil || st.State != container.StateRunning {
		t.Errorf("web container after agent restart: %+v, %v", st, err)
	}
	static.afterRestart()
	// Removing its manifest stops the static pod and deletes its mirror.
	static.remove(ctx)

	// Graceful deletion: SIGTERM reaches the container, which exits on it
	// well within the grace period, and the pod object goes away.
	long := int64(20)
	gracefulPod := newPod("graceful", v1.Container{
		Name:      "c",
		Command:   []string{"sh", "-c", `trap "exit 0" TERM; while true; do sleep 0.2; done`},
		Lifecycle: &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"sh", "-c", "sleep 1"}}}},
	})
	gracefulPod.Spec.TerminationGracePeriodSeconds = &long
	createPod(t, cs, gracefulPod)
	waitPod(t, cs, "graceful", 60*time.Second, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	start := time.Now()
	if err := cs.CoreV1().Pods("default").Delete(ctx, "graceful", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "graceful pod deleted", func() (bool, error) {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "graceful", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if took := time.Since(start); took < time.Second || took > 15*time.Second {
		t.Errorf("graceful deletion took %v: want the preStop hook (1s) and a prompt exit on SIGTERM", took)
	}

	// Delete everything; the runtime ends up empty.
	for _, name := range []string{"web", "crash", "liveness", "missing", "config", "badconfig", "oom"} {
		zero := int64(0)
		if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", name, err)
		}
	}
	waitFor(t, 60*time.Second, "runtime empty", func() (bool, error) {
		return len(agent.current().rt.ListSandboxes()) == 0 && len(agent.current().rt.ListContainers()) == 0, nil
	})
}

// agentRun is the in-process agent, restartable.
type agentRun struct {
	t      *testing.T
	cfg    Config
	a      *Agent
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, cfg Config) *agentRun {
	r := &agentRun{t: t, cfg: cfg}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *agentRun) start() {
	a, err := newAgent(r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.a, r.cancel, r.done = a, cancel, make(chan error, 1)
	go func() { r.done <- a.run(ctx) }()
	select {
	case <-a.ready:
	case err := <-r.done:
		r.t.Fatalf("agent.Run: %v", err)
	case <-time.After(30 * time.Second):
		r.t.Fatal("agent not ready within 30s")
	}
}

func (r *agentRun) current() *Agent { return r.a }

func (r *agentRun) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("agent.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		r.t.Error("agent did not stop within 30s")
	}
	r.cancel = nil
}

func (r *agentRun) restart(t *testing.T) {
	r.stop()
	r.start()
}

func newPod(name string, c v1.Container) *v1.Pod {
	c.Image = e2eImage
	c.ImagePullPolicy = v1.PullIfNotPresent
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.PodSpec{
			NodeName:   e2eNode,
			Containers: []v1.Container{c},
		},
	}
}

func createPod(t *testing.T, cs kubernetes.Interface, pod *v1.Pod) {
	t.Helper()
	if _, err := cs.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func waitPod(t *testing.T, cs kubernetes.Interface, name string, timeout time.Duration, what string, ok func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	var last *v1.Pod
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("pod %s not %s within %v; last:\n%s", name, what, timeout, b)
	return nil
}

func hasEvent(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod, reason string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, e := range evs.Items {
				if e.InvolvedObject.Name == pod && e.Reason == reason {
					return true
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// startServer runs `orch server --disable-agent` on a free 127.0.0.1 port
// with its files in e2eDir and returns a client config from its admin
// kubeconfig.
func startServer(t *testing.T, bin string) *rest.Config { return startLocalServer(t, bin, e2eDir) }

// freshAgentE2EDir gives TestAgentE2E and the tests sharing its
// directory and cgroups a clean start.
func freshAgentE2EDir(t *testing.T) { freshE2EDir(t, e2eDir, e2eCgroupRoot) }

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// logKubectl logs kubectl's view of the cluster (for -v runs), when
// kubectl is installed.
func logKubectl(t *testing.T, args ...string) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		return
	}
	k := &kubectlRunner{kubeconfig: filepath.Join(e2eDir, "kubeconfig.yaml"), cacheDir: filepath.Join(e2eDir, "kubectl-cache")}
	out, err := k.run(args...)
	t.Logf("kubectl %s (err %v):\n%s", strings.Join(args, " "), err, out)
}
