package informer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimepkg "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// storedPod is a pod as a Deployment's ReplicaSet creates it and the API
// stores it: defaults, the ServiceAccount admission's kube-api-access
// volume, the default tolerations, and a running status.
func storedPod(i int) *corev1.Pod {
	now := metav1.Now()
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-7d9f8c6b5-%05d", i), GenerateName: "web-7d9f8c6b5-", Namespace: "default",
			UID: types.UID(fmt.Sprintf("0b1c2d3e-0000-4000-8000-%012d", i)), ResourceVersion: fmt.Sprint(1000 + i),
			CreationTimestamp: now, Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5",
				UID: "rs-uid", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"rs-uid\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)}}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/web:1.2.3", ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/bin/web"}, Args: []string{"--port=8080", "--log-level=info"},
				Env:          []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
				TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				DefaultMode: ptr.To(int32(0o644)),
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To(int64(3607))}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
				}}}}},
			RestartPolicy: corev1.RestartPolicyAlways, TerminationGracePeriodSeconds: ptr.To(int64(30)), DNSPolicy: corev1.DNSClusterFirst,
			ServiceAccountName: "default", NodeName: fmt.Sprintf("hollow-%d", i%1000), SchedulerName: "default-scheduler",
			SecurityContext: &corev1.PodSecurityContext{}, EnableServiceLinks: ptr.To(true), PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority),
			Priority: ptr.To(int32(0)),
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(int64(300))},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(int64(300))},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "198.18.0.1", PodIP: "10.42.0.7", StartTime: &now, QOSClass: corev1.PodQOSBurstable,
			HostIPs: []corev1.HostIP{{IP: "198.18.0.1"}}, PodIPs: []corev1.PodIP{{IP: "10.42.0.7"}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Started: ptr.To(true), Image: "registry.example/web:1.2.3",
				ImageID:     "registry.example/web@sha256:4f1c9b0e2d3a5b6c7d8e9f00112233445566778899aabbccddeeff0011223344",
				ContainerID: "containerd://5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
		},
	}
}

// heapOf decodes n stored pods (as the API hands them to informers: each
// decoded on its own), keeps them through transform, and reports the live
// heap they take.
func heapOf(b *testing.B, n int, transform func(runtimepkg.Object) runtimepkg.Object) uint64 {
	raw := make([][]byte, n)
	for i := range raw {
		raw[i], _ = json.Marshal(storedPod(i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := make([]runtimepkg.Object, n)
	for i := range raw {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw[i], pod); err != nil {
			b.Fatal(err)
		}
		kept[i] = transform(pod)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(kept)
	return after.HeapAlloc - before.HeapAlloc
}

// BenchmarkPodCacheMemory prints the bytes per cached pod held as decoded,
// with managedFields stripped only (client-go's transform), and through
// SlimPod. It measures memory, not time.
func BenchmarkPodCacheMemory(b *testing.B) {
	const n = 10000
	stripManaged := func(obj runtimepkg.Object) runtimepkg.Object {
		obj.(*corev1.Pod).ManagedFields = nil
		return obj
	}
	for _, tc := range []struct {
		name      string
		transform func(runtimepkg.Object) runtimepkg.Object
	}{
		{"typed", func(o runtimepkg.Object) runtimepkg.Object { return o }},
		{"managedFields-stripped", stripManaged},
		{"SlimPod", informer.SlimPod},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var bytes uint64
			for range b.N {
				bytes = heapOf(b, n, tc.transform)
			}
			b.ReportMetric(float64(bytes)/n, "heap-B/pod")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func TestSlimPod(t *testing.T) {
	in := storedPod(1)
	in.Spec.InitContainers = []corev1.Container{{Name: "sidecar", Image: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}
	in.Spec.Volumes = append(in.Spec.Volumes,
		corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-0"}}},
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
		corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}})
	dbPassword := corev1.EnvVar{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "pw"}}}
	in.Spec.Containers[0].Env = append(in.Spec.Containers[0].Env, dbPassword)
	in.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-env"}}}}
	in.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	orig := in.DeepCopy()

	out := informer.SlimPod(in).(*corev1.Pod)
	if !equality.Semantic.DeepEqual(in, orig) {
		t.Fatal("SlimPod modified its input")
	}
	c := out.Spec.Containers[0]
	checks := []struct {
		what string
		ok   bool
	}{
		{"metadata kept but for managed fields", out.ManagedFields == nil && len(orig.ManagedFields) == 1 &&
			equality.Semantic.DeepEqual(withoutManagedFields(out.ObjectMeta), withoutManagedFields(orig.ObjectMeta))},
		{"status kept", equality.Semantic.DeepEqual(out.Status, orig.Status)},
		{"scheduling fields kept", out.Spec.NodeName == orig.Spec.NodeName && len(out.Spec.Tolerations) == 2 && out.Spec.NodeSelector["disk"] == "ssd"},
		{"container name, image, ports, resources kept", c.Name == "app" && c.Image == orig.Spec.Containers[0].Image &&
			len(c.Ports) == 1 && equality.Semantic.DeepEqual(c.Resources, orig.Spec.Containers[0].Resources)},
		{"sidecar restart policy kept", out.Spec.InitContainers[0].RestartPolicy != nil},
		{"kubelet-only container fields dropped", c.Command == nil && c.Args == nil && c.ReadinessProbe == nil &&
			c.VolumeMounts == nil && c.TerminationMessagePath == "" && out.Spec.InitContainers[0].Env == nil},
		// The node authorizer lets a node read what its pods name.
		{"env references kept, other env dropped", len(c.Env) == 1 && equality.Semantic.DeepEqual(c.Env[0], dbPassword) &&
			len(c.EnvFrom) == 1 && c.EnvFrom[0].ConfigMapRef.Name == "web-env"},
		{"volumes naming objects kept", len(out.Spec.Volumes) == 4 && out.Spec.Volumes[0].Name == "kube-api-access-x7k2p" &&
			out.Spec.Volumes[1].Name == "data" && out.Spec.Volumes[2].Name == "scratch" && out.Spec.Volumes[3].Name == "tls"},
		{"projected volume: its config map only", len(out.Spec.Volumes[0].Projected.Sources) == 1 &&
			out.Spec.Volumes[0].Projected.Sources[0].ConfigMap.Name == "kube-root-ca.crt" && out.Spec.Volumes[0].Projected.Sources[0].ConfigMap.Items == nil},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s: got %+v", ch.what, out.Spec)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
	if informer.SlimPod(cm) != runtimepkg.Object(cm) {
		t.Error("SlimPod changed a ConfigMap")
	}
}

func withoutManagedFields(m metav1.ObjectMeta) metav1.ObjectMeta {
	m.ManagedFields = nil
	return m
}

type getterFunc func(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtimepkg.Object, error)

func (f getterFunc) Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtimepkg.Object, error) {
	return f(ctx, gvr, ns, name)
}

func TestWithLiveSpec(t *testing.T) {
	live := storedPod(1)
	live.ResourceVersion = "7"
	cached := informer.SlimPod(live.DeepCopy()).(*corev1.Pod)
	cached.ResourceVersion = "5" // the cache lags: the update must conflict, not overwrite
	changed := cached.DeepCopy()
	changed.OwnerReferences = nil // a release

	got, err := informer.WithLiveSpec(context.Background(), getterFunc(func(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (runtimepkg.Object, error) {
		if gvr.Resource != "pods" || ns != live.Namespace || name != live.Name {
			return nil, fmt.Errorf("unexpected get %v %s/%s", gvr, ns, name)
		}
		return live, nil
	}), changed)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got.Spec, live.Spec) {
		t.Error("spec is not the live one")
	}
	if got.OwnerReferences != nil || got.ResourceVersion != "5" {
		t.Errorf("metadata not the caller's: owners %v, resourceVersion %s", got.OwnerReferences, got.ResourceVersion)
	}

	_, err = informer.WithLiveSpec(context.Background(), getterFunc(func(context.Context, schema.GroupVersionResource, string, string) (runtimepkg.Object, error) {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), live.Name)
	}), changed)
	if !apierrors.IsNotFound(err) {
		t.Errorf("gone pod: err %v, want NotFound", err)
	}
}
