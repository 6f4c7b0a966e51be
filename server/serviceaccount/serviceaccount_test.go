package serviceaccount

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/apiserver"
)

// fakeObjects is an in-memory Objects.
type fakeObjects struct {
	accounts map[string]*corev1.ServiceAccount
	pods     map[string]*corev1.Pod
	secrets  map[string]*corev1.Secret
	nodes    map[string]*corev1.Node
}

func newFakeObjects() *fakeObjects {
	return &fakeObjects{accounts: map[string]*corev1.ServiceAccount{}, pods: map[string]*corev1.Pod{}, secrets: map[string]*corev1.Secret{}, nodes: map[string]*corev1.Node{}}
}

func lookup[T any](m map[string]T, resource, ns, name string) (T, error) {
	if v, ok := m[ns+"/"+name]; ok {
		return v, nil
	}
	var zero T
	return zero, apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
}

func (f *fakeObjects) ServiceAccount(_ context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	return lookup(f.accounts, "serviceaccounts", ns, name)
}
func (f *fakeObjects) Pod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	return lookup(f.pods, "pods", ns, name)
}
func (f *fakeObjects) Node(_ context.Context, name string) (*corev1.Node, error) {
	return lookup(f.nodes, "nodes", "", name)
}
func (f *fakeObjects) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	return lookup(f.secrets, "secrets", ns, name)
}

type fixture struct {
	objects  *fakeObjects
	signer   *Signer
	requests *TokenRequests
	authn    *Authenticator
	now      time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	signer, err := NewSigner(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{objects: newFakeObjects(), signer: signer, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	clock := func() time.Time { return f.now }
	f.requests = NewTokenRequests(signer, f.objects, AuthenticatorOptions{Now: clock})
	f.authn = NewAuthenticator(verifier, f.objects, AuthenticatorOptions{Now: clock})
	f.objects.accounts["ns1/default"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "default", UID: "sa-uid"}}
	f.objects.accounts["ns1/other"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "other", UID: "other-uid"}}
	f.objects.pods["ns1/web"] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web", UID: "pod-uid"},
		Spec: corev1.PodSpec{ServiceAccountName: "default"}}
	f.objects.secrets["ns1/s"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "s", UID: "secret-uid"}}
	return f
}

func (f *fixture) token(t *testing.T, sa string, spec authenticationv1.TokenRequestSpec) *authenticationv1.TokenRequest {
	t.Helper()
	out, err := f.requests.Create(context.Background(), "ns1", sa, &authenticationv1.TokenRequest{Spec: spec})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return out
}

func int64p(v int64) *int64 { return &v }

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func decodeClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
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

func TestTokenRequestClaims(t *testing.T) {
	f := newFixture(t)
	out := f.token(t, "default", authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web", UID: "pod-uid"},
	})
	if got := *out.Spec.ExpirationSeconds; got != DefaultExpirationSeconds {
		t.Errorf("expirationSeconds = %d, want the default %d", got, DefaultExpirationSeconds)
	}
	if !slices.Equal(out.Spec.Audiences, []string{DefaultIssuer}) {
		t.Errorf("audiences = %q, want the API server's", out.Spec.Audiences)
	}
	if want := f.now.Add(time.Hour); !out.Status.ExpirationTimestamp.Time.Equal(want) {
		t.Errorf("expirationTimestamp = %v, want %v", out.Status.ExpirationTimestamp, want)
	}
	c := decodeClaims(t, out.Status.Token)
	if c["iss"] != DefaultIssuer || c["sub"] != "system:serviceaccount:ns1:default" {
		t.Errorf("iss/sub = %v/%v", c["iss"], c["sub"])
	}
	if c["exp"].(float64) != float64(f.now.Add(time.Hour).Unix()) || c["iat"].(float64) != float64(f.now.Unix()) || c["nbf"] == nil || c["jti"] == nil {
		t.Errorf("time claims = %v", c)
	}
	k := c["kubernetes.io"].(map[string]any)
	if k["namespace"] != "ns1" {
		t.Errorf("kubernetes.io.namespace = %v", k["namespace"])
	}
	if sa := k["serviceaccount"].(map[string]any); sa["name"] != "default" || sa["uid"] != "sa-uid" {
		t.Errorf("kubernetes.io.serviceaccount = %v", sa)
	}
	if pod := k["pod"].(map[string]any); pod["name"] != "web" || pod["uid"] != "pod-uid" {
		t.Errorf("kubernetes.io.pod = %v", pod)
	}

	u, ok, err := f.authn.AuthenticateToken(context.Background(), out.Status.Token)
	if err != nil || !ok {
		t.Fatalf("authenticate: ok=%v err=%v", ok, err)
	}
	if u.Name != "system:serviceaccount:ns1:default" || u.UID != "sa-uid" ||
		!slices.Equal(u.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:ns1"}) {
		t.Errorf("user = %+v", u)
	}
	if u.Extra[ExtraPodName][0] != "web" || u.Extra[ExtraPodUID][0] != "pod-uid" || !strings.HasPrefix(u.Extra[ExtraCredentialID][0], "JTI=") {
		t.Errorf("extra = %v", u.Extra)
	}
}

func TestExtendedKubeletTokens(t *testing.T) {
	f := newFixture(t)
	pod := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web"}
	out := f.token(t, "default", authenticationv1.TokenRequestSpec{ExpirationSeconds: int64p(KubeletExpirationSeconds), BoundObjectRef: pod})
	c := decodeClaims(t, out.Status.Token)
	if got, want := int64(c["exp"].(float64)), f.now.Add(extendedExpiration).Unix(); got != want {
		t.Errorf("exp = %d, want a year (%d)", got, want)
	}
	if got := int64(c["kubernetes.io"].(map[string]any)["warnafter"].(float64)); got != f.now.Unix()+KubeletExpirationSeconds {
		t.Errorf("warnafter = %d", got)
	}
	if want := f.now.Add(KubeletExpirationSeconds * time.Second); !out.Status.ExpirationTimestamp.Time.Equal(want) {
		t.Errorf("reported expiry = %v, want the requested %v", out.Status.ExpirationTimestamp, want)
	}
	// Another audience gets what it asked for.
	out = f.token(t, "default", authenticationv1.TokenRequestSpec{ExpirationSeconds: int64p(KubeletExpirationSeconds), BoundObjectRef: pod, Audiences: []string{"vault"}})
	if got := int64(decodeClaims(t, out.Status.Token)["exp"].(float64)); got != f.now.Unix()+KubeletExpirationSeconds {
		t.Errorf("exp for another audience = %d, want not extended", got)
	}
}

func TestTokenRequestErrors(t *testing.T) {
	tests := []struct {
		name    string
		sa      string
		req     authenticationv1.TokenRequest
		check   func(error) bool
		message string
	}{
		{"too short", "default", authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: int64p(599)}},
			apierrors.IsInvalid, "may not specify a duration less than 10 minutes"},
		{"too long", "default", authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: int64p(1<<32 + 1)}},
			apierrors.IsInvalid, "may not specify a duration larger than 2^32 seconds"},
		{"name mismatch", "default", authenticationv1.TokenRequest{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
			apierrors.IsInvalid, "must match the service account name if specified"},
		{"no such account", "nope", authenticationv1.TokenRequest{}, apierrors.IsNotFound, `"nope" not found`},
		{"pod of another account", "other", authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web"}}},
			apierrors.IsBadRequest, `cannot bind token for serviceaccount "other" to pod running with different serviceaccount name.`},
		{"pod uid mismatch", "default", authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web", UID: "old"}}},
			apierrors.IsConflict, "the UID in the bound object reference (old) does not match the UID in record"},
		{"missing pod", "default", authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "gone"}}},
			apierrors.IsNotFound, `"gone" not found`},
		{"unsupported kind", "default", authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Name: "d"}}},
			apierrors.IsBadRequest, "cannot bind token to object of type apps/v1, Kind=Deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.requests.Create(context.Background(), "ns1", tt.sa, &tt.req)
			if err == nil || !tt.check(err) || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("err = %v, want one containing %q", err, tt.message)
			}
		})
	}
}

// tamper replaces the payload of token with claims changed by edit,
// keeping the original signature.
func tamper(t *testing.T, token string, edit func(map[string]any)) string {
	parts := strings.Split(token, ".")
	c := decodeClaims(t, token)
	edit(c)
	b, _ := json.Marshal(c)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func TestAuthenticateRefusals(t *testing.T) {
	otherSigner, err := NewSigner(newKey(t))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		// setup changes the world after the token was issued and returns
		// the token to present.
		setup   func(t *testing.T, f *fixture, token string) string
		notOurs bool
		message string
	}{
		{name: "valid", setup: func(_ *testing.T, _ *fixture, tok string) string { return tok }},
		{name: "expired", setup: func(_ *testing.T, f *fixture, tok string) string {
			f.now = f.now.Add(time.Hour)
			return tok
		}, message: "service account token has expired"},
		{name: "tampered payload", setup: func(t *testing.T, _ *fixture, tok string) string {
			return tamper(t, tok, func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" })
		}, message: "signature is invalid"},
		{name: "tampered signature", setup: func(_ *testing.T, _ *fixture, tok string) string {
			return tok[:len(tok)-4] + "AAAA"
		}, message: "signature is invalid"},
		{name: "signed by another key", setup: func(t *testing.T, f *fixture, tok string) string {
			other := &TokenRequests{signer: otherSigner, objects: f.objects, issuer: DefaultIssuer, audiences: []string{DefaultIssuer}, now: func() time.Time { return f.now }}
			out, err := other.Create(context.Background(), "ns1", "default", &authenticationv1.TokenRequest{})
			if err != nil {
				t.Fatal(err)
			}
			return out.Status.Token
		}, notOurs: true},
		{name: "not a JWT", setup: func(_ *testing.T, _ *fixture, _ string) string { return "abc.def" }, notOurs: true},
		{name: "account deleted", setup: func(_ *testing.T, f *fixture, tok string) string {
			delete(f.objects.accounts, "ns1/default")
			return tok
		}, message: "service account token has been invalidated"},
		{name: "account recreated", setup: func(_ *testing.T, f *fixture, tok string) string {
			f.objects.accounts["ns1/default"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "default", UID: "new-uid"}}
			return tok
		}, message: "service account UID (new-uid) does not match claim (sa-uid)"},
		{name: "pod deleted", setup: func(_ *testing.T, f *fixture, tok string) string {
			delete(f.objects.pods, "ns1/web")
			return tok
		}, message: "service account token has been invalidated"},
		{name: "pod terminating for long", setup: func(_ *testing.T, f *fixture, tok string) string {
			dt := metav1.NewTime(f.now.Add(-2 * time.Minute))
			f.objects.pods["ns1/web"].DeletionTimestamp = &dt
			return tok
		}, message: "service account token has been invalidated"},
		{name: "pod just terminating", setup: func(_ *testing.T, f *fixture, tok string) string {
			dt := metav1.NewTime(f.now.Add(-10 * time.Second))
			f.objects.pods["ns1/web"].DeletionTimestamp = &dt
			return tok
		}},
		{name: "pod recreated", setup: func(_ *testing.T, f *fixture, tok string) string {
			f.objects.pods["ns1/web"] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web", UID: "pod-2"}}
			return tok
		}, message: "pod UID (pod-2) does not match claim (pod-uid)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			out := f.token(t, "default", authenticationv1.TokenRequestSpec{
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web"},
			})
			token := tt.setup(t, f, out.Status.Token)
			u, ok, err := f.authn.AuthenticateToken(context.Background(), token)
			switch {
			case tt.notOurs:
				if ok || err != nil {
					t.Errorf("ok=%v err=%v, want the token passed on to other authenticators", ok, err)
				}
			case tt.message == "":
				if !ok || err != nil || u.Name != "system:serviceaccount:ns1:default" {
					t.Errorf("ok=%v err=%v user=%+v, want accepted", ok, err, u)
				}
			default:
				if ok || err == nil || !strings.Contains(err.Error(), tt.message) {
					t.Errorf("ok=%v err=%v, want refused with %q", ok, err, tt.message)
				}
			}
		})
	}
}

func TestAudiences(t *testing.T) {
	f := newFixture(t)
	vault := f.token(t, "default", authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}}).Status.Token
	if _, ok, err := f.authn.AuthenticateToken(context.Background(), vault); ok || err == nil ||
		!strings.Contains(err.Error(), `token audiences ["vault"] is invalid for the target audiences ["https://kubernetes.default.svc.cluster.local"]`) {
		t.Errorf("token for another audience at the API server: ok=%v err=%v", ok, err)
	}
	u, auds, err := f.authn.Review(context.Background(), vault, []string{"other", "vault"})
	if err != nil || !slices.Equal(auds, []string{"vault"}) || u.Name != "system:serviceaccount:ns1:default" {
		t.Errorf("review for vault: user=%+v auds=%q err=%v", u, auds, err)
	}
}

func TestSecretBoundAndLegacyTokens(t *testing.T) {
	f := newFixture(t)
	secretBound := f.token(t, "default", authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: "s"},
	}).Status.Token
	if _, ok, err := f.authn.AuthenticateToken(context.Background(), secretBound); !ok || err != nil {
		t.Fatalf("secret-bound token: ok=%v err=%v", ok, err)
	}

	sa := f.objects.accounts["ns1/default"]
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "default-token", UID: types.UID("legacy")}}
	legacy, err := LegacyToken(f.signer, sa, secret)
	if err != nil {
		t.Fatal(err)
	}
	c := decodeClaims(t, legacy)
	if c["iss"] != LegacyIssuer || c["kubernetes.io/serviceaccount/secret.name"] != "default-token" ||
		c["kubernetes.io/serviceaccount/service-account.uid"] != "sa-uid" || c["exp"] != nil {
		t.Errorf("legacy claims = %v", c)
	}
	// Until the secret holds it, the token is not valid.
	if _, _, err := f.authn.AuthenticateToken(context.Background(), legacy); err == nil {
		t.Error("legacy token without its secret was accepted")
	}
	secret.Data = map[string][]byte{"token": []byte(legacy)}
	f.objects.secrets["ns1/default-token"] = secret
	f.now = f.now.Add(10 * 365 * 24 * time.Hour) // legacy tokens do not expire
	u, ok, err := f.authn.AuthenticateToken(context.Background(), legacy)
	if !ok || err != nil || u.Name != "system:serviceaccount:ns1:default" || u.UID != "sa-uid" {
		t.Fatalf("legacy token: user=%+v ok=%v err=%v", u, ok, err)
	}
	delete(f.objects.accounts, "ns1/default")
	if _, _, err := f.authn.AuthenticateToken(context.Background(), legacy); err == nil {
		t.Error("legacy token of a deleted account was accepted")
	}
	if _, _, err := f.authn.AuthenticateToken(context.Background(), secretBound); err == nil {
		t.Error("secret-bound token of a deleted account was accepted")
	}
}

func TestParseBadInput(t *testing.T) {
	f := newFixture(t)
	for _, tok := range []string{"", ".", "..", "a.b.c", "e30.e30.e30", strings.Repeat("a", maxTokenBytes+1),
		b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(`{}`)) + "."} {
		if _, ok, err := f.authn.AuthenticateToken(context.Background(), tok); ok || err != nil {
			t.Errorf("%.40q: ok=%v err=%v, want passed on", tok, ok, err)
		}
	}
	// Right header, garbage elsewhere: refused, not passed on.
	h := b64([]byte(`{"alg":"ES256","kid":"` + f.signer.KeyID() + `"}`))
	if _, _, err := f.authn.AuthenticateToken(context.Background(), h+".e30.AAAA"); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("bad signature: err = %v", err)
	}
}

func TestNodeClaims(t *testing.T) {
	f := newFixture(t)
	f.objects.nodes["/box"] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "box", UID: "node-uid"}}
	f.objects.pods["ns1/web"].Spec.NodeName = "box"

	// A pod-bound token names the pod's node.
	podToken := f.token(t, "default", authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web"}}).Status.Token
	if node := decodeClaims(t, podToken)["kubernetes.io"].(map[string]any)["node"].(map[string]any); node["name"] != "box" || node["uid"] != "node-uid" {
		t.Errorf("node claim = %v", node)
	}
	u, ok, err := f.authn.AuthenticateToken(context.Background(), podToken)
	if !ok || err != nil || u.Extra[ExtraNodeName][0] != "box" || u.Extra[ExtraNodeUID][0] != "node-uid" {
		t.Errorf("pod token on a node: user %+v ok=%v err=%v", u, ok, err)
	}

	// A node-bound token dies with the node.
	nodeToken := f.token(t, "default", authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: "box", UID: "node-uid"}}).Status.Token
	if _, ok, err := f.authn.AuthenticateToken(context.Background(), nodeToken); !ok || err != nil {
		t.Fatalf("node-bound token: ok=%v err=%v", ok, err)
	}
	delete(f.objects.nodes, "/box")
	if _, _, err := f.authn.AuthenticateToken(context.Background(), nodeToken); err == nil || !strings.Contains(err.Error(), "invalidated") {
		t.Errorf("token of a deleted node: err = %v", err)
	}
	// The pod-bound token lives as long as the pod does.
	if _, ok, err := f.authn.AuthenticateToken(context.Background(), podToken); !ok || err != nil {
		t.Errorf("pod token after its node went: ok=%v err=%v", ok, err)
	}
}

func TestNodeRestriction(t *testing.T) {
	f := newFixture(t)
	f.objects.pods["ns1/web"].Spec.NodeName = "box"
	node := apiserver.WithUser(context.Background(), apiserver.UserInfo{Name: "system:node:box", Groups: []string{"system:nodes", "system:authenticated"}})
	other := apiserver.WithUser(context.Background(), apiserver.UserInfo{Name: "system:node:other", Groups: []string{"system:nodes", "system:authenticated"}})
	podRef := func(uid types.UID) *authenticationv1.BoundObjectReference {
		return &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web", UID: uid}
	}
	tests := []struct {
		name    string
		ctx     context.Context
		ref     *authenticationv1.BoundObjectReference
		message string // "" = allowed
	}{
		{"node, its pod", node, podRef("pod-uid"), ""},
		{"node, unbound", node, nil, `serviceaccounts "default" is forbidden: node requested token not bound to a pod`},
		{"node, secret", node, &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: "s"}, "node requested token not bound to a pod"},
		{"node, no uid", node, podRef(""), "node requested token with a pod binding without a uid"},
		{"node, old uid", node, podRef("old"), "the UID in the bound object reference (old) does not match"},
		{"another node's pod", other, podRef("pod-uid"), "node requested token bound to a pod scheduled on a different node"},
		{"a user, unbound", context.Background(), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.requests.Create(tt.ctx, "ns1", "default", &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: tt.ref}})
			switch {
			case tt.message == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.message != "" && (err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tt.message)):
				t.Errorf("err = %v, want Forbidden with %q", err, tt.message)
			}
		})
	}
}
