package authz

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// fakePods is a PodLister over fixed pods.
type fakePods []*corev1.Pod

func (f fakePods) Get(ns, name string) (*corev1.Pod, bool) {
	for _, p := range f {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return nil, false
}

func (f fakePods) List(ns string, _ labels.Selector) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range f {
		if ns == "" || p.Namespace == ns {
			out = append(out, p)
		}
	}
	return out
}

// fakeClaims is a ClaimLister over fixed claims.
type fakeClaims []*corev1.PersistentVolumeClaim

func (f fakeClaims) Get(ns, name string) (*corev1.PersistentVolumeClaim, bool) {
	for _, c := range f {
		if c.Namespace == ns && c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// boundPod is a pod bound to node as the authorizer sees it: through the
// shared informer's SlimPod transform, which must keep every object the
// pod names.
func boundPod(name, node string, spec corev1.PodSpec) *corev1.Pod {
	spec.NodeName = node
	return informer.SlimPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: spec}).(*corev1.Pod)
}

func TestNodeAuthorizer(t *testing.T) {
	pods := fakePods{
		boundPod("web", "n1", corev1.PodSpec{
			ServiceAccountName: "web-sa",
			ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "pull"}},
			Volumes: []corev1.Volume{
				{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "web-data"}}},
				{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj-cm"}}}}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
			},
			InitContainers: []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "init-env"}}}}}},
			Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "PW", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db-password"}, Key: "pw"}}}}}},
		}),
		boundPod("other", "n2", corev1.PodSpec{
			ServiceAccountName: "other-sa",
			Volumes:            []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "n2-secret"}}}},
		}),
	}
	n1 := apiserver.UserInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	notInGroup := apiserver.UserInfo{Name: "system:node:n1", Groups: []string{"system:authenticated"}}
	as := func(u apiserver.UserInfo, a apiserver.Attributes) apiserver.Attributes { a.User = u; return a }
	onNode := func(a apiserver.Attributes, sel string) apiserver.Attributes {
		a.FieldSelector = fields.ParseSelectorOrDie(sel).Requirements()
		return a
	}
	tests := []struct {
		name       string
		a          apiserver.Attributes
		allow      bool
		wantReason string
	}{
		{"own node", as(n1, resourceAttrs("get", "", "nodes", "", "", "n1")), true, ""},
		{"own node status", as(n1, resourceAttrs("patch", "", "nodes", "status", "", "n1")), true, ""},
		{"register", as(n1, resourceAttrs("create", "", "nodes", "", "", "")), true, ""},
		{"other node", as(n1, resourceAttrs("update", "", "nodes", "", "", "n2")), false,
			"can only access the node object with the same name as the requesting node"},
		{"delete own node", as(n1, resourceAttrs("delete", "", "nodes", "", "", "n1")), false, ""},
		{"own lease", as(n1, resourceAttrs("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n1")), true, ""},
		{"create lease", as(n1, resourceAttrs("create", "coordination.k8s.io", "leases", "", "kube-node-lease", "")), true, ""},
		{"other lease", as(n1, resourceAttrs("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n2")), false,
			"can only access node lease with the same name as the requesting node"},
		{"lease elsewhere", as(n1, resourceAttrs("get", "coordination.k8s.io", "leases", "", "default", "n1")), false,
			`can only access leases in the "kube-node-lease" system namespace`},
		{"watch own pods", as(n1, onNode(resourceAttrs("watch", "", "pods", "", "", ""), "spec.nodeName=n1")), true, ""},
		{"watch another node's pods", as(n1, onNode(resourceAttrs("watch", "", "pods", "", "", ""), "spec.nodeName=n2")), false,
			"can only list/watch pods with spec.nodeName field selector"},
		{"list all pods", as(n1, resourceAttrs("list", "", "pods", "", "", "")), false,
			"can only list/watch pods with spec.nodeName field selector"},
		{"get bound pod", as(n1, resourceAttrs("get", "", "pods", "", "default", "web")), true, ""},
		{"patch bound pod status", as(n1, resourceAttrs("patch", "", "pods", "status", "default", "web")), true, ""},
		{"delete bound pod", as(n1, resourceAttrs("delete", "", "pods", "", "default", "web")), true, ""},
		{"get other node's pod", as(n1, resourceAttrs("get", "", "pods", "", "default", "other")), false,
			"no relationship found between node 'n1' and this object"},
		{"exec into a pod", as(n1, resourceAttrs("create", "", "pods", "exec", "default", "web")), false, ""},
		{"create a (mirror) pod", as(n1, resourceAttrs("create", "", "pods", "", "default", "")), true, ""},
		{"secret volume", as(n1, resourceAttrs("get", "", "secrets", "", "default", "web-tls")), true, ""},
		{"env secret", as(n1, resourceAttrs("get", "", "secrets", "", "default", "db-password")), true, ""},
		{"pull secret", as(n1, resourceAttrs("get", "", "secrets", "", "default", "pull")), true, ""},
		{"other node's secret", as(n1, resourceAttrs("get", "", "secrets", "", "default", "n2-secret")), false,
			"no relationship found between node 'n1' and this object"},
		{"list secrets", as(n1, resourceAttrs("list", "", "secrets", "", "default", "")), false, "No Object name found"},
		{"write a referenced secret", as(n1, resourceAttrs("update", "", "secrets", "", "default", "web-tls")), false,
			"can only read resources of this type"},
		{"projected config map", as(n1, resourceAttrs("get", "", "configmaps", "", "default", "proj-cm")), true, ""},
		{"init container config map", as(n1, resourceAttrs("get", "", "configmaps", "", "default", "init-env")), true, ""},
		{"claim", as(n1, resourceAttrs("get", "", "persistentvolumeclaims", "", "default", "web-data")), true, ""},
		{"ephemeral volume claim", as(n1, resourceAttrs("get", "", "persistentvolumeclaims", "", "default", "web-scratch")), true, ""},
		{"volume of a claim", as(n1, resourceAttrs("get", "", "persistentvolumes", "", "", "pv-web")), true, ""},
		{"volume of an unused claim", as(n1, resourceAttrs("get", "", "persistentvolumes", "", "", "pv-unused")), false,
			"no relationship found between node 'n1' and this object"},
		{"list volumes", as(n1, resourceAttrs("list", "", "persistentvolumes", "", "", "")), false,
			"can only get individual resources of this type"},
		{"token of a pod's service account", as(n1, resourceAttrs("create", "", "serviceaccounts", "token", "default", "web-sa")), true, ""},
		{"token of another account", as(n1, resourceAttrs("create", "", "serviceaccounts", "token", "default", "other-sa")), false,
			"no relationship found between node 'n1' and this object"},
		{"events", as(n1, resourceAttrs("create", "", "events", "", "default", "")), true, ""},
		{"events.k8s.io events", as(n1, resourceAttrs("patch", "events.k8s.io", "events", "", "default", "e")), true, ""},
		{"delete events", as(n1, resourceAttrs("delete", "", "events", "", "default", "e")), false, ""},
		{"deployments", as(n1, resourceAttrs("list", "apps", "deployments", "", "", "")), false, ""},
		{"not in system:nodes", as(notInGroup, resourceAttrs("get", "", "nodes", "", "", "n1")), false, ""},
		{"unnamed node", as(apiserver.UserInfo{Name: "system:node:", Groups: []string{"system:nodes"}}, resourceAttrs("get", "", "nodes", "", "", "n1")), false,
			`unknown node for user "system:node:"`},
	}
	claims := fakeClaims{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-data"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-web"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "unused"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-unused"}},
	}
	az := NewNode(pods, claims)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, reason, err := az.Authorize(context.Background(), tt.a)
			if err != nil {
				t.Fatal(err)
			}
			if d == apiserver.DecisionDeny {
				t.Errorf("the node authorizer never denies outright, got Deny")
			}
			if got := d == apiserver.DecisionAllow; got != tt.allow {
				t.Errorf("allowed = %v (%q), want %v", got, reason, tt.allow)
			}
			if tt.wantReason != "" && reason != tt.wantReason {
				t.Errorf("reason = %q, want %q", reason, tt.wantReason)
			}
		})
	}
}

// fakeNodes is a NodeGetter over fixed nodes.
type fakeNodes []*corev1.Node

func (f fakeNodes) Get(_, name string) (*corev1.Node, bool) {
	for _, n := range f {
		if n.Name == name {
			return n, true
		}
	}
	return nil, false
}

func TestAdmitMirrorPod(t *testing.T) {
	nodes := fakeNodes{{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "n1-uid"}}}
	yes, no := true, false
	mirror := func(edit func(p *corev1.Pod)) *corev1.Pod {
		p := boundPod("web-n1", "n1", corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}})
		p.Annotations = map[string]string{mirrorPodAnnotation: "0123abcd"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1", UID: "n1-uid", Controller: &yes}}
		if edit != nil {
			edit(p)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"mirror pod", mirror(nil), ""},
		{"mirror pod without owner", mirror(func(p *corev1.Pod) { p.OwnerReferences = nil }), ""},
		{"not a mirror", mirror(func(p *corev1.Pod) { p.Annotations = nil }),
			`pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods`},
		{"bound elsewhere", mirror(func(p *corev1.Pod) { p.Spec.NodeName = "n2" }),
			`node "n1" can only create pods with spec.nodeName set to itself`},
		{"unbound", mirror(func(p *corev1.Pod) { p.Spec.NodeName = "" }),
			`node "n1" can only create pods with spec.nodeName set to itself`},
		{"two owners", mirror(func(p *corev1.Pod) { p.OwnerReferences = append(p.OwnerReferences, p.OwnerReferences[0]) }),
			`node "n1" can only create pods with a single owner reference set to itself`},
		{"owned by another node", mirror(func(p *corev1.Pod) { p.OwnerReferences[0].Name = "n2" }),
			`node "n1" can only create pods with an owner reference set to itself`},
		{"owned by a replica set", mirror(func(p *corev1.Pod) {
			p.OwnerReferences[0].Kind, p.OwnerReferences[0].APIVersion = "ReplicaSet", "apps/v1"
		}),
			`node "n1" can only create pods with an owner reference set to itself`},
		{"not controller", mirror(func(p *corev1.Pod) { p.OwnerReferences[0].Controller = &no }),
			`node "n1" can only create pods with a controller owner reference set to itself`},
		{"blocks deletion", mirror(func(p *corev1.Pod) { p.OwnerReferences[0].BlockOwnerDeletion = &yes }),
			`node "n1" must not set blockOwnerDeletion on an owner reference`},
		{"stale node uid", mirror(func(p *corev1.Pod) { p.OwnerReferences[0].UID = "old-uid" }),
			`node n1 UID mismatch: expected old-uid got n1-uid`},
		{"service account", mirror(func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" }),
			`node "n1" can not create pods that reference a service account`},
		{"secret volume", mirror(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}}}
		}), `node "n1" can not create pods that reference secrets`},
		{"configmap env", mirror(func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
		}), `node "n1" can not create pods that reference configmaps`},
		{"claim", mirror(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		}), `node "n1" can not create pods that reference persistentvolumeclaims`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := admitMirrorPod("n1", tc.pod, nodes)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}
