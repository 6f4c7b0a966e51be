package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func mustLoad(t *testing.T, dir string, opts Options) *Authority {
	t.Helper()
	a, err := Load(dir, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return a
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server", "tls")
	a := mustLoad(t, dir, Options{
		DNSNames: []string{"Box1", "node-a", "192.0.2.7"},
		IPs:      []net.IP{net.ParseIP("10.43.0.1"), net.ParseIP("198.18.0.5"), net.ParseIP("0.0.0.0")},
	})

	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", st.Mode().Perm())
	}
	modes := map[string]os.FileMode{
		CACertFile: 0o644, CAKeyFile: 0o600,
		ServerCertFile: 0o644, ServerKeyFile: 0o600,
		AdminCertFile: 0o644, AdminKeyFile: 0o600,
	}
	for name, want := range modes {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	if !bytes.Equal(a.CACertPEM(), readFile(t, filepath.Join(dir, CACertFile))) {
		t.Error("CACertPEM differs from ca.crt")
	}

	ca, err := parseCert("ca", a.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("CA: IsCA=%v validity=%v", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore))
	}

	leaf := a.ServingCertificate().Leaf
	wantDNS := []string{"box1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "localhost", "node-a"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, wantDNS)
	}
	var gotIPs []string
	for _, ip := range leaf.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	wantIPs := []string{"10.43.0.1", "127.0.0.1", "192.0.2.7", "198.18.0.5", "::1"}
	slices.Sort(gotIPs)
	if !slices.Equal(gotIPs, wantIPs) {
		t.Errorf("IPAddresses = %v, want %v", gotIPs, wantIPs)
	}
	for _, host := range []string{"kubernetes.default.svc", "localhost", "127.0.0.1", "10.43.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: a.CAPool()}); err != nil {
			t.Errorf("verify serving cert for %s: %v", host, err)
		}
	}

	admin, err := parseCert("admin", readFile(t, filepath.Join(dir, AdminCertFile)))
	if err != nil {
		t.Fatal(err)
	}
	if admin.Subject.CommonName != AdminUser || !slices.Equal(admin.Subject.Organization, []string{AdminGroup}) {
		t.Errorf("admin subject = %v", admin.Subject)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: a.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin cert does not verify as a client: %v", err)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile, AdminCertFile, AdminKeyFile} {
		out[n] = readFile(t, filepath.Join(dir, n))
	}
	return out
}

func TestLoadReusesAndReissues(t *testing.T) {
	now := time.Now()
	base := Options{DNSNames: []string{"box"}, IPs: []net.IP{net.ParseIP("10.43.0.1")}}
	tests := []struct {
		name string
		opts Options
		// which files must change on the second Load
		changed []string
	}{
		{name: "same options reuse everything", opts: base},
		{name: "subset of names reuses", opts: Options{}},
		{
			name:    "new address reissues serving cert",
			opts:    Options{DNSNames: []string{"box"}, IPs: []net.IP{net.ParseIP("10.43.0.1"), net.ParseIP("198.18.0.9")}},
			changed: []string{ServerCertFile, ServerKeyFile},
		},
		{
			name:    "new name reissues serving cert",
			opts:    Options{DNSNames: []string{"box", "other"}},
			changed: []string{ServerCertFile, ServerKeyFile},
		},
		{
			name:    "expiring leaves are reissued, CA kept",
			opts:    Options{DNSNames: []string{"box"}, Now: func() time.Time { return now.Add(ServerValidity - RenewBefore + time.Hour) }},
			changed: []string{ServerCertFile, ServerKeyFile, AdminCertFile, AdminKeyFile},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mustLoad(t, dir, base)
			before := snapshot(t, dir)
			a := mustLoad(t, dir, tt.opts)
			after := snapshot(t, dir)
			for name := range before {
				changed := !bytes.Equal(before[name], after[name])
				if want := slices.Contains(tt.changed, name); changed != want {
					t.Errorf("%s changed = %v, want %v", name, changed, want)
				}
			}
			// Whatever was reissued still chains to the (kept) CA.
			if _, err := a.ServingCertificate().Leaf.Verify(x509.VerifyOptions{
				Roots: a.CAPool(), CurrentTime: a.now(), DNSName: "box",
			}); err != nil {
				t.Errorf("serving cert: %v", err)
			}
		})
	}
}

func TestLoadForeignLeafReissued(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	mustLoad(t, dir, Options{})
	mustLoad(t, other, Options{})
	// A serving pair from another cluster's CA must not be served.
	for _, n := range []string{ServerCertFile, ServerKeyFile} {
		if err := os.WriteFile(filepath.Join(dir, n), readFile(t, filepath.Join(other, n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := mustLoad(t, dir, Options{})
	if _, err := a.ServingCertificate().Leaf.Verify(x509.VerifyOptions{Roots: a.CAPool()}); err != nil {
		t.Errorf("serving cert not reissued under own CA: %v", err)
	}
}

func TestLoadCorruptFileKept(t *testing.T) {
	garbage := map[string][]byte{
		"not pem":         []byte("hello\n"),
		"truncated pem":   []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"),
		"bad der":         []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"bad key der":     []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
		"wrong block":     []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
		"empty":           {},
		"trailing junk":   nil, // filled per file below: valid PEM + junk
		"binary zero run": bytes.Repeat([]byte{0}, 512),
	}
	files := []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile, AdminCertFile, AdminKeyFile}
	for _, file := range files {
		for kind, content := range garbage {
			t.Run(file+"/"+kind, func(t *testing.T) {
				dir := t.TempDir()
				mustLoad(t, dir, Options{})
				path := filepath.Join(dir, file)
				if content == nil {
					content = append(readFile(t, path), []byte("junk\n")...)
				}
				if err := os.WriteFile(path, content, 0o600); err != nil {
					t.Fatal(err)
				}
				_, err := Load(dir, Options{})
				if err == nil {
					t.Fatal("Load succeeded on a corrupt file")
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
				if got := readFile(t, path); !bytes.Equal(got, content) {
					t.Errorf("corrupt file was rewritten")
				}
			})
		}
	}
}

func TestLoadHalfCA(t *testing.T) {
	for _, missing := range []string{CACertFile, CAKeyFile} {
		t.Run(missing, func(t *testing.T) {
			dir := t.TempDir()
			mustLoad(t, dir, Options{})
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Fatalf("Load = %v, want an error naming %s", err, missing)
			}
		})
	}
}

func TestLoadMismatchedCAKey(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	mustLoad(t, dir, Options{})
	mustLoad(t, other, Options{})
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), readFile(t, filepath.Join(other, CAKeyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, Options{}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Load = %v, want key mismatch error", err)
	}
}

func TestSignClient(t *testing.T) {
	a := mustLoad(t, t.TempDir(), Options{})
	certPEM, keyPEM, err := a.SignClient("system:node:box", []string{"system:nodes"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("pair: %v", err)
	}
	c := pair.Leaf
	if c.Subject.CommonName != "system:node:box" || !slices.Equal(c.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject = %v", c.Subject)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d > time.Hour+clockSkew+time.Minute {
		t.Errorf("validity = %v, want about 1h", d)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: a.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: a.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verifies for server auth")
	}
	if _, _, err := a.SignClient("", nil, 0); err == nil {
		t.Error("empty CN accepted")
	}
}

func TestKubeconfig(t *testing.T) {
	a := mustLoad(t, t.TempDir(), Options{})
	out, err := a.Kubeconfig("https://127.0.0.1:6443")
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(out, &kc); err != nil {
		t.Fatalf("parse: %v\n%s", err, out)
	}
	if kc.CurrentContext != "default" || len(kc.Clusters) != 1 || len(kc.Users) != 1 || len(kc.Contexts) != 1 {
		t.Fatalf("unexpected kubeconfig:\n%s", out)
	}
	if kc.Clusters[0].Name != "default" || kc.Clusters[0].Cluster.Server != "https://127.0.0.1:6443" ||
		kc.Contexts[0].Context.Cluster != "default" || kc.Contexts[0].Context.User != "default" || kc.Users[0].Name != "default" {
		t.Errorf("names/server wrong:\n%s", out)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(dec(kc.Clusters[0].Cluster.CertificateAuthorityData), a.CACertPEM()) {
		t.Error("certificate-authority-data is not the CA")
	}
	pair, err := tls.X509KeyPair(dec(kc.Users[0].User.ClientCertificateData), dec(kc.Users[0].User.ClientKeyData))
	if err != nil {
		t.Fatalf("client pair: %v", err)
	}
	if pair.Leaf.Subject.CommonName != AdminUser {
		t.Errorf("client CN = %q", pair.Leaf.Subject.CommonName)
	}
	if _, err := a.Kubeconfig(""); err == nil {
		t.Error("empty server URL accepted")
	}
}

func TestWriteKubeconfig(t *testing.T) {
	a := mustLoad(t, t.TempDir(), Options{})
	path := filepath.Join(t.TempDir(), "etc", "orch", "orch.yaml")
	for range 2 { // the second write replaces the first
		if err := a.WriteKubeconfig(path, "https://127.0.0.1:6443", 0); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	want, _ := a.Kubeconfig("https://127.0.0.1:6443")
	if !bytes.Equal(readFile(t, path), want) {
		t.Error("content differs from Kubeconfig")
	}
}

func TestReadKubeconfig(t *testing.T) {
	a := mustLoad(t, t.TempDir(), Options{})
	dir := t.TempDir()
	written := filepath.Join(dir, "orch.yaml")
	if err := a.WriteKubeconfig(written, "https://127.0.0.1:6443", 0); err != nil {
		t.Fatal(err)
	}
	c, err := ReadKubeconfig(written)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "https://127.0.0.1:6443" || !bytes.Equal(c.CAPEM, a.CACertPEM()) || len(c.TLS.Certificates) != 1 ||
		c.TLS.Certificates[0].Leaf.Subject.CommonName != AdminUser {
		t.Errorf("ReadKubeconfig = %+v", c)
	}

	// Files named relative to the kubeconfig, as kubectl reads them.
	withFiles := filepath.Join(dir, "files.yaml")
	if err := os.WriteFile(withFiles, []byte(`apiVersion: v1
kind: Config
current-context: edge
contexts:
- name: other
  context: {cluster: nowhere, user: nobody}
- name: edge
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster: {server: "https://198.18.0.1:6443", certificate-authority: `+a.path(CACertFile)+`}
users:
- name: u
  user: {client-certificate: admin.crt, client-key: admin.key}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{AdminCertFile, AdminKeyFile} {
		if err := os.WriteFile(filepath.Join(dir, f), readFile(t, a.path(f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := ReadKubeconfig(withFiles); err != nil || c.Server != "https://198.18.0.1:6443" || !bytes.Equal(c.CAPEM, a.CACertPEM()) {
		t.Errorf("ReadKubeconfig with files = %+v, %v", c, err)
	}

	for name, tt := range map[string]struct{ content, wantErr string }{
		"not yaml":           {"{", "kubeconfig"},
		"no current context": {"apiVersion: v1\nkind: Config\n", "no current-context"},
		"unknown context":    {"current-context: x\n", `current-context "x" is not among`},
		"undefined user":     {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s}}]\n", "which it does not define"},
		"no server":          {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {}}]\nusers: [{name: u, user: {}}]\n", "has no server"},
		"no CA":              {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s}}]\nusers: [{name: u, user: {}}]\n", "certificate authority: missing"},
		"token user":         {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s, certificate-authority-data: eA==}}]\nusers: [{name: u, user: {token: abc}}]\n", "client certificate: missing"},
		"bad base64":         {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s, certificate-authority-data: '!!'}}]\nusers: [{name: u, user: {}}]\n", "not base64"},
	} {
		path := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKubeconfig(path); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: ReadKubeconfig error %v, want %q", name, err, tt.wantErr)
		}
	}
	if _, err := ReadKubeconfig(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSignPublicKey(t *testing.T) {
	a := mustLoad(t, t.TempDir(), Options{})
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certPEM, err := a.SignPublicKey(p256.Public(), "system:node:box", []string{"system:nodes"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(p256)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("the certificate is not for the given key: %v", err)
	}
	c := pair.Leaf
	if c.Subject.CommonName != "system:node:box" || !slices.Equal(c.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject = %v", c.Subject)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: a.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d > time.Hour+clockSkew+time.Minute {
		t.Errorf("validity = %v, want about 1h", d)
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name    string
		pub     any
		cn      string
		wantErr string
	}{
		{"P-384", p384.Public(), "u", ""},
		{"Ed25519", edPub, "u", ""},
		{"P-224", p224.Public(), "u", "want P-256 or P-384"},
		{"RSA 1024", rsa1024.Public(), "u", "RSA key of 1024 bits"},
		{"not a key", "key", "u", "key of type string"},
		{"no CN", p256.Public(), "", "needs a common name"},
	} {
		_, err := a.SignPublicKey(tt.pub, tt.cn, nil, 0)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: SignPublicKey error %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}
