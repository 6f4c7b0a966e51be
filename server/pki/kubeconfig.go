package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"go.yaml.in/yaml/v3"
)

// kubeconfig is the subset of client-go's clientcmd v1.Config that orch
// writes. Field names follow the kubeconfig format exactly.
type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []namedCluster `yaml:"clusters"`
	Contexts       []namedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
	Preferences    struct{}       `yaml:"preferences"`
	Users          []namedUser    `yaml:"users"`
}

type namedCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthorityData string `yaml:"certificate-authority-data"`
		// Read, never written: kubeconfigs edited by hand may name files.
		CertificateAuthority string `yaml:"certificate-authority,omitempty"`
	} `yaml:"cluster"`
}

type namedContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster string `yaml:"cluster"`
		User    string `yaml:"user"`
	} `yaml:"context"`
}

type namedUser struct {
	Name string `yaml:"name"`
	User struct {
		ClientCertificateData string `yaml:"client-certificate-data"`
		ClientKeyData         string `yaml:"client-key-data"`
		// Read, never written.
		ClientCertificate string `yaml:"client-certificate,omitempty"`
		ClientKey         string `yaml:"client-key,omitempty"`
	} `yaml:"user"`
}

// Kubeconfig renders an admin kubeconfig for serverURL with the cluster CA
// and the admin client certificate embedded. Names are "default" for the
// cluster, user and context, as k3s writes them.
func (a *Authority) Kubeconfig(serverURL string) ([]byte, error) {
	if serverURL == "" {
		return nil, errors.New("pki: kubeconfig needs a server URL")
	}
	const name = "default"
	b64 := base64.StdEncoding.EncodeToString
	cfg := kubeconfig{APIVersion: "v1", Kind: "Config", CurrentContext: name}

	var c namedCluster
	c.Name = name
	c.Cluster.Server = serverURL
	c.Cluster.CertificateAuthorityData = b64(a.caPEM)
	cfg.Clusters = []namedCluster{c}

	var x namedContext
	x.Name = name
	x.Context.Cluster, x.Context.User = name, name
	cfg.Contexts = []namedContext{x}

	var u namedUser
	u.Name = name
	u.User.ClientCertificateData = b64(a.adminPEM)
	u.User.ClientKeyData = b64(a.adminKey)
	cfg.Users = []namedUser{u}

	out, err := yaml.Marshal(&cfg)
	if err != nil {
		return nil, fmt.Errorf("pki: render kubeconfig: %w", err)
	}
	return out, nil
}

// WriteKubeconfig writes the admin kubeconfig for serverURL to path with
// the given mode (0600 when 0), creating its directory. The file is
// replaced atomically, so a client never reads half of it.
func (a *Authority) WriteKubeconfig(path, serverURL string, mode os.FileMode) error {
	if mode == 0 {
		mode = 0o600
	}
	data, err := a.Kubeconfig(serverURL)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pki: create directory for kubeconfig %s: %w", path, err)
	}
	return writeFileAtomic(path, data, mode)
}

// Client is what a client needs from a kubeconfig to reach the API server:
// its URL, the CA that signed its certificate, and a client certificate.
type Client struct {
	Server string
	// CAPEM is the cluster CA exactly as the kubeconfig holds it (the
	// join token hashes these bytes).
	CAPEM []byte
	// TLS trusts only CAPEM and presents the client certificate.
	TLS *tls.Config
}

// ReadKubeconfig reads the current context of the kubeconfig at path,
// such as the admin kubeconfig the server writes. Only client-certificate
// users are supported: orch's CLI verbs act as the admin. Relative file
// names in it are relative to the kubeconfig's directory, as in kubectl.
func ReadKubeconfig(path string) (Client, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Client{}, fmt.Errorf("read kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return Client{}, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	fail := func(format string, args ...any) (Client, error) {
		return Client{}, fmt.Errorf("kubeconfig %s: %s", path, fmt.Sprintf(format, args...))
	}
	if kc.CurrentContext == "" {
		return fail("no current-context")
	}
	ctxIdx := slices.IndexFunc(kc.Contexts, func(c namedContext) bool { return c.Name == kc.CurrentContext })
	if ctxIdx < 0 {
		return fail("current-context %q is not among its contexts", kc.CurrentContext)
	}
	x := kc.Contexts[ctxIdx].Context
	cIdx := slices.IndexFunc(kc.Clusters, func(c namedCluster) bool { return c.Name == x.Cluster })
	uIdx := slices.IndexFunc(kc.Users, func(u namedUser) bool { return u.Name == x.User })
	if cIdx < 0 || uIdx < 0 {
		return fail("context %q names cluster %q and user %q, which it does not define", kc.CurrentContext, x.Cluster, x.User)
	}
	cluster, u := kc.Clusters[cIdx].Cluster, kc.Users[uIdx].User
	if cluster.Server == "" {
		return fail("cluster %q has no server", x.Cluster)
	}
	dir := filepath.Dir(path)
	caPEM, err := dataOrFile(dir, cluster.CertificateAuthorityData, cluster.CertificateAuthority)
	if err != nil {
		return fail("cluster %q: certificate authority: %v", x.Cluster, err)
	}
	certPEM, err := dataOrFile(dir, u.ClientCertificateData, u.ClientCertificate)
	if err != nil {
		return fail("user %q: client certificate: %v", x.User, err)
	}
	keyPEM, err := dataOrFile(dir, u.ClientKeyData, u.ClientKey)
	if err != nil {
		return fail("user %q: client key: %v", x.User, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fail("cluster %q: the certificate authority holds no PEM certificate", x.Cluster)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fail("user %q: %v", x.User, err)
	}
	return Client{
		Server: cluster.Server,
		CAPEM:  caPEM,
		TLS:    &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}, nil
}

// dataOrFile is a kubeconfig's base64 *-data value or, without one, the
// content of the file it names.
func dataOrFile(dir, data, file string) ([]byte, error) {
	switch {
	case data != "":
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("not base64: %w", err)
		}
		return b, nil
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		return os.ReadFile(file)
	}
	return nil, errors.New("missing (neither inline data nor a file)")
}
