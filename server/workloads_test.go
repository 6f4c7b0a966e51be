package server

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/hollow"
)

// cluster is a running `orch server` (control plane only) with simulated
// nodes, driven by the real kubectl.
type cluster struct {
	t          *testing.T
	kubeconfig string
	cacheDir   string
	cs         kubernetes.Interface
	nodes      *hollow.Cluster
}

func startCluster(t *testing.T, nodes int, tweak ...func(*Config)) *cluster {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed")
	}
	cfg := testConfig(t, t.TempDir())
	cfg.Logger = quietLogger()
	for _, f := range tweak {
		f(&cfg)
	}
	startRun(t, cfg)
	rest, err := clientcmd.BuildConfigFromFlags("", cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rest.QPS, rest.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(rest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hc, err := hollow.Start(ctx, cs, hollow.Options{Nodes: nodes, CPU: "2", Memory: "4Gi", LeaseDuration: 4 * time.Second,
		Labels: func(i int) map[string]string { return map[string]string{"tier": []string{"a", "b", "c"}[i%3]} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Stop)
	return &cluster{t: t, kubeconfig: cfg.WriteKubeconfig, cacheDir: t.TempDir(), cs: cs, nodes: hc}
}

// kubectl runs kubectl and returns its output; a failure fails the test.
func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) try(args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", c.cacheDir}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually retries kubectl until its output contains every want.
func (c *cluster) eventually(timeout time.Duration, want []string, args ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.try(args...)
		if err == nil && containsAll(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kubectl %s: want %q within %s, last output (err %v):\n%s", strings.Join(args, " "), want, timeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

func (c *cluster) apply(manifest string) string {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return c.kubectl("apply", "-f", path)
}

func TestSchedulingOnHollowNodes(t *testing.T) {
	c := startCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-0", "hollow-1", "hollow-2", "Ready"}, "get", "nodes")

	c.kubectl("run", "web", "--image=busybox", "--restart=Never")
	out := c.eventually(20*time.Second, []string{"Running", "1/1"}, "get", "pod", "web", "-o", "wide")
	if !strings.Contains(out, "hollow-") {
		t.Fatalf("pod not placed on a node:\n%s", out)
	}
	c.eventually(10*time.Second, []string{"Scheduled", "Successfully assigned default/web to hollow-"}, "get", "events", "--field-selector", "involvedObject.name=web")

	// A selector no node matches: the pod stays Pending with Kubernetes'
	// exact explanation.
	c.apply(`apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {tier: z}
  containers: [{name: c, image: busybox}]
`)
	c.eventually(20*time.Second, []string{"FailedScheduling",
		"0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."},
		"describe", "pod", "picky")
	c.eventually(5*time.Second, []string{"Pending"}, "get", "pod", "picky")

	// Cordon every node but one: new pods land on the one left.
	c.kubectl("cordon", "hollow-0")
	c.kubectl("cordon", "hollow-1")
	c.eventually(5*time.Second, []string{"SchedulingDisabled"}, "get", "node", "hollow-0")
	c.kubectl("run", "late", "--image=busybox", "--restart=Never")
	c.eventually(20*time.Second, []string{"Running", "hollow-2"}, "get", "pod", "late", "-o", "wide")
	c.kubectl("uncordon", "hollow-0", "hollow-1")

	// Labelling a node makes the picky pod schedulable; it is retried.
	c.kubectl("label", "node", "hollow-1", "tier=z", "--overwrite")
	c.eventually(30*time.Second, []string{"Running", "hollow-1"}, "get", "pod", "picky", "-o", "wide")
}

func TestNamespaceDeletionRemovesContents(t *testing.T) {
	c := startCluster(t, 1)
	c.kubectl("create", "namespace", "doomed")
	c.kubectl("-n", "doomed", "create", "configmap", "a", "--from-literal=k=v")
	c.kubectl("-n", "doomed", "create", "secret", "generic", "b", "--from-literal=k=v")
	c.kubectl("-n", "doomed", "run", "p", "--image=busybox", "--restart=Never")
	c.eventually(20*time.Second, []string{"Running"}, "-n", "doomed", "get", "pod", "p")
	c.kubectl("delete", "namespace", "doomed", "--wait=true", "--timeout=60s")
	if out, err := c.try("get", "namespace", "doomed"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("namespace still there after delete --wait:\n%s", out)
	}
	if out, _ := c.try("-n", "doomed", "get", "configmaps,secrets,pods", "-o", "name"); strings.Contains(out, "/") {
		t.Fatalf("contents left behind:\n%s", out)
	}
	// The name can be used again.
	c.kubectl("create", "namespace", "doomed")
}

// quietLogger keeps the cluster's logs out of the test output unless they
// are warnings.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestDaemonSetOnEveryNode(t *testing.T) {
	c := startCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-2"}, "get", "nodes")
	c.apply(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: c, image: busybox}]
`)
	c.eventually(30*time.Second, []string{"agent   3         3         3       3            3"}, "-n", "kube-system", "get", "ds", "agent")
	if err := c.nodes.AddNode(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	c.eventually(30*time.Second, []string{"agent   4         4         4       4            4"}, "-n", "kube-system", "get", "ds", "agent")
	c.kubectl("-n", "kube-system", "rollout", "status", "ds/agent", "--timeout=30s")
}

func TestStatefulSetOrderedWithClaims(t *testing.T) {
	c := startCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-2"}, "get", "nodes")
	c.apply(`apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: busybox}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`)
	if _, err := c.try("wait", "--for=jsonpath={.status.readyReplicas}=3", "sts/db", "--timeout=60s"); err != nil {
		t.Fatalf("statefulset not ready:\n%s\n%s\n%s", c.kubectl("get", "pods,pvc", "-o", "wide"), c.kubectl("describe", "sts", "db"), c.kubectl("describe", "pod", "db-0"))
	}
	out := c.kubectl("get", "pvc", "-o", "name")
	for _, want := range []string{"data-db-0", "data-db-1", "data-db-2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("claim %s missing:\n%s", want, out)
		}
	}
	// Pods start in order: db-0 was created before db-1, db-1 before db-2.
	created := c.kubectl("get", "pods", "-l", "app=db", "--sort-by=.metadata.creationTimestamp", "-o", "jsonpath={.items[*].metadata.name}")
	if created != "db-0 db-1 db-2" {
		t.Fatalf("creation order %q", created)
	}
	c.kubectl("scale", "sts", "db", "--replicas=1")
	c.eventually(60*time.Second, []string{"1/1"}, "get", "sts", "db")
	if out := c.kubectl("get", "pods", "-l", "app=db", "-o", "name"); strings.Contains(out, "db-1") || strings.Contains(out, "db-2") {
		t.Fatalf("scale down left pods:\n%s", out)
	}
	// Claims are kept (Retain).
	c.eventually(5*time.Second, []string{"data-db-2"}, "get", "pvc")
}

func TestJobsAndCronJobs(t *testing.T) {
	c := startCluster(t, 2)
	c.eventually(20*time.Second, []string{"hollow-1"}, "get", "nodes")
	c.apply(`apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  completions: 3
  parallelism: 2
  template:
    metadata: {annotations: {hollow.orch.dev/behaviour: complete}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 1
  template:
    metadata: {annotations: {hollow.orch.dev/behaviour: fail}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "@every 2s"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {hollow.orch.dev/behaviour: complete}}
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
`)
	c.eventually(60*time.Second, []string{"Complete", "3/3"}, "get", "job", "once")
	c.eventually(90*time.Second, []string{"BackoffLimitExceeded"}, "describe", "job", "broken")
	c.eventually(60*time.Second, []string{"SuccessfulCreate", "Created job tick-"}, "describe", "cronjob", "tick")
	// Three runs later, only the two newest finished jobs are kept.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := c.kubectl("get", "jobs", "-o", "name")
		if n := strings.Count(out, "job.batch/tick-"); n == 2 && strings.Contains(c.kubectl("get", "cronjob", "tick", "-o", "jsonpath={.status.lastSuccessfulTime}"), "T") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history limit not applied:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestCascadingDeletion(t *testing.T) {
	c := startCluster(t, 1)
	rs := `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: NAME}
spec:
  replicas: 2
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      containers: [{name: c, image: busybox}]
`
	for _, name := range []string{"bg", "fg", "orphan"} {
		c.apply(strings.ReplaceAll(rs, "NAME", name))
		c.eventually(30*time.Second, []string{"2         2         2"}, "get", "rs", name)
	}
	c.kubectl("delete", "rs", "bg", "--cascade=background", "--wait=true", "--timeout=30s")
	c.eventually(30*time.Second, []string{"No resources found"}, "get", "pods", "-l", "app=bg")

	c.kubectl("delete", "rs", "fg", "--cascade=foreground", "--wait=true", "--timeout=60s")
	if out := c.kubectl("get", "pods", "-l", "app=fg", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("foreground deletion finished before its pods were gone:\n%s", out)
	}

	c.kubectl("delete", "rs", "orphan", "--cascade=orphan", "--wait=true", "--timeout=30s")
	out := c.kubectl("get", "pods", "-l", "app=orphan", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences}{\"\\n\"}{end}")
	if strings.Count(out, "=\n") != 2 && strings.Count(out, "=") != 2 {
		t.Fatalf("orphaned pods: %q", out)
	}
	if strings.Contains(out, "ReplicaSet") {
		t.Fatalf("orphaned pods still name their owner:\n%s", out)
	}
}

func TestUnreachableNodeEvictsPods(t *testing.T) {
	c := startCluster(t, 2, func(cfg *Config) { cfg.NodeGracePeriod = 5 * time.Second })
	c.eventually(20*time.Second, []string{"hollow-1"}, "get", "nodes")
	c.apply(`apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}}
      containers: [{name: c, image: busybox}]
`)
	c.eventually(30*time.Second, []string{"2         2         2"}, "get", "rs", "web")
	c.nodes.StopHeartbeats(0)
	c.eventually(30*time.Second, []string{"hollow-0", "NotReady"}, "get", "node", "hollow-0")
	c.eventually(10*time.Second, []string{"node.kubernetes.io/unreachable"}, "get", "node", "hollow-0", "-o", "jsonpath={.spec.taints}")
	// The pods on hollow-0 are evicted and replaced on hollow-1.
	c.eventually(60*time.Second, []string{"TaintManagerEviction"}, "get", "events")
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := c.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}")
		running := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(line, "hollow-1 Running") && strings.TrimSpace(strings.TrimPrefix(line, "hollow-1 Running")) == "" {
				running++
			}
		}
		if running == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods not recreated on the healthy node:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestDeploymentRollouts(t *testing.T) {
	c := startCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-2"}, "get", "nodes")
	c.kubectl("create", "deployment", "web", "--image=busybox:1", "--replicas=3")
	c.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	c.eventually(10*time.Second, []string{"3/3", "3", "3"}, "get", "deployment", "web")
	c.eventually(10*time.Second, []string{"ScalingReplicaSet", "Scaled up replica set web-"}, "describe", "deployment", "web")

	c.kubectl("scale", "deployment", "web", "--replicas=5")
	c.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	c.eventually(20*time.Second, []string{"5/5"}, "get", "deployment", "web")

	c.kubectl("set", "image", "deployment/web", "busybox=busybox:2")
	c.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
	if out := c.kubectl("get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.status.replicas} {end}"); !strings.Contains(out, "busybox:2=5") || !strings.Contains(out, "busybox:1=0") {
		t.Fatalf("replica sets after the rollout: %s", out)
	}
	out := c.kubectl("rollout", "history", "deployment/web")
	if !containsAll(out, []string{"REVISION", "1", "2"}) {
		t.Fatalf("history:\n%s", out)
	}
	c.kubectl("rollout", "undo", "deployment/web", "--to-revision=1")
	c.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
	c.eventually(10*time.Second, []string{"busybox:1"}, "get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
	c.eventually(10*time.Second, []string{"3"}, "get", "deployment", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}")

	// Paused: a template change is recorded but not rolled out.
	c.kubectl("rollout", "pause", "deployment/web")
	c.kubectl("set", "image", "deployment/web", "busybox=busybox:3")
	c.eventually(10*time.Second, []string{"DeploymentPaused"}, "get", "deployment", "web", "-o", "jsonpath={.status.conditions}")
	if out := c.kubectl("get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image} {end}"); strings.Contains(out, "busybox:3") {
		t.Fatalf("a paused deployment rolled out: %s", out)
	}
	c.kubectl("rollout", "resume", "deployment/web")
	c.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
	c.eventually(10*time.Second, []string{"busybox:3=5"}, "get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.status.readyReplicas} {end}")
}

func TestDrainHonoursDisruptionBudget(t *testing.T) {
	c := startCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-0", "hollow-1", "hollow-2"}, "get", "nodes")
	c.apply(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: busybox}]}
`)
	c.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=6")
	c.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	c.apply(`apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 5
  selector: {matchLabels: {app: web}}
`)
	out := c.eventually(20*time.Second, []string{"web", "5", "N/A", "1"}, "get", "pdb", "web")
	_ = out

	// Without --ignore-daemonsets drain refuses.
	if out, err := c.try("drain", "hollow-0", "--timeout=20s"); err == nil || !strings.Contains(out, "cannot delete DaemonSet-managed Pods") {
		t.Errorf("drain without --ignore-daemonsets: err %v\n%s", err, out)
	}
	start := time.Now()
	out, err := c.try("drain", "hollow-0", "--ignore-daemonsets", "--timeout=90s")
	t.Logf("drain took %v (err %v):\n%s", time.Since(start), err, out)
	if err != nil || !containsAll(out, []string{"Warning: ignoring DaemonSet-managed Pods: default/agent-", "evicting pod default/web-", "evicted", "node/hollow-0 drained"}) {
		t.Fatalf("drain failed")
	}
	c.eventually(30*time.Second, []string{"6/6"}, "get", "deployment", "web")
	if out := c.kubectl("get", "pods", "-l", "app=web", "-o", "wide"); strings.Contains(out, "hollow-0") {
		t.Fatalf("web pods left on hollow-0:\n%s", out)
	}
	c.eventually(5*time.Second, []string{"SchedulingDisabled"}, "get", "node", "hollow-0")
}

func TestQuotaRefusesAndLimitRangeDefaults(t *testing.T) {
	c := startCluster(t, 1)
	c.kubectl("create", "namespace", "team")
	c.apply(`apiVersion: v1
kind: ResourceQuota
metadata: {name: small, namespace: team}
spec:
  hard: {pods: "1", configmaps: "3"}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: team}
spec:
  limits:
  - type: Container
    default: {memory: 128Mi}
    defaultRequest: {memory: 64Mi}
`)
	c.eventually(20*time.Second, []string{"pods: 0/1"}, "-n", "team", "get", "quota", "small")
	c.kubectl("-n", "team", "run", "one", "--image=busybox", "--restart=Never")
	out := c.kubectl("-n", "team", "get", "pod", "one", "-o", "jsonpath={.spec.containers[0].resources}")
	if !containsAll(out, []string{`"limits":{"memory":"128Mi"}`, `"requests":{"memory":"64Mi"}`}) {
		t.Fatalf("LimitRange defaults not applied: %s", out)
	}
	out, err := c.try("-n", "team", "run", "two", "--image=busybox", "--restart=Never")
	if err == nil || !strings.Contains(out, `pods "two" is forbidden: exceeded quota: small, requested: pods=1, used: pods=1, limited: pods=1`) {
		t.Fatalf("second pod: err %v\n%s", err, out)
	}
	c.eventually(20*time.Second, []string{"pods: 1/1"}, "-n", "team", "get", "quota", "small")
}
