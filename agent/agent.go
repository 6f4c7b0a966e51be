// Package agent turns a machine into an orch node, the kubelet of orch: it
// registers its Node and keeps its Lease and status fresh, watches the pods
// bound to it, runs each with one pod worker (image, sandbox, init and app
// containers, probes, restarts with back-off, graceful termination) on the
// container runtime, and reports their status exactly as Kubernetes shows
// it. It never imports the server packages; the two meet only on the wire,
// through agent/apiclient.
//
// Node state lives under DataDir/agent:
//
//	containers/            the container runtime's state (runtime/container)
//	images/                the image store; images/import/*.tar are imported at start
//	pods/<uid>/            per-pod files: etc-hosts, resolv.conf, hostname, volumes/
//	pod-manifests/*.yaml   static pods, run without the API (staticpods.go)
//	logs/<ns>_<name>_<uid>/<container>/<restart>.log   CRI container logs
//	kubelet.sock           the node API (container logs) for the server beside it
//
// Stopping the agent (cancelling Run's context) leaves every pod running;
// the next Run adopts them from the runtime's state without restarting any.
// With Config.KillPodsOnStop it stops and removes them first (shutdown.go).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/metrics"
	"github.com/orch-dev/orch/internal/version"
	"github.com/orch-dev/orch/runtime/container"
	"github.com/orch-dev/orch/runtime/image"
)

// Config is what `orch agent` was asked to do, already parsed and checked
// by internal/config (flags > ORCH_* environment > config file).
type Config struct {
	ServerURL string // https://HOST:PORT of the server to join (--join)
	Token     string // join token given by the server
	NodeName  string // default: the host name
	DataDir   string // default /var/lib/orch
	Debug     bool

	// TunnelKeepalive is the heartbeat period on a joined agent's tunnel
	// (--tunnel-keepalive); either end drops the link after 1.5 periods
	// without a sign of the other. Zero means 10 s.
	TunnelKeepalive time.Duration

	Logger *slog.Logger

	// HTTPClient carries every API request: the node inside the server
	// process passes a TLS client with its node certificate. Nil means a
	// joined agent: it joins with Token if it has not yet (join.go) and
	// sends everything through its tunnel to the server.
	HTTPClient *http.Client
	// NodeIP is the node's InternalIP; default: the address of the
	// interface of the default route.
	NodeIP string
	// NodeExternalIP, when set, is the node's ExternalIP address, e.g.
	// a NAT's public address: the one the built-in service load
	// balancer advertises for this node.
	NodeExternalIP string
	// ServerNode marks a node that also runs the control plane: it gets
	// the node-role.kubernetes.io/control-plane label.
	ServerNode bool
	// PodNetwork wires pods to the network; default: loopback only, or
	// orch's own network when Network is set.
	PodNetwork PodNetwork
	// Network, when set, turns on the pod network, service proxy and
	// cluster DNS of netproxy (see services.go).
	Network *NetworkConfig
	// ImagePuller fetches images that are not in the local store; nil
	// means images must be imported.
	ImagePuller ImagePuller
	// ClusterDNS and ClusterDomain configure pods' resolv.conf for
	// dnsPolicy ClusterFirst; with no ClusterDNS pods get the host's.
	ClusterDNS    []string
	ClusterDomain string
	// ResolvConf is the node's resolver configuration (--resolv-conf):
	// what dnsPolicy Default pods get and where the node-local DNS
	// server forwards other names. Empty: chosen as k3s does
	// (hostresolv.go).
	ResolvConf string
	// RuntimeExe is the orch binary the container runtime re-executes for
	// pause and shim processes; default os.Executable().
	RuntimeExe string
	// CgroupRoot is the cgroup pods are placed under; default /orch.
	CgroupRoot string
	// KillPodsOnStop stops and removes every pod when Run's context ends
	// (--kill-pods-on-stop, see shutdown.go); by default pods keep running.
	KillPodsOnStop bool

	// tunnelUp, for a joined agent, returns a channel closed while its
	// tunnel to the server is up (dialServer sets it).
	tunnelUp func() <-chan struct{}
}

// Timings of the node's heartbeats.
const (
	leaseDuration      = 40 * time.Second
	leaseRenewInterval = 10 * time.Second
	// podResync re-syncs every pod worker even without events.
	podResync      = 10 * time.Second
	kubeletVersion = version.Kubernetes
)

// Agent is a running node. It is built and run by Run.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	api      *apiclient.Client
	rt       *container.Runtime
	images   *image.Store
	net      PodNetwork
	puller   ImagePuller
	nodeName string
	hostIP   string
	dir      string // DataDir/agent
	// hostResolvConf is the file the node's own resolvers are read from
	// (locateHostResolvConf); empty means none.
	hostResolvConf string

	events       *eventRecorder
	crashBackOff *backOff
	pullBackOff  *backOff
	workers      *podWorkers
	static       *staticPods // pods from pod-manifests/, see staticpods.go
	// services, once networking runs, gives pods their service
	// variables (serviceenv.go).
	services atomic.Pointer[serviceState]
	// ingressAdvert tells the server whether the node's ingress proxy
	// serves (ingress.go).
	ingressAdvert *ingressAdvert
	// nodeChanged asks for an early node status update; leaseNow for an
	// early lease renewal; statusTick is the lease loop's tick passed on
	// to the status loop (node.go).
	nodeChanged chan struct{}
	leaseNow    chan struct{}
	statusTick  chan struct{}
	now         func() time.Time
	// ready closes once the node is registered and pods are being run.
	ready chan struct{}

	pullErrMu sync.Mutex
	pullErrs  map[string]string // last pull error by back-off key

	// metrics records pod starts and image pulls; metricsHandler serves
	// them with the runtime's gauges on the node API's /metrics.
	metrics        *metrics.NodeMetrics
	metricsHandler http.Handler
}

// Run joins the server and serves as a node until ctx is cancelled. Pods
// keep running after it returns.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.complete(); err != nil {
		return err
	}
	var link *serverLink
	if cfg.HTTPClient == nil {
		l, err := dialServer(ctx, &cfg)
		if err != nil {
			return err
		}
		link = l
	}
	a, err := newAgent(cfg)
	if err != nil {
		return err
	}
	if link != nil {
		return link.run(ctx, a)
	}
	return a.run(ctx)
}

// complete fills in defaults and checks what cannot be defaulted.
func (cfg *Config) complete() error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		return errors.New("orch agent: data directory is not set")
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("orch agent: node name: %w", err)
		}
		cfg.NodeName = strings.ToLower(h)
	}
	return nil
}

func newAgent(cfg Config) (*Agent, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		return nil, errors.New("orch agent: no HTTP client to reach the server")
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	api, err := apiclient.New(cfg.ServerURL, cfg.HTTPClient, "orch-agent/"+version.Get().Version)
	if err != nil {
		return nil, fmt.Errorf("orch agent: %w", err)
	}
	hostIP := cfg.NodeIP
	if hostIP == "" {
		hostIP = detectNodeIP()
	}
	a := &Agent{
		cfg:          cfg,
		log:          cfg.Logger.With("node", cfg.NodeName),
		api:          api,
		net:          cfg.PodNetwork,
		puller:       cfg.ImagePuller,
		nodeName:     cfg.NodeName,
		hostIP:       hostIP,
		dir:          filepath.Join(cfg.DataDir, "agent"),
		crashBackOff: newBackOff(10*time.Second, 5*time.Minute),
		pullBackOff:  newBackOff(10*time.Second, 5*time.Minute),
		nodeChanged:  make(chan struct{}, 1),
		leaseNow:     make(chan struct{}, 1),
		statusTick:   make(chan struct{}, 1),
		now:          time.Now,
		ready:        make(chan struct{}),
	}
	if a.net == nil {
		a.net = loopbackNetwork{}
	}
	a.ingressAdvert = newIngressAdvert(api, a.nodeName, a.log)
	reg := metrics.NewRegistry()
	metrics.RegisterProcess(reg)
	a.metrics = metrics.RegisterNode(reg, runtimeGauges{a})
	a.metricsHandler = reg.Handler()
	return a, nil
}

// runtimeGauges reads the node's running pods and containers from the
// runtime for /metrics; the node API serves only once the runtime is open.
type runtimeGauges struct{ a *Agent }

func (g runtimeGauges) RunningPods() int {
	n := 0
	for _, sb := range g.a.rt.ListSandboxes() {
		if sb.Ready {
			n++
		}
	}
	return n
}

func (g runtimeGauges) RunningContainers() int {
	n := 0
	for _, c := range g.a.rt.ListContainers() {
		if c.State == container.StateRunning {
			n++
		}
	}
	return n
}

func (a *Agent) run(ctx context.Context) error {
	for _, d := range []string{a.dir, a.podsDir(), a.logsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("orch agent: %w", err)
		}
	}
	if err := container.CheckCgroups(); err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	hostResolvConf, err := a.locateHostResolvConf()
	if err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	a.hostResolvConf = hostResolvConf
	images, err := image.Open(image.Options{Root: filepath.Join(a.dir, "images")})
	if err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	a.images = images
	a.importImages(ctx)
	rt, err := container.Open(container.Config{
		StateDir:   filepath.Join(a.dir, "containers"),
		CgroupRoot: a.cfg.CgroupRoot,
		Exe:        a.cfg.RuntimeExe,
		Logger:     a.log.With("component", "runtime"),
	})
	if err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	a.rt = rt

	stop := a.newNodeStop(ctx) // with KillPodsOnStop the loops outlive ctx until the pods are gone
	defer stop.end()
	g, gctx := errgroup.WithContext(stop.run)
	a.events = newEventRecorder(a.api, a.nodeName, a.log)
	g.Go(func() error { a.events.run(gctx); return nil })
	g.Go(func() error { a.serveNodeAPI(gctx); return nil }) // container logs, see logs_server.go

	// Static pods run before the node is registered: the API server may be
	// one of them, or unreachable (staticpods.go).
	a.workers = newPodWorkers(a)
	podsCtx, stopWorkers := context.WithCancel(gctx)
	defer stopWorkers()
	a.static = newStaticPods(a, a.workers)
	a.static.syncFiles(podsCtx)
	g.Go(func() error { a.static.run(podsCtx); return nil })

	node, err := a.registerNode(gctx)
	if err != nil {
		_ = g.Wait()
		a.workers.wait()
		return err
	}
	a.log.Info("node registered", "ip", a.hostIP)
	a.static.setNode(node.UID)
	if err := a.startNetworking(gctx, g); err != nil {
		g.Go(func() error { return err }) // stops the others
		_ = g.Wait()
		a.workers.wait()
		return err
	}
	a.static.networkReady(podsCtx)
	g.Go(func() error { a.ingressAdvert.run(gctx, node); return nil }) // after withIngress had its say
	g.Go(func() error { a.renewLease(gctx, node); return nil })
	g.Go(func() error { a.syncNodeStatus(gctx, node); return nil })
	g.Go(func() error { a.watchPods(podsCtx); return nil })
	g.Go(func() error { stop.killPods(a, gctx, stopWorkers); return nil })
	g.Go(func() error { a.collectImages(gctx); return nil }) // image GC, see images.go
	close(a.ready)
	err = g.Wait()
	a.workers.wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (a *Agent) podsDir() string { return filepath.Join(a.dir, "pods") }
func (a *Agent) logsDir() string { return filepath.Join(a.dir, "logs") }

// importImages imports every tar dropped in images/import, for boxes
// without a registry. Failures are logged, not fatal.
func (a *Agent) importImages(ctx context.Context) {
	dir := filepath.Join(a.dir, "images", "import")
	tars, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	for _, t := range tars {
		imgs, err := a.images.ImportFile(ctx, t)
		if err != nil {
			a.log.Warn("cannot import image tar", "file", t, "err", err)
			continue
		}
		for _, img := range imgs {
			a.log.Info("imported image", "file", t, "names", img.Names, "id", img.ID)
		}
	}
}

// requestNodeStatus asks for a node status update soon.
func (a *Agent) requestNodeStatus() {
	select {
	case a.nodeChanged <- struct{}{}:
	default:
	}
}
