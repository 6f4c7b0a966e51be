package agent

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/orch-dev/orch/runtime/container"
)

// checkServiceAccountToken reads the kube-api-access files in a running
// container (id) of pod default/<podName> and talks to the API server as
// an in-cluster client would: the pod's token, verified against the pod's
// ca.crt.
func checkServiceAccountToken(ctx context.Context, t *testing.T, a *Agent, server *rest.Config, id, podName string) {
	t.Helper()
	read := func(name string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code, err := a.rt.Exec(ctx, id, container.ExecRequest{
			Args: []string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/" + name}, Stdout: &out, Stderr: &errOut})
		if err != nil || code != 0 {
			t.Fatalf("cat %s in the container: code %d, err %v, stderr %q", name, code, err, errOut.String())
		}
		return out.String()
	}
	token, caPEM, ns := read("token"), read("ca.crt"), read("namespace")
	if ns != "default" || !strings.Contains(caPEM, "BEGIN CERTIFICATE") || strings.Count(token, ".") != 2 {
		t.Fatalf("service account files: namespace %q, ca.crt %q, token %q", ns, caPEM, token)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: server.Host, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(caPEM)}})
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with the pod's token: %v", err)
	}
	u := review.Status.UserInfo
	if u.Username != "system:serviceaccount:default:default" || !slices.Contains(u.Groups, "system:serviceaccounts:default") ||
		!slices.Equal([]string(u.Extra["authentication.kubernetes.io/pod-name"]), []string{podName}) {
		t.Errorf("the pod's token authenticates as %+v", u)
	}
}
