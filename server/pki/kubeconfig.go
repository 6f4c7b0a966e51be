package pki

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
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
