// Package server runs the orch control plane in one process: the store, the
// API server with its certificates and authentication, the controllers and
// the scheduler, all started from Run and stopped by cancelling its context.
package server

import (
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"time"
)

// Config is what `orch server` was asked to do, already parsed and checked
// by internal/config (flags > ORCH_* environment > config file).
type Config struct {
	DataDir         string       // default /var/lib/orch
	BindAddress     string       // default 0.0.0.0
	HTTPSPort       int          // default 6443
	NodeName        string       // default: the host name
	Token           string       // join token or bare secret; generated when empty
	ClusterCIDR     netip.Prefix // default 10.42.0.0/16
	ServiceCIDR     netip.Prefix // default 10.43.0.0/16
	WriteKubeconfig string       // default /etc/orch/orch.yaml
	KubeconfigMode  os.FileMode  // default 0600
	DisableAgent    bool
	// SecretsEncryption encrypts Secrets in the store with AES-GCM (keys
	// in DataDir/server/cred/encryption-config.json, made on first use).
	SecretsEncryption bool
	FlannelBackend    string // pod network of the server's node: none, host-gw, vxlan, auto
	Debug             bool

	// Disable names built-in manifests (file names without .yaml) not to
	// apply, and built-in components not to run (DisableIngress), as
	// k3s' --disable.
	Disable []string

	// NodeGracePeriod is how long a node may go without a heartbeat
	// before it is marked NotReady/Unknown (default 40 s, as Kubernetes).
	NodeGracePeriod time.Duration

	// SnapshotInterval takes a snapshot of the store that often into
	// DataDir/server/snapshots, keeping SnapshotRetention of them; 0
	// disables scheduled snapshots.
	SnapshotInterval  time.Duration
	SnapshotRetention int

	Logger *slog.Logger

	// MetricsResolution is how often the nodes' resource metrics are
	// scraped (default 15 s, metrics-server's); HPASyncPeriod how often
	// every HorizontalPodAutoscaler is reconciled (default 15 s).
	MetricsResolution time.Duration
	HPASyncPeriod     time.Duration

	// NodeTransport, when set, reaches the nodes that are not this
	// process's own agent (simulated nodes in tests); it is asked before
	// such a node is declared not connected.
	NodeTransport func(node string) (http.RoundTripper, error)

	// LocalNode, when set and DisableAgent is false, receives once the
	// server is ready what the node half of this process needs to reach
	// it: the two halves meet only on the wire, like a joined agent.
	LocalNode chan<- LocalNode
}

// LocalNode is how the agent running beside the server connects to it.
type LocalNode struct {
	ServerURL string
	CAPEM     []byte // the cluster CA, to verify the server
	CertPEM   []byte // client certificate system:node:<name>, group system:nodes
	KeyPEM    []byte
}

// DisableIngress in Config.Disable turns off the built-in ingress
// controller: the server node's ingress proxy and the status controller
// (agents have --disable ingress of their own). It names no manifest.
const DisableIngress = "ingress"
