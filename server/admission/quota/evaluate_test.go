package quota

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func list(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func container(name string, requests, limits corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits}}
}

func TestUsage(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	always := corev1.ContainerRestartPolicyAlways
	grace := int64(30)
	deleted := func(ago time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-ago)); return &t }
	lb := false
	class := "gold"

	tests := []struct {
		name string
		gr   schema.GroupResource
		obj  runtime.Object
		want string
	}{{
		name: "pod with requests and limits",
		gr:   podsGR,
		obj: &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
			container("a", list("cpu", "100m", "memory", "64Mi"), list("cpu", "200m", "memory", "128Mi")),
			container("b", list("cpu", "400m"), list("cpu", "1")),
		}}},
		want: "count/pods=1,cpu=500m,limits.cpu=1200m,limits.memory=128Mi,memory=64Mi,pods=1,requests.cpu=500m,requests.memory=64Mi",
	}, {
		name: "init containers and sidecars",
		gr:   podsGR,
		obj: &corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "side", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: list("cpu", "100m")}},
				container("init", list("cpu", "1"), nil),
			},
			Containers: []corev1.Container{container("app", list("cpu", "200m"), nil)},
		}},
		// The init container runs beside the sidecar: 1 + 100m > 200m + 100m.
		want: "count/pods=1,cpu=1100m,pods=1,requests.cpu=1100m",
	}, {
		name: "best effort pod",
		gr:   podsGR,
		obj:  &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}},
		want: "count/pods=1,pods=1",
	}, {
		name: "terminal pod keeps only its object count",
		gr:   podsGR,
		obj: &corev1.Pod{
			Spec:   corev1.PodSpec{Containers: []corev1.Container{container("a", list("cpu", "1"), nil)}},
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded},
		},
		want: "count/pods=1",
	}, {
		name: "pod deleted within its grace period still counts",
		gr:   podsGR,
		obj: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: deleted(10 * time.Second), DeletionGracePeriodSeconds: &grace},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{container("a", list("cpu", "1"), nil)}},
		},
		want: "count/pods=1,cpu=1,pods=1,requests.cpu=1",
	}, {
		name: "pod deleted past its grace period does not",
		gr:   podsGR,
		obj: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: deleted(time.Minute), DeletionGracePeriodSeconds: &grace},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{container("a", list("cpu", "1"), nil)}},
		},
		want: "count/pods=1",
	}, {
		name: "hugepages and extended resources",
		gr:   podsGR,
		obj: &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
			container("a", list("hugepages-2Mi", "4Mi", "example.com/gpu", "1"), list("hugepages-2Mi", "4Mi", "example.com/gpu", "1")),
		}}},
		want: "count/pods=1,hugepages-2Mi=4Mi,pods=1,requests.example.com/gpu=1,requests.hugepages-2Mi=4Mi",
	}, {
		name: "ClusterIP service",
		gr:   servicesGR,
		obj:  &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80}}}},
		want: "count/services=1,services=1,services.loadbalancers=0,services.nodeports=0",
	}, {
		name: "NodePort service counts its ports",
		gr:   servicesGR,
		obj:  &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}, {Port: 443}}}},
		want: "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2",
	}, {
		name: "LoadBalancer without node ports",
		gr:   servicesGR,
		obj: &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &lb,
			Ports: []corev1.ServicePort{{Port: 80}}}},
		want: "count/services=1,services=1,services.loadbalancers=1,services.nodeports=0",
	}, {
		name: "claim with a storage class",
		gr:   claimsGR,
		obj: &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: list("storage", "5Gi")}}},
		want: "count/persistentvolumeclaims=1,gold.storageclass.storage.k8s.io/persistentvolumeclaims=1," +
			"gold.storageclass.storage.k8s.io/requests.storage=5Gi,persistentvolumeclaims=1,requests.storage=5Gi",
	}, {
		name: "configmap counts under both names",
		gr:   schema.GroupResource{Resource: "configmaps"},
		obj:  &corev1.ConfigMap{},
		want: "configmaps=1,count/configmaps=1",
	}, {
		name: "any other kind is an object count",
		gr:   schema.GroupResource{Group: "apps", Resource: "deployments"},
		obj:  &metav1.PartialObjectMetadata{},
		want: "count/deployments.apps=1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PrettyPrint(Usage(tt.gr, tt.obj, now)); got != tt.want {
				t.Errorf("Usage:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMatchingResources(t *testing.T) {
	hard := []corev1.ResourceName{"pods", "count/pods", "requests.cpu", "services", "services.nodeports",
		"configmaps", "count/deployments.apps", "requests.storage", "gold.storageclass.storage.k8s.io/requests.storage",
		"requests.example.com/gpu", "requests.hugepages-2Mi"}
	tests := []struct {
		gr   schema.GroupResource
		want string
	}{
		{podsGR, "pods,count/pods,requests.cpu,requests.example.com/gpu,requests.hugepages-2Mi"},
		{servicesGR, "services,services.nodeports"},
		{claimsGR, "requests.storage,gold.storageclass.storage.k8s.io/requests.storage"},
		{schema.GroupResource{Resource: "configmaps"}, "configmaps"},
		{schema.GroupResource{Group: "apps", Resource: "deployments"}, "count/deployments.apps"},
		{schema.GroupResource{Resource: "secrets"}, ""},
	}
	for _, tt := range tests {
		got := MatchingResources(tt.gr, hard)
		s := ""
		for i, n := range got {
			if i > 0 {
				s += ","
			}
			s += string(n)
		}
		if s != tt.want {
			t.Errorf("MatchingResources(%s) = %s, want %s", tt.gr, s, tt.want)
		}
	}
}

func TestGroupResourceOf(t *testing.T) {
	for name, want := range map[corev1.ResourceName]string{
		"count/deployments.apps": "deployments.apps",
		"count/pods":             "pods",
		"secrets":                "secrets",
	} {
		gr, ok := GroupResourceOf(name)
		if !ok || gr.String() != want {
			t.Errorf("GroupResourceOf(%s) = %s, %v; want %s", name, gr, ok, want)
		}
	}
	if _, ok := GroupResourceOf("requests.cpu"); ok {
		t.Error("requests.cpu is not an object count")
	}
}

func TestMatchesScopes(t *testing.T) {
	deadline := int64(60)
	bestEffort := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	burstable := &corev1.Pod{Spec: corev1.PodSpec{ActiveDeadlineSeconds: &deadline,
		PriorityClassName: "high",
		Containers:        []corev1.Container{container("a", list("memory", "1Mi"), nil)}}}
	scoped := func(scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
		return &corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Scopes: scopes}}
	}
	tests := []struct {
		name string
		q    *corev1.ResourceQuota
		gr   schema.GroupResource
		obj  runtime.Object
		want bool
	}{
		{"no scopes selects all", scoped(), servicesGR, &corev1.Service{}, true},
		{"BestEffort", scoped(corev1.ResourceQuotaScopeBestEffort), podsGR, bestEffort, true},
		{"BestEffort vs burstable", scoped(corev1.ResourceQuotaScopeBestEffort), podsGR, burstable, false},
		{"NotBestEffort", scoped(corev1.ResourceQuotaScopeNotBestEffort), podsGR, burstable, true},
		{"Terminating", scoped(corev1.ResourceQuotaScopeTerminating), podsGR, burstable, true},
		{"NotTerminating", scoped(corev1.ResourceQuotaScopeNotTerminating), podsGR, burstable, false},
		{"all scopes must match", scoped(corev1.ResourceQuotaScopeNotTerminating, corev1.ResourceQuotaScopeBestEffort), podsGR, bestEffort, true},
		{"scopes exclude other kinds", scoped(corev1.ResourceQuotaScopeBestEffort), servicesGR, &corev1.Service{}, false},
		{"priority class In", &corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{ScopeSelector: &corev1.ScopeSelector{
			MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{ScopeName: corev1.ResourceQuotaScopePriorityClass,
				Operator: corev1.ScopeSelectorOpIn, Values: []string{"high"}}}}}}, podsGR, burstable, true},
		{"priority class NotIn", &corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{ScopeSelector: &corev1.ScopeSelector{
			MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{ScopeName: corev1.ResourceQuotaScopePriorityClass,
				Operator: corev1.ScopeSelectorOpNotIn, Values: []string{"high"}}}}}}, podsGR, burstable, false},
	}
	for _, tt := range tests {
		if got := MatchesScopes(tt.q, tt.gr, tt.obj); got != tt.want {
			t.Errorf("%s: MatchesScopes = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestConstraints(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{container("init", nil, nil)},
		Containers: []corev1.Container{
			container("app", list("cpu", "1", "memory", "1Gi"), list("memory", "1Gi")),
			container("web", list("memory", "1Gi"), nil),
		},
	}}
	tests := []struct {
		required []corev1.ResourceName
		want     string
	}{
		{[]corev1.ResourceName{"pods", "count/pods"}, ""},
		{[]corev1.ResourceName{"limits.cpu"}, "must specify limits.cpu for: app,init,web"},
		{[]corev1.ResourceName{"requests.memory", "limits.cpu", "cpu"},
			"must specify cpu for: init,web; limits.cpu for: app,init,web; requests.memory for: init"},
		// ephemeral-storage is quota-tracked but never required.
		{[]corev1.ResourceName{"requests.ephemeral-storage"}, ""},
	}
	for _, tt := range tests {
		err := Constraints(podsGR, tt.required, pod)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Constraints(%v):\n got %q\nwant %q", tt.required, got, tt.want)
		}
	}
	if err := Constraints(servicesGR, []corev1.ResourceName{"limits.cpu"}, &corev1.Service{}); err != nil {
		t.Errorf("services have no constraints: %v", err)
	}
}

func TestArithmetic(t *testing.T) {
	a, b := list("cpu", "1", "pods", "2"), list("cpu", "1500m", "memory", "1Gi")
	if got := PrettyPrint(Add(a, b)); got != "cpu=2500m,memory=1Gi,pods=2" {
		t.Errorf("Add = %s", got)
	}
	if got := PrettyPrint(Subtract(a, b)); got != "cpu=-500m,memory=-1Gi,pods=2" {
		t.Errorf("Subtract = %s", got)
	}
	if got := PrettyPrint(SubtractNonNegative(a, b)); got != "cpu=0,memory=0,pods=2" {
		t.Errorf("SubtractNonNegative = %s", got)
	}
	if got := PrettyPrint(RemoveZeros(SubtractNonNegative(a, b))); got != "pods=2" {
		t.Errorf("RemoveZeros = %s", got)
	}
	ok, exceeded := LessThanOrEqual(list("cpu", "2", "pods", "3", "memory", "1"), list("cpu", "2", "pods", "2"))
	if ok || len(exceeded) != 1 || exceeded[0] != "pods" {
		t.Errorf("LessThanOrEqual = %v %v", ok, exceeded)
	}
	if !Equals(list("cpu", "1"), list("cpu", "1000m")) || Equals(list("cpu", "1"), list("cpu", "1", "pods", "0")) {
		t.Error("Equals is wrong")
	}
	if got := PrettyPrint(Mask(a, []corev1.ResourceName{"pods", "memory"})); got != "pods=2" {
		t.Errorf("Mask = %s", got)
	}
}
