package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/auth/bootstraptoken"
	"github.com/orch-dev/orch/server/pki"
)

// Bad input is refused before the server is asked.
func TestTokenCommandBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "create", "--ttl", "forever"}, `--ttl "forever" is not a duration`},
		{[]string{"token", "create", "--ttl", "-1h"}, "--ttl -1h is negative"},
		{[]string{"token", "create", "--ttl", "10ms"}, "shorter than a second"},
		{[]string{"token", "create", "--groups", "system:masters"}, `--groups: group "system:masters" must match`},
		{[]string{"token", "create", "--description", "two\nlines"}, "--description must be one line"},
		{[]string{"token", "create", "--description", strings.Repeat("d", 1025)}, "--description is longer than 1024"},
		{[]string{"token", "create", "extra"}, `token create takes no arguments, got ["extra"]`},
		{[]string{"token", "list", "x"}, `token list takes no arguments, got ["x"]`},
		{[]string{"token", "delete"}, "token delete needs the id of at least one token"},
		{[]string{"token", "delete", "ABCDEF"}, `"ABCDEF" is not a token id: want 6 characters of a-z, 0-9`},
		{[]string{"token", "delete", "abcdef", "abc"}, `"abc" is not a token id`},
		{[]string{"token", "delete", "K10" + strings.Repeat("a", 64) + "::server:secret"}, "is not a token id"},
		{[]string{"token", "create", "--kubeconfig", missing}, "read kubeconfig: open " + missing},
		{[]string{"token", "list", "--kubeconfig", missing}, "give the server's admin kubeconfig with --kubeconfig"},
		{[]string{"token", "delete", "--kubeconfig", missing, "abcdef"}, "read kubeconfig"},
	} {
		_, _, err := runApp(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("orch %s: error %v, want one containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

func TestTokenID(t *testing.T) {
	for in, want := range map[string]string{
		"abcdef":                  "abcdef",
		"abcdef.0123456789abcdef": "abcdef",
		"K10" + strings.Repeat("a", 64) + "::a1b2c3.0123456789abcdef": "a1b2c3",
	} {
		if got, err := tokenID(in); err != nil || got != want {
			t.Errorf("tokenID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestTokenExpiration(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 42, 43, 900_000_000, time.UTC)
	if got, want := tokenExpiration(now, time.Second), time.Date(2026, 11, 23, 14, 42, 45, 0, time.UTC); !got.Equal(want) {
		t.Errorf("1s after %s: %s, want %s (never less than the ttl)", now, got, want)
	}
	whole := now.Truncate(time.Second)
	if got := tokenExpiration(whole, time.Hour); !got.Equal(whole.Add(time.Hour)) {
		t.Errorf("1h after %s: %s", whole, got)
	}
}

func TestPrintTokens(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)
	var b strings.Builder
	err := printTokens(&b, []listedToken{
		{Info: bootstraptoken.Info{ID: "abcdef", Secret: "0123456789abcdef", Expiration: now.Add(23*time.Hour + 30*time.Minute),
			Description: "for the shed", Usages: []string{"authentication", "signing"}, ExtraGroups: []string{bootstraptoken.DefaultExtraGroup}}},
		{Info: bootstraptoken.Info{ID: "never1", Secret: "0123456789abcdef"}},
		{Info: bootstraptoken.Info{ID: "old001", Secret: "0123456789abcdef", Expiration: now.Add(-time.Hour), Usages: []string{"authentication"}}},
		{Info: bootstraptoken.Info{ID: "badexp", Secret: "0123456789abcdef"}, badExpiration: true},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := `TOKEN ID   TTL         EXPIRES                USAGES                   DESCRIPTION    EXTRA GROUPS
abcdef     23h         2026-11-24T13:30:00Z   authentication,signing   for the shed   system:bootstrappers:orch:default-node-token
never1     <forever>   <never>                <none>                   <none>         <none>
old001     <invalid>   2026-11-23T13:00:00Z   authentication           <none>         <none>
badexp     <invalid>   <invalid>              <none>                   <none>         <none>
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	if strings.Contains(b.String(), "0123456789abcdef") {
		t.Error("the table shows secrets")
	}
}

// startTokenServer runs `orch server --disable-agent` in this process on
// 127.0.0.1 and returns its admin kubeconfig and data directory once it
// is ready.
func startTokenServer(t *testing.T) (kubeconfig, dataDir string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ORCH_") {
			t.Setenv(k, "")
		}
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig, dataDir = filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "data")
	ctx, cancel := context.WithCancel(context.Background())
	// An *os.File takes the server's concurrent log writes.
	logs, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	logText := func() string {
		b, _ := os.ReadFile(logs.Name())
		return string(b)
	}
	done := make(chan error, 1)
	go func() {
		done <- newApp(io.Discard, logs).RunContext(ctx, []string{"orch", "server", "--config", empty, "--disable-agent",
			"--data-dir", dataDir, "--bind-address", "127.0.0.1", "--https-listen-port", fmt.Sprint(freePort(t)),
			"--write-kubeconfig", kubeconfig, "--node-name", "token-test", "--flannel-backend", "none", "--snapshot-interval", "0"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
		logs.Close()
		if t.Failed() {
			t.Logf("server logs:\n%s", logText())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		// The kubeconfig is written once the server is ready.
		if _, err := os.Stat(kubeconfig); err == nil {
			return kubeconfig, dataDir
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("server exited before it was ready: %v\n%s", err, logText())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kubeconfig after 60s\n%s", logText())
		}
	}
}

// agentRequest sends a request as a joining agent does: trusting the
// cluster CA, with no certificate, with a bearer token; it returns the
// answer's code and body.
func agentRequest(t *testing.T, kubeconfig, method, path, token string, body []byte, header map[string]string) (int, []byte) {
	t.Helper()
	kc, err := pki.ReadKubeconfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: kc.TLS.RootCAs, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(method, kc.Server+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, answer
}

func statusMessage(body []byte) string {
	var st metav1.Status
	_ = json.Unmarshal(body, &st)
	return st.Message
}

// join asks the server for node's certificate as `orch agent --join`
// does: with a bearer token, a password and a request for a key of its own.
func join(t *testing.T, kubeconfig, token, node, password string) (code int, msg string, cert *x509.Certificate) {
	t.Helper()
	_, csr, err := jointoken.NewNodeKey(node)
	if err != nil {
		t.Fatal(err)
	}
	code, body := agentRequest(t, kubeconfig, http.MethodPost, jointoken.NodeCertificatePath, token, csr, map[string]string{
		"Content-Type":               jointoken.CertificateRequestContentType,
		jointoken.NodeNameHeader:     node,
		jointoken.NodePasswordHeader: password,
	})
	if code != http.StatusOK {
		return code, statusMessage(body), nil
	}
	block, _ := pem.Decode(body)
	if block == nil {
		t.Fatalf("join answer is no PEM: %q", body)
	}
	if cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return code, "", cert
}

// bearerStatus sends a bodiless request with a bearer token and returns
// the answer's code and Status message.
func bearerStatus(t *testing.T, kubeconfig, method, path, token string) (int, string) {
	t.Helper()
	code, body := agentRequest(t, kubeconfig, method, path, token, nil, nil)
	return code, statusMessage(body)
}

// TestTokenCommands drives create, list and delete against a real server
// and checks that the server authenticates what they made.
func TestTokenCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	kubeconfig, dataDir := startTokenServer(t)
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "server", "tls", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}

	create := func(args ...string) jointoken.Token {
		t.Helper()
		out, _, err := runApp(t, append([]string{"token", "create", "--kubeconfig", kubeconfig}, args...)...)
		if err != nil {
			t.Fatalf("token create %v: %v", args, err)
		}
		tok, err := jointoken.Parse(out)
		if err != nil {
			t.Fatalf("token create printed %q: %v", out, err)
		}
		if err := tok.VerifyCA(caPEM); err != nil || !tok.Pinned() {
			t.Errorf("token create printed a token that does not pin the server's CA: %v", err)
		}
		if _, ok := tok.BootstrapID(); !ok || !strings.HasPrefix(out, "K10") {
			t.Fatalf("token create printed %q, want K10<hash>::<id>.<secret>", out)
		}
		return tok
	}
	shed := create("--ttl", "1h", "--description", "for the shed")
	forever := create("--ttl", "0", "--groups", "system:bootstrappers:edge", "--groups", "system:bootstrappers:lab")
	shedID, _ := shed.BootstrapID()
	foreverID, _ := forever.BootstrapID()

	out, _, err := runApp(t, "token", "list", "--kubeconfig", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TOKEN ID", shedID, foreverID, "for the shed", "<forever>", "<never>", "authentication,signing",
		bootstraptoken.DefaultExtraGroup, "system:bootstrappers:edge,system:bootstrappers:lab"} {
		if !strings.Contains(out, want) {
			t.Errorf("token list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, strings.TrimPrefix(shed.Secret, shedID+".")) {
		t.Errorf("token list shows a secret:\n%s", out)
	}

	// The API server knows the token: a bootstrapper may not list
	// namespaces (403), but it is somebody (not 401).
	if code, msg := bearerStatus(t, kubeconfig, http.MethodGet, "/api/v1/namespaces", shed.Secret); code != http.StatusForbidden ||
		!strings.Contains(msg, `"system:bootstrap:`+shedID+`"`) {
		t.Errorf("GET namespaces with a bootstrap token: %d %q, want 403 naming system:bootstrap:%s", code, msg, shedID)
	}

	// A machine joins with the token and gets a certificate for its key.
	if code, msg, cert := join(t, kubeconfig, shed.Secret, "shed-1", "pw-1"); code != http.StatusOK ||
		cert.Subject.CommonName != "system:node:shed-1" {
		t.Fatalf("join with a bootstrap token: %d %q", code, msg)
	}

	// A token past its expiry is refused, and its holder is told why.
	short := create("--ttl", "1s")
	shortID, _ := short.BootstrapID()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, msg, _ := join(t, kubeconfig, short.Secret, "late-1", "pw-late")
		if code == http.StatusUnauthorized && strings.Contains(msg, "join token "+shortID+" expired at ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("join with a 1s token 30s later: %d %q, want 401 saying it expired", code, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}

	out, _, err = runApp(t, "token", "delete", "--kubeconfig", kubeconfig, shedID, forever.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("bootstrap token %q deleted\nbootstrap token %q deleted\n", shedID, foreverID); out != want {
		t.Errorf("token delete printed %q, want %q", out, want)
	}
	if code, _ := bearerStatus(t, kubeconfig, http.MethodGet, "/api/v1/namespaces", shed.Secret); code != http.StatusUnauthorized {
		t.Errorf("deleted token: %d, want 401", code)
	}
	if _, _, err := runApp(t, "token", "delete", "--kubeconfig", kubeconfig, shedID); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("bootstrap token %q not found", shedID)) {
		t.Errorf("deleting a deleted token: %v", err)
	}
	out, _, err = runApp(t, "token", "list", "--kubeconfig", kubeconfig)
	if err != nil || strings.Contains(out, shedID) || strings.Contains(out, foreverID) || !strings.Contains(out, shortID) {
		t.Errorf("token list after delete (%v):\n%s", err, out)
	}
}

// TestNodePasswordFreedByNodeDeletion: a joined name is refused to another
// machine until its Node is deleted, which deletes its password Secret.
func TestNodePasswordFreedByNodeDeletion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	kubeconfig, dataDir := startTokenServer(t)
	tokenFile, err := os.ReadFile(filepath.Join(dataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jointoken.Parse(string(tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if code, msg, _ := join(t, kubeconfig, tok.Secret, "edge-1", "first-machine"); code != http.StatusOK {
		t.Fatalf("first join: %d %q", code, msg)
	}
	if code, msg, _ := join(t, kubeconfig, tok.Secret, "edge-1", "second-machine"); code != http.StatusForbidden ||
		!strings.Contains(msg, "node password rejected") {
		t.Fatalf("second machine under the same name: %d %q, want 403", code, msg)
	}

	// The node registers, then an admin deletes it.
	tc, err := newTokenClient(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "edge-1"}}
	if err := tc.api.Create(ctx, apiclient.Nodes, "", node, nil); err != nil {
		t.Fatal(err)
	}
	if err := tc.api.Delete(ctx, apiclient.Nodes, "", "edge-1", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var s corev1.Secret
		err := tc.api.Get(ctx, apiclient.Secrets, "kube-system", "edge-1.node-password.orch", &s)
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the password Secret of the deleted node is still there 30s later (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, msg, _ := join(t, kubeconfig, tok.Secret, "edge-1", "second-machine"); code != http.StatusOK {
		t.Fatalf("second machine after the Node was deleted: %d %q", code, msg)
	}
}
