package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/orch-dev/orch/server/pki"
)

// startAuthzCluster runs a control plane in dataDir, driven by kubectl.
func startAuthzCluster(t *testing.T, cfg Config) (*cluster, *runningServer) {
	t.Helper()
	if _, err := os.Stat(cfg.WriteKubeconfig); err == nil {
		// A restart: wait for the new kubeconfig, not the old one.
		if err := os.Remove(cfg.WriteKubeconfig); err != nil {
			t.Fatal(err)
		}
	}
	rs := startRun(t, cfg)
	rest, err := clientcmd.BuildConfigFromFlags("", cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rest)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, kubeconfig: cfg.WriteKubeconfig, cacheDir: t.TempDir(), cs: cs}, rs
}

// nodeKubeconfig writes a kubeconfig with a client certificate of node
// name, signed by the cluster CA as a joined agent's is.
func (c *cluster) nodeKubeconfig(dataDir, name string) string {
	c.t.Helper()
	ca, err := pki.Load(filepath.Join(dataDir, "server", "tls"), pki.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.SignClient("system:node:"+name, []string{"system:nodes"}, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	admin, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["orch"] = admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	cfg.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["node"] = &clientcmdapi.Context{Cluster: "orch", AuthInfo: "node"}
	cfg.CurrentContext = "node"
	path := filepath.Join(c.t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// denied runs kubectl expecting a failure whose output contains want.
func (c *cluster) denied(want string, args ...string) {
	c.t.Helper()
	out, err := c.try(args...)
	if err == nil || !strings.Contains(out, want) {
		c.t.Errorf("kubectl %s: err %v, want a failure saying %q; output:\n%s", strings.Join(args, " "), err, want, out)
	}
}

func TestAuthorizationWithKubectl(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Logger = quietLogger()
	c, _ := startAuthzCluster(t, cfg)

	// The bootstrap policy exists once the server is ready, with the
	// aggregated roles filled.
	c.kubectl("get", "clusterrole", "cluster-admin", "view", "system:discovery", "system:basic-user", "system:public-info-viewer")
	c.eventually(30*time.Second, []string{"deployments"}, "get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}")
	// The aggregation controller pulls a labelled role into view, and
	// through it into edit and admin; it takes it out again on delete.
	c.apply(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widget-viewer
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}
`)
	for _, role := range []string{"view", "edit", "admin"} {
		c.eventually(30*time.Second, []string{"widgets"}, "get", "clusterrole", role, "-o", "jsonpath={.rules[*].resources}")
	}
	c.kubectl("delete", "clusterrole", "widget-viewer")
	for deadline := time.Now().Add(30 * time.Second); strings.Contains(c.kubectl("get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}"), "widgets"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("admin still has the rules of a deleted aggregated role")
		}
	}

	// A service account with a Role reads pods in its namespace and
	// nothing else.
	c.kubectl("create", "namespace", "team")
	c.kubectl("create", "serviceaccount", "robot", "-n", "team")
	c.kubectl("create", "role", "pod-reader", "-n", "team", "--verb=get,list,watch", "--resource=pods")
	c.kubectl("create", "rolebinding", "robot-reads-pods", "-n", "team", "--role=pod-reader", "--serviceaccount=team:robot")
	robot := c.tokenKubeconfig(strings.TrimSpace(c.kubectl("create", "token", "robot", "-n", "team")))
	c.kubectl("run", "web", "-n", "team", "--image=busybox", "--restart=Never")

	c.eventually(30*time.Second, []string{"web"}, "--kubeconfig", robot, "get", "pods", "-n", "team")
	c.denied(`pods is forbidden: User "system:serviceaccount:team:robot" cannot list resource "pods" in API group "" in the namespace "default"`,
		"--kubeconfig", robot, "get", "pods", "-n", "default")
	c.denied(`pods is forbidden: User "system:serviceaccount:team:robot" cannot list resource "pods" in API group "" at the cluster scope`,
		"--kubeconfig", robot, "get", "pods", "-A")
	c.denied(`secrets is forbidden: User "system:serviceaccount:team:robot" cannot list resource "secrets" in API group "" in the namespace "team"`,
		"--kubeconfig", robot, "get", "secrets", "-n", "team")
	c.denied(`pods "web" is forbidden: User "system:serviceaccount:team:robot" cannot delete resource "pods" in API group "" in the namespace "team"`,
		"--kubeconfig", robot, "delete", "pod", "web", "-n", "team")
	c.denied(`deployments.apps is forbidden: User "system:serviceaccount:team:robot" cannot list resource "deployments" in API group "apps" in the namespace "team"`,
		"--kubeconfig", robot, "get", "deployments", "-n", "team")

	c.denied(`forbidden: User "system:serviceaccount:team:robot" cannot get path "/metrics"`, "--kubeconfig", robot, "get", "--raw", "/metrics")
	c.kubectl("--kubeconfig", robot, "get", "--raw", "/version")

	// kubectl auth can-i: the account itself (SelfSubjectAccessReview) and
	// the admin impersonating it.
	if out := c.kubectl("--kubeconfig", robot, "auth", "can-i", "list", "pods", "-n", "team"); strings.TrimSpace(out) != "yes" {
		t.Errorf("robot can-i list pods in team: %q", out)
	}
	if out, err := c.try("--kubeconfig", robot, "auth", "can-i", "delete", "pods", "-n", "team"); err == nil || strings.TrimSpace(out) != "no" {
		t.Errorf("robot can-i delete pods in team: %v %q", err, out)
	}
	if out := c.kubectl("auth", "can-i", "watch", "pods", "-n", "team", "--as", "system:serviceaccount:team:robot"); strings.TrimSpace(out) != "yes" {
		t.Errorf("can-i --as robot watch pods in team: %q", out)
	}
	if out, err := c.try("auth", "can-i", "list", "pods", "-n", "default", "--as", "system:serviceaccount:team:robot"); err == nil || strings.TrimSpace(out) != "no" {
		t.Errorf("can-i --as robot list pods in default: %v %q", err, out)
	}
	if out := c.kubectl("auth", "can-i", "*", "*"); strings.TrimSpace(out) != "yes" {
		t.Errorf("admin can-i everything: %q", out)
	}
	list := c.kubectl("--kubeconfig", robot, "auth", "can-i", "--list", "-n", "team")
	if !containsAll(list, []string{"pods", "[get list watch]", "selfsubjectaccessreviews.authorization.k8s.io", "/api/*"}) {
		t.Errorf("robot can-i --list:\n%s", list)
	}

	// Impersonated users get the upstream message, and the aggregated
	// edit role through a RoleBinding.
	c.denied(`pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team"`,
		"get", "pods", "-n", "team", "--as", "alice")
	c.kubectl("create", "rolebinding", "alice-edits", "-n", "team", "--clusterrole=edit", "--user=alice")
	c.eventually(30*time.Second, []string{"web"}, "get", "pods", "-n", "team", "--as", "alice")
	if out := c.kubectl("auth", "can-i", "create", "deployments.apps", "-n", "team", "--as", "alice"); strings.TrimSpace(out) != "yes" {
		t.Errorf("alice (edit) can-i create deployments: %q", out)
	}
	if out, err := c.try("auth", "can-i", "create", "rolebindings", "-n", "team", "--as", "alice"); err == nil || strings.TrimSpace(out) != "no" {
		t.Errorf("alice (edit) can-i create rolebindings: %v %q", err, out)
	}
	// SubjectAccessReview and LocalSubjectAccessReview (protobuf, through
	// client-go) ask about anyone.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sar, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: "system:serviceaccount:team:robot", Groups: []string{"system:serviceaccounts", "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team", Verb: "list", Resource: "pods"}}}, metav1.CreateOptions{})
	if err != nil || !sar.Status.Allowed || !strings.Contains(sar.Status.Reason, `RoleBinding "team/robot-reads-pods" of Role "pod-reader"`) {
		t.Errorf("subject access review: %+v, %v", sar, err)
	}
	lsar, err := c.cs.AuthorizationV1().LocalSubjectAccessReviews("team").Create(ctx, &authorizationv1.LocalSubjectAccessReview{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team"}, Spec: authorizationv1.SubjectAccessReviewSpec{User: "alice",
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team", Verb: "get", Resource: "secrets", Name: "x"}}}, metav1.CreateOptions{})
	if err != nil || !lsar.Status.Allowed || !strings.Contains(lsar.Status.Reason, `RoleBinding "team/alice-edits" of ClusterRole "edit" to User "alice"`) {
		t.Errorf("local subject access review of alice (edit): %+v, %v", lsar, err)
	}
	_, err = c.cs.AuthorizationV1().LocalSubjectAccessReviews("team").Create(ctx, &authorizationv1.LocalSubjectAccessReview{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team"}, Spec: authorizationv1.SubjectAccessReviewSpec{User: "alice",
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "secrets"}}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.resourceAttributes.namespace: Invalid value: \"default\": must match metadata.namespace") {
		t.Errorf("local review of another namespace: %v", err)
	}
	c.denied(`subjectaccessreviews.authorization.k8s.io is forbidden: User "system:serviceaccount:team:robot" cannot create resource "subjectaccessreviews"`,
		"--kubeconfig", robot, "create", "-f", writeManifest(t, `{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"x","nonResourceAttributes":{"verb":"get","path":"/"}}}`))

	// A namespace admin grants what it holds, and nothing more.
	c.kubectl("create", "rolebinding", "bob-admin", "-n", "team", "--clusterrole=admin", "--user=bob")
	c.eventually(30*time.Second, []string{"rolebinding"}, "create", "rolebinding", "carol-edits", "-n", "team", "--clusterrole=edit", "--user=carol", "--as", "bob")
	c.kubectl("create", "role", "secret-reader", "-n", "team", "--verb=get", "--resource=secrets", "--as", "bob")
	c.denied(`rolebindings.rbac.authorization.k8s.io "carol-admin" is forbidden: user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:`,
		"create", "rolebinding", "carol-admin", "-n", "team", "--clusterrole=cluster-admin", "--user=carol", "--as", "bob")
	c.denied(`{APIGroups:[""], Resources:["nodes"], Verbs:["list"]}`,
		"create", "role", "node-lister", "-n", "team", "--verb=list", "--resource=nodes", "--as", "bob")
	c.denied(`clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "bob" cannot create resource "clusterrolebindings"`,
		"create", "clusterrolebinding", "bob-root", "--clusterrole=cluster-admin", "--user=bob", "--as", "bob")

	// Impersonation itself is authorized.
	c.denied(`users "admin" is forbidden: User "system:serviceaccount:team:robot" cannot impersonate resource "users" in API group "" at the cluster scope`,
		"--kubeconfig", robot, "--as", "admin", "get", "pods", "-n", "team")
}

func TestNodeAuthorizationWithKubectl(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Logger = quietLogger()
	c, _ := startAuthzCluster(t, cfg)

	// Two pods bound to two nodes, each with its own secret.
	c.apply(`apiVersion: v1
kind: Secret
metadata: {name: secret-a}
stringData: {v: a}
---
apiVersion: v1
kind: Secret
metadata: {name: secret-b}
stringData: {v: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-a}
data: {v: a}
---
apiVersion: v1
kind: Pod
metadata: {name: pod-a}
spec:
  nodeName: node-a
  containers:
  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: config-a}}]
  volumes: [{name: s, secret: {secretName: secret-a}}]
---
apiVersion: v1
kind: Pod
metadata: {name: pod-b}
spec:
  nodeName: node-b
  containers: [{name: c, image: busybox}]
  volumes: [{name: s, secret: {secretName: secret-b}}]
`)
	nodeA := c.nodeKubeconfig(cfg.DataDir, "node-a")

	c.eventually(30*time.Second, []string{"secret-a"}, "--kubeconfig", nodeA, "get", "secret", "secret-a", "-o", "name")
	c.kubectl("--kubeconfig", nodeA, "get", "configmap", "config-a")
	c.kubectl("--kubeconfig", nodeA, "get", "pod", "pod-a")
	c.kubectl("--kubeconfig", nodeA, "get", "pods", "-A", "--field-selector", "spec.nodeName=node-a")
	c.denied(`secrets "secret-b" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'node-a' and this object`,
		"--kubeconfig", nodeA, "get", "secret", "secret-b")
	c.denied(`pods "pod-b" is forbidden: User "system:node:node-a" cannot get resource "pods" in API group "" in the namespace "default": no relationship found between node 'node-a' and this object`,
		"--kubeconfig", nodeA, "get", "pod", "pod-b")
	c.denied(`secrets is forbidden: User "system:node:node-a" cannot list resource "secrets" in API group "" in the namespace "default"`,
		"--kubeconfig", nodeA, "get", "secrets")
	// A node lists only its own pods. Its NetworkPolicy enforcement, which
	// selects peers on other nodes, acts as system:orch:network-policy,
	// the one user nodes may impersonate (k3s gives its agents a second
	// certificate for this): that user lists pods, namespaces and policies
	// and nothing else.
	c.denied(`pods is forbidden: User "system:node:node-a" cannot list resource "pods" in API group "" at the cluster scope: can only list/watch pods with spec.nodeName field selector`,
		"--kubeconfig", nodeA, "get", "pods", "-A")
	asPolicy := []string{"--kubeconfig", nodeA, "--as", "system:orch:network-policy"}
	if got := c.kubectl(append(asPolicy, "get", "pods", "-A", "-o", "name")...); !strings.Contains(got, "pod/pod-b") {
		t.Fatalf("network-policy user lists pods %q, want pod-b among them", got)
	}
	c.kubectl(append(asPolicy, "get", "namespaces,networkpolicies", "-A")...)
	c.denied(`secrets is forbidden: User "system:orch:network-policy" cannot list resource "secrets" in API group "" at the cluster scope`,
		append(asPolicy, "get", "secrets", "-A")...)
	c.denied(`users "system:admin" is forbidden: User "system:node:node-a" cannot impersonate resource "users" in API group "" at the cluster scope`,
		"--kubeconfig", nodeA, "--as", "system:admin", "get", "pods")
	c.denied(`configmaps is forbidden: User "system:node:node-a" cannot list resource "configmaps" in API group "" at the cluster scope`,
		"--kubeconfig", nodeA, "get", "configmaps", "-A")
	c.denied(`deployments.apps is forbidden: User "system:node:node-a" cannot list resource "deployments" in API group "apps" in the namespace "default"`,
		"--kubeconfig", nodeA, "get", "deployments")
	c.denied(`nodes "node-b" is forbidden: User "system:node:node-a" cannot delete resource "nodes" in API group "" at the cluster scope`,
		"--kubeconfig", nodeA, "delete", "node", "node-b")
	// A node registers itself only.
	c.denied(`nodes "node-b" is forbidden: node "node-a" is not allowed to modify node "node-b"`,
		"--kubeconfig", nodeA, "create", "-f", writeManifest(t, "apiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n"))
	c.kubectl("--kubeconfig", nodeA, "create", "-f", writeManifest(t, "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n"))
	c.kubectl("--kubeconfig", nodeA, "label", "node", "node-a", "zone=z1")
	// A node creates mirror pods of its static pods, owned by itself, and
	// no other pod (NodeRestriction).
	uid := c.kubectl("--kubeconfig", nodeA, "get", "node", "node-a", "-o", "jsonpath={.metadata.uid}")
	mirror := func(node, extra string) string {
		return writeManifest(t, `apiVersion: v1
kind: Pod
metadata:
  name: static-`+node+`
  annotations: {kubernetes.io/config.mirror: "0123abcd"}
  ownerReferences: [{apiVersion: v1, kind: Node, name: node-a, uid: "`+uid+`", controller: true}]
spec:
  nodeName: `+node+`
  containers: [{name: c, image: busybox}]
`+extra)
	}
	c.kubectl("--kubeconfig", nodeA, "create", "-f", mirror("node-a", ""))
	c.kubectl("--kubeconfig", nodeA, "delete", "pod", "static-node-a", "--force", "--grace-period=0")
	c.denied(`pods "static-node-b" is forbidden: node "node-a" can only create pods with spec.nodeName set to itself`,
		"--kubeconfig", nodeA, "create", "-f", mirror("node-b", ""))
	c.denied(`pods "static-node-a" is forbidden: node "node-a" can not create pods that reference secrets`,
		"--kubeconfig", nodeA, "create", "-f", mirror("node-a", "  volumes: [{name: s, secret: {secretName: secret-a}}]\n"))
	c.denied(`pods "plain" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "node-a" can only create mirror pods`,
		"--kubeconfig", nodeA, "run", "plain", "--image=busybox", "--overrides", `{"spec":{"nodeName":"node-a"}}`)
	// What the agent's service proxy reads, it reads as kube-proxy.
	c.denied(`services is forbidden: User "system:node:node-a" cannot list resource "services" in API group "" at the cluster scope`,
		"--kubeconfig", nodeA, "get", "services", "-A")
	c.kubectl("--kubeconfig", nodeA, "--as", "system:kube-proxy", "get", "services,endpointslices,nodes", "-A")
	// Its ingress proxy reads Ingresses, their classes, Services and
	// slices cluster-wide as system:orch:ingress, what k3s grants Traefik,
	// and no pods; of Secrets only those an Ingress names for TLS, one by
	// one: every node may act as that user.
	asIngress := []string{"--kubeconfig", nodeA, "--as", "system:orch:ingress"}
	c.kubectl(append(asIngress, "get", "ingresses,ingressclasses,services,endpointslices", "-A")...)
	c.denied(`pods is forbidden: User "system:orch:ingress" cannot list resource "pods" in API group "" at the cluster scope`,
		append(asIngress, "get", "pods", "-A")...)
	c.denied(`secrets is forbidden: User "system:orch:ingress" cannot list resource "secrets" in API group "" at the cluster scope: can only get secrets named for TLS by an ingress, one by one`,
		append(asIngress, "get", "secrets", "-A")...)
	c.denied(`secrets "secret-b" is forbidden: User "system:orch:ingress" cannot get resource "secrets" in API group "" in the namespace "default": no ingress in namespace "default" names secret "secret-b" for TLS`,
		append(asIngress, "get", "secret", "secret-b")...)
	c.kubectl("create", "-f", writeManifest(t, `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site}
spec:
  tls: [{hosts: [site.example], secretName: secret-b}]
  defaultBackend: {service: {name: web, port: {number: 80}}}
`))
	c.eventually(30*time.Second, []string{"secret/secret-b"}, append(asIngress, "get", "secret", "secret-b", "-o", "name")...)
}

func TestSecretsEncryptionAtRest(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Logger = quietLogger()
	cfg.SecretsEncryption = true
	c, rs := startAuthzCluster(t, cfg)

	const secretValue = "plaintext-secret-value-4f1e2d"
	const configValue = "plaintext-config-value-9a8b7c"
	c.kubectl("create", "secret", "generic", "db", "--from-literal=password="+secretValue)
	c.kubectl("create", "configmap", "settings", "--from-literal=value="+configValue)
	if out := c.kubectl("get", "secret", "db", "-o", "jsonpath={.data.password}"); strings.TrimSpace(out) == "" {
		t.Fatalf("secret reads back empty")
	}
	keyFile := EncryptionConfigPath(cfg.DataDir)
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if err := rs.stop(t); err != nil {
		t.Fatal(err)
	}
	checkDB := func(wantKey string) {
		t.Helper()
		db, err := os.ReadFile(filepath.Join(cfg.DataDir, "server", "db", "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(db, []byte(configValue)) {
			t.Fatal("the config map is not in the database file as plain text: is the check reading the right file?")
		}
		for _, plain := range []string{secretValue, "cGxhaW50ZXh0LXNlY3JldC12YWx1ZS00ZjFlMmQ"} { // and its base64
			if bytes.Contains(db, []byte(plain)) {
				t.Errorf("the database file holds the secret as plain text (%s)", plain)
			}
		}
		if !bytes.Contains(db, []byte("k8s:enc:aesgcm:v1:"+wantKey+":")) {
			t.Errorf("no value sealed with %s in the database file", wantKey)
		}
	}
	checkDB("key1")

	// Rotation re-encrypts with a new key; the server reads it back.
	key, n, err := RotateEncryptionKeys(context.Background(), cfg.DataDir)
	if err != nil || key != "key2" || n < 1 {
		t.Fatalf("rotate: key %q, %d secrets, %v", key, n, err)
	}
	checkDB("key2")
	cfg.HTTPSPort = freePort(t)
	c, _ = startAuthzCluster(t, cfg)
	if out := c.kubectl("get", "secret", "db", "-o", "go-template={{.data.password | base64decode}}"); out != secretValue {
		t.Errorf("secret after rotation and restart: %q", out)
	}
}

func writeManifest(t *testing.T, manifest string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
