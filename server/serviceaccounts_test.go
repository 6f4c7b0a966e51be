package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// tokenKubeconfig writes a kubeconfig for the cluster that authenticates
// with token only (no client certificate, which would win over it).
func (c *cluster) tokenKubeconfig(token string) string {
	c.t.Helper()
	admin, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	cl := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["orch"] = cl
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "orch", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	path := filepath.Join(c.t.TempDir(), "token.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// whoami runs `kubectl auth whoami` with token.
func (c *cluster) whoami(token string) (string, error) {
	return c.try("--kubeconfig", c.tokenKubeconfig(token), "auth", "whoami")
}

func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestServiceAccountTokens(t *testing.T) {
	c := startCluster(t, 1)
	c.eventually(30*time.Second, []string{"default"}, "get", "serviceaccount", "default")
	c.eventually(30*time.Second, []string{"BEGIN CERTIFICATE"}, "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}")

	// kubectl create token, then the token authenticates as the account.
	token := strings.TrimSpace(c.kubectl("create", "token", "default"))
	claims := jwtClaims(t, token)
	if claims["iss"] != "https://kubernetes.default.svc.cluster.local" || claims["sub"] != "system:serviceaccount:default:default" {
		t.Errorf("claims = %v", claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 3600 {
		t.Errorf("lifetime = %v s, want the default 3600", exp-iat)
	}
	out, err := c.whoami(token)
	if err != nil || !containsAll(out, []string{"system:serviceaccount:default:default", "system:serviceaccounts:default", "system:authenticated"}) {
		t.Fatalf("kubectl auth whoami with the token: %v\n%s", err, out)
	}
	if out, err := c.try("--kubeconfig", c.tokenKubeconfig(token), "get", "--raw", "/api"); err != nil || !strings.Contains(out, `"versions"`) {
		t.Errorf("GET /api with the token: %v\n%s", err, out)
	}
	if out, err := c.whoami(token[:len(token)-3] + "AAA"); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Errorf("tampered token: %v\n%s", err, out)
	}

	token = strings.TrimSpace(c.kubectl("create", "token", "default", "--duration=2h", "--audience=vault"))
	if claims := jwtClaims(t, token); claims["exp"].(float64)-claims["iat"].(float64) != 7200 {
		t.Errorf("--duration=2h: claims %v", claims)
	}
	// A token for another audience is no good at the API server.
	if out, err := c.whoami(token); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Errorf("token for audience vault at the API server: %v\n%s", err, out)
	}
	if out, err := c.try("create", "token", "default", "--duration=5m"); err == nil || !strings.Contains(out, "may not specify a duration less than 10 minutes") {
		t.Errorf("--duration=5m: %v\n%s", err, out)
	}
	if out, err := c.try("create", "token", "ghost"); err == nil || !strings.Contains(out, `serviceaccounts "ghost" not found`) {
		t.Errorf("token of a missing account: %v\n%s", err, out)
	}

	// RBAC sees the account: a Role lets it list pods in its namespace and
	// nothing else.
	c.kubectl("create", "serviceaccount", "reader")
	c.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods")
	c.kubectl("create", "rolebinding", "reader-pods", "--role=pod-reader", "--serviceaccount=default:reader")
	readerConfig := c.tokenKubeconfig(strings.TrimSpace(c.kubectl("create", "token", "reader")))
	c.eventually(20*time.Second, []string{"No resources found"}, "--kubeconfig", readerConfig, "get", "pods", "-n", "default")
	if out, err := c.try("--kubeconfig", readerConfig, "get", "secrets"); err == nil ||
		!strings.Contains(out, `User "system:serviceaccount:default:reader" cannot list resource "secrets"`) {
		t.Errorf("reader listing secrets: %v\n%s", err, out)
	}
	if out, err := c.try("--kubeconfig", readerConfig, "auth", "can-i", "list", "pods", "-n", "kube-system"); err == nil || !strings.Contains(out, "no") {
		t.Errorf("reader may list pods in kube-system: %v\n%s", err, out)
	}

	// Pods get the kube-api-access volume; a token bound to a pod dies with it.
	c.kubectl("run", "web", "--image=busybox", "--restart=Never")
	var pod corev1.Pod
	if err := json.Unmarshal([]byte(c.kubectl("get", "pod", "web", "-o", "json")), &pod); err != nil {
		t.Fatal(err)
	}
	checkTokenVolume(t, &pod)
	if out, err := c.try("run", "lost", "--image=busybox", "--restart=Never", "--overrides", `{"spec":{"serviceAccountName":"ghost"}}`); err == nil ||
		!strings.Contains(out, `pods "lost" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found`) {
		t.Errorf("pod with a missing account: %v\n%s", err, out)
	}
	bound := strings.TrimSpace(c.kubectl("create", "token", "default", "--bound-object-kind=Pod", "--bound-object-name=web"))
	if ref := jwtClaims(t, bound)["kubernetes.io"].(map[string]any)["pod"].(map[string]any); ref["name"] != "web" || ref["uid"] != string(pod.UID) {
		t.Errorf("pod claim = %v, want web %s", ref, pod.UID)
	}
	out, err = c.whoami(bound)
	if err != nil || !containsAll(out, []string{"authentication.kubernetes.io/pod-name", "[web]"}) {
		t.Fatalf("whoami with a pod-bound token: %v\n%s", err, out)
	}
	c.kubectl("delete", "pod", "web", "--grace-period=0", "--force")
	if out, err := c.whoami(bound); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Errorf("token of a deleted pod: %v\n%s", err, out)
	}

	// A token secret is filled in by the token controller; its token works
	// while the secret holds it.
	c.apply(`apiVersion: v1
kind: Secret
metadata:
  name: default-token
  annotations: {kubernetes.io/service-account.name: default}
type: kubernetes.io/service-account-token
`)
	data := c.eventually(30*time.Second, []string{"token"}, "get", "secret", "default-token", "-o", "jsonpath={.data}")
	var filled map[string][]byte
	if err := json.Unmarshal([]byte(data), &filled); err != nil {
		t.Fatal(err)
	}
	if string(filled["namespace"]) != "default" || !strings.Contains(string(filled["ca.crt"]), "BEGIN CERTIFICATE") {
		t.Errorf("secret data = %v", data)
	}
	if out, err := c.whoami(string(filled["token"])); err != nil || !strings.Contains(out, "system:serviceaccount:default:default") {
		t.Errorf("whoami with the secret's token: %v\n%s", err, out)
	}

	// TokenReview (protobuf through client-go) says the same.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	review, err := c.cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: string(filled["token"])}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:default:default" {
		t.Errorf("token review = %+v", review.Status)
	}
	c.kubectl("delete", "secret", "default-token")
	if out, err := c.whoami(string(filled["token"])); err == nil {
		t.Errorf("token of a deleted secret still works:\n%s", out)
	}
}

func checkTokenVolume(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName = %q", pod.Spec.ServiceAccountName)
	}
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if strings.HasPrefix(pod.Spec.Volumes[i].Name, "kube-api-access-") {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Projected == nil || len(vol.Projected.Sources) != 3 {
		t.Fatalf("no kube-api-access projected volume: %+v", pod.Spec.Volumes)
	}
	src := vol.Projected.Sources
	if src[0].ServiceAccountToken == nil || *src[0].ServiceAccountToken.ExpirationSeconds != 3607 || src[0].ServiceAccountToken.Path != "token" ||
		src[1].ConfigMap == nil || src[1].ConfigMap.Name != "kube-root-ca.crt" || src[2].DownwardAPI == nil {
		t.Errorf("sources = %+v", src)
	}
	m := pod.Spec.Containers[0].VolumeMounts
	if len(m) != 1 || m[0].Name != vol.Name || !m[0].ReadOnly || m[0].MountPath != "/var/run/secrets/kubernetes.io/serviceaccount" {
		t.Errorf("mounts = %+v", m)
	}
}
