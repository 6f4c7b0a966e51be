package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/internal/metrics"
	"github.com/orch-dev/orch/internal/nodeapi"
	"github.com/orch-dev/orch/internal/tunnel"
	"github.com/orch-dev/orch/internal/version"
	"github.com/orch-dev/orch/manifests"
	"github.com/orch-dev/orch/server/admission"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/deploy"
	"github.com/orch-dev/orch/server/join"
	"github.com/orch-dev/orch/server/metricsapi"
	"github.com/orch-dev/orch/server/pki"
	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/server/snapshot"
	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
)

const (
	// shutdownGrace bounds how long in-flight requests may finish.
	shutdownGrace = 5 * time.Second
	// History the store keeps for watches that resume or start from a
	// list's revision: at least the last five minutes (what etcd's default
	// compaction in Kubernetes keeps) and at least the last 10,000
	// revisions, whichever is more, within the memory bound of the store's
	// event ring (historyBytes). Keeping only 10,000 revisions was about
	// 30 s under a 300 writes/s rollout: a client listing 20,000 pods and
	// then watching found its list's revision compacted (410) and relisted
	// again and again.
	compactKeep     = 5 * time.Minute
	compactKeepRevs = 10000
	compactInterval = time.Minute
	// The store's in-memory event ring, which serves the watch history:
	// up to 100,000 events (as kube-apiserver's largest watch cache) and
	// 64 MiB of values, whichever bound is hit first. This bounds the
	// memory the window above may take under a write burst.
	historyEvents = 100000
	historyBytes  = 64 << 20
	// maxStreamsPerConn lets one agent carry all its watches and sessions
	// on its single HTTP/2 connection.
	maxStreamsPerConn = 1000
)

// Run starts the control plane described by cfg and serves until ctx is
// cancelled; then it shuts everything down in order and returns nil. An
// error means the server could not start or a component failed.
//
// On disk, under cfg.DataDir (0700):
//
//	server/tls/       certificates (server/pki)
//	server/token      the join token (0600)
//	server/db/state.db  the store
//	server/cred/encryption-config.json  secrets encryption keys (0600)
//	server/manifests/   manifests applied at start and on change (server/deploy)
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.DataDir == "" {
		return errors.New("server: data directory is not set")
	}
	serverDir := filepath.Join(cfg.DataDir, "server")
	for _, dir := range []string{cfg.DataDir, serverDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("server: create data directory: %w", err)
		}
	}
	serviceIP, err := firstServiceIP(cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	bindIP, err := parseBindAddress(cfg.BindAddress)
	if err != nil {
		return err
	}

	ca, err := pki.Load(filepath.Join(serverDir, "tls"), certOptions(cfg, serviceIP, bindIP))
	if err != nil {
		return fmt.Errorf("server: certificates: %w", err)
	}
	token, err := auth.EnsureToken(filepath.Join(serverDir, "token"), cfg.Token, ca.CACertPEM())
	if err != nil {
		return fmt.Errorf("server: join token: %w", err)
	}
	adminToken, err := auth.EnsureAdminToken(filepath.Join(serverDir, "admin-token"))
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	authn := auth.New(auth.Options{ClientCAs: ca.CAPool(), HandshakeVerifiesClientCAs: true,
		BootstrapSecret: token.Secret, AdminToken: adminToken})

	// Listen before anything long-lived starts, so a port in use is an
	// immediate, plain error.
	addr := net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.HTTPSPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	defer ln.Close() // only matters on the early-return paths below

	st, err := openStore(filepath.Join(serverDir, "db", "state.db"))
	if err != nil {
		return fmt.Errorf("server: open store: %w", err)
	}
	apiStore, err := encryptSecrets(cfg.SecretsEncryption, cfg.DataDir, st)
	if err != nil {
		_ = st.Close()
		return err
	}
	// The store closes last, after every user of it has stopped.
	runErr := serve(ctx, cfg, log, apiStore, ca, authn, ln, serviceIP, bindIP)
	if err := st.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("server: close store: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	log.Info("orch server stopped")
	return nil
}

// nodeTransport reaches the agent beside the server on its Unix socket
// and agents on other machines through their tunnels (then
// cfg.NodeTransport's nodes, if any).
func nodeTransport(cfg Config, tun *tunnel.Server) func(node string) (http.RoundTripper, error) {
	local := nodeapi.UnixTransport(nodeapi.SocketPath(cfg.DataDir))
	return func(node string) (http.RoundTripper, error) {
		switch {
		case !cfg.DisableAgent && node == cfg.NodeName:
			return local, nil
		case tun.IsConnected(node):
			return tun.RoundTripper(node), nil
		case cfg.NodeTransport != nil:
			return cfg.NodeTransport(node)
		}
		return nil, fmt.Errorf("node %s is not connected: its agent has no tunnel to this server", node)
	}
}

// openStore is the one place that picks the store backend.
func openStore(path string) (store.Store, error) {
	return bolt.Open(path, bolt.Options{HistoryEvents: historyEvents, HistoryBytes: historyBytes})
}

func serve(ctx context.Context, cfg Config, log *slog.Logger, st store.Store, ca *pki.Authority,
	authn *auth.Authenticator, ln net.Listener, serviceIP, bindIP netip.Addr) error {
	table, err := registry.NewTable()
	if err != nil {
		return fmt.Errorf("server: resource table: %w", err)
	}
	serviceAccounts, err := newServiceAccounts(ca.Dir(), ca.CACertPEM())
	if err != nil {
		return fmt.Errorf("server: service account tokens: %w", err)
	}
	authn = authn.WithTokens(serviceAccounts.authn).
		WithBootstrapTokens(auth.NewBootstrapTokens(serviceAccounts.api, nil, log))
	// Agents on other machines connect through the tunnel, authenticated
	// by their node certificates.
	tun, err := tunnel.NewServer(tunnel.ServerOptions{NodeName: join.NodeName(authn.Authenticate), Logger: log.With("component", "tunnel")})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	v := version.Get()
	authz := &authorizer{}
	api, err := apiserver.New(apiserver.Config{
		Store:        st,
		Table:        table,
		Authenticate: authn.Authenticate,
		Authorize:    authz.authorize,
		PostStart:    []func(context.Context, *apiserver.Local) error{ensureRBACPolicy},
		KubernetesService: &apiserver.KubernetesService{
			ClusterIP:  serviceIP.String(),
			EndpointIP: endpointIP(bindIP).String(),
			Port:       int32(cfg.HTTPSPort),
		},
		Logger:        log,
		GitVersion:    v.Kubernetes + "+orch",
		GitCommit:     v.GitCommit,
		NodeTransport: nodeTransport(cfg, tun),
	})
	if err != nil {
		return fmt.Errorf("server: api server: %w", err)
	}
	if err := attachServiceAllocators(ctx, api, table, cfg.ServiceCIDR, log); err != nil {
		return err
	}
	// Admission that needs cluster state reads it from informers shared
	// with the controllers. Hooks attached last run first: the default
	// StorageClass and LimitRanger (defaults), then quota, then the service
	// IP allocator.
	factory := informer.NewFactory(api.Local(), log.With("component", "informers"))
	// metrics.k8s.io, scraped from the nodes (orch's metrics-server).
	resourceMetrics := metricsapi.New(factory, nodeTransport(cfg, tun),
		metricsapi.Options{Resolution: cfg.MetricsResolution, Logger: log.With("component", "metrics-server")})
	if err := api.AddComputed(resourceMetrics.Resources()...); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := authz.start(factory, table); err != nil {
		return err
	}
	quotaAdmission := admission.NewQuota(
		informer.NewLister[*corev1.ResourceQuota](factory.For(corev1.SchemeGroupVersion.WithResource("resourcequotas"))), admission.QuotaOptions{})
	limitRanger := admission.NewLimitRanger(
		informer.NewLister[*corev1.LimitRange](factory.For(corev1.SchemeGroupVersion.WithResource("limitranges"))))
	defaultClass := admission.NewDefaultStorageClass(
		informer.NewLister[*storagev1.StorageClass](factory.For(storagev1.SchemeGroupVersion.WithResource("storageclasses"))))
	for _, res := range table.Resources() {
		quotaAdmission.Attach(res)
		limitRanger.Attach(res)
		defaultClass.Attach(res)
	}
	serviceAccounts.attach(api, table, authn, factory)

	var reserved []string
	if !cfg.DisableAgent {
		reserved = []string{cfg.NodeName}
	}
	joiner, err := join.New(join.Options{CA: ca, Objects: api.Local(), Authenticate: authn.AuthenticateRequest,
		ReservedNodeNames: reserved, Logger: log.With("component", "join")})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}

	serving := ca.ServingCertificate()
	// /metrics is authenticated and authorized like the rest of the API
	// (system:monitoring and cluster-admin may read it).
	reg := metrics.NewRegistry()
	metrics.RegisterProcess(reg)
	metrics.RegisterStore(reg, st, filepath.Join(cfg.DataDir, "server", "db", "state.db"))
	apiHandler, metricsHandler := api.Handler(), api.Authorized(reg.Handler())
	// `orch snapshot save` asks the running server (admins only).
	snapshots := http.NotFoundHandler()
	if db, ok := st.(snapshot.Snapshotter); ok {
		snapshots = api.Authorized(snapshot.Handler(db, cfg.DataDir, time.Now))
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case join.Handles(r.URL.Path):
			joiner.ServeHTTP(w, r)
			return
		case r.URL.Path == snapshot.APIPath:
			snapshots.ServeHTTP(w, r)
			return
		case r.URL.Path != "/metrics":
			apiHandler.ServeHTTP(w, r)
			return
		}
		metricsHandler.ServeHTTP(w, r)
	})
	hs := &http.Server{
		Handler: tunnelOr(tun, metrics.InstrumentHandler(reg, handler)),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serving},
			// Clients without a certificate still get through TLS: they
			// may carry a bearer token, or reach the public health paths.
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  ca.CAPool(),
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
		},
		HTTP2:             http2Config(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		// Handshake failures from scanners and wrong clients are noise.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	// The API server runs on its own context, cancelled only when shutdown
	// begins, so that it ends its watches while the HTTP server drains.
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := api.Run(apiCtx); err != nil {
			return fmt.Errorf("server: api server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// ServeTLS with the certificate in TLSConfig negotiates HTTP/2.
		if err := hs.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("server: serve https on %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error { return serviceAccounts.run(gctx, api, factory, log) })
	g.Go(func() error { return runControllers(gctx, cfg, api, factory, quotaAdmission, resourceMetrics, log) })
	g.Go(func() error { return resourceMetrics.Run(gctx) })
	if db, ok := st.(snapshot.Snapshotter); ok && cfg.SnapshotInterval > 0 {
		g.Go(func() error {
			return snapshot.Schedule(gctx, db, snapshot.Dir(cfg.DataDir), cfg.SnapshotInterval, cfg.SnapshotRetention, log)
		})
	}
	g.Go(func() error {
		select {
		case <-api.Ready():
		case <-gctx.Done():
			return nil
		}
		return deploy.New(api.Local(), deploy.Options{
			Dir: filepath.Join(cfg.DataDir, "server", "manifests"), BuiltIn: manifests.FS(),
			Disable: slices.DeleteFunc(slices.Clone(cfg.Disable), func(n string) bool { return n == DisableIngress }),
			Kinds:   servedKinds(api.Local()), Logger: log.With("component", "deploy"),
		}).Run(gctx)
	})
	g.Go(func() error { return runRoleAggregation(gctx, api, factory, log) })
	g.Go(func() error {
		c := &compactor{st: st, log: log, keep: compactKeep, keepRevs: compactKeepRevs}
		c.run(gctx, compactInterval)
		return nil
	})
	g.Go(func() error {
		select {
		case <-api.Ready():
		case <-gctx.Done():
			return nil
		}
		kubeconfig := cfg.WriteKubeconfig
		if kubeconfig != "" {
			url := "https://" + net.JoinHostPort(localAddress(bindIP).String(), strconv.Itoa(cfg.HTTPSPort))
			mode := cfg.KubeconfigMode
			if mode == 0 {
				mode = 0o600
			}
			if err := ca.WriteKubeconfig(kubeconfig, url, mode); err != nil {
				// The cluster works without it (the admin certificate is in
				// the data dir), so say so loudly and keep serving.
				log.Error("cannot write admin kubeconfig", "path", kubeconfig, "err", err)
				kubeconfig = ""
			}
		}
		log.Info("orch server is ready", "listen", ln.Addr().String(), "kubeconfig", kubeconfig, "node", cfg.NodeName)
		if !cfg.DisableAgent && cfg.LocalNode != nil {
			certPEM, keyPEM, err := ca.SignClient("system:node:"+cfg.NodeName, []string{"system:nodes"}, localNodeCertValidity)
			if err != nil {
				return fmt.Errorf("server: certificate for the local node: %w", err)
			}
			url := "https://" + net.JoinHostPort(localAddress(bindIP).String(), strconv.Itoa(cfg.HTTPSPort))
			select {
			case cfg.LocalNode <- LocalNode{ServerURL: url, CAPEM: ca.CACertPEM(), CertPEM: certPEM, KeyPEM: keyPEM}:
			case <-gctx.Done():
			}
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		stopAPI()
		// Control streams never end by themselves.
		_ = tun.Close()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("requests still running after the shutdown grace period; closing their connections", "grace", shutdownGrace)
			_ = hs.Close()
		}
		return nil
	})
	return g.Wait()
}

// tunnelOr serves the agents' tunnels with tun and everything else with
// next. Tunnel streams last as long as a connection or a session, so they
// stay out of the request metrics.
func tunnelOr(tun *tunnel.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, tunnel.PathPrefix) {
			tun.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// http2Config is the tunnel's HTTP/2 settings (per-stream flow control,
// pings) with our limit of streams per connection.
func http2Config() *http.HTTP2Config {
	c := tunnel.ServerHTTP2Config()
	c.MaxConcurrentStreams = maxStreamsPerConn
	return c
}

// servedKinds lets the manifest deployer find any kind served now.
func servedKinds(local *apiserver.Local) deploy.KindFunc {
	return func(gvk schema.GroupVersionKind) (deploy.Kind, bool) {
		for _, r := range local.Resources() {
			if r.GroupVersionKind() == gvk {
				return deploy.Kind{Resource: r.GroupVersionResource(), Namespaced: r.Namespaced}, true
			}
		}
		return deploy.Kind{}, false
	}
}

// localNodeCertValidity is how long the in-process node's certificate
// lasts; it is issued anew at every start.
const localNodeCertValidity = 365 * 24 * time.Hour

// compactor trims the store's watch history to a time window: it samples
// the revision each interval and compacts to the revision seen compactKeep
// ago, or to the last keepRevs revisions, whichever keeps more (the store's
// own history bound caps the memory either may take).
type compactor struct {
	st       compactable
	log      *slog.Logger
	keep     time.Duration
	keepRevs int64
	samples  []revisionSample // oldest first
}

// compactable is the part of store.Store the compactor needs.
type compactable interface {
	Revision() int64
	CompactRevision() int64
	Compact(ctx context.Context, revision int64) error
}

type revisionSample struct {
	at  time.Time
	rev int64
}

func (c *compactor) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.tick(ctx, now)
		}
	}
}

func (c *compactor) tick(ctx context.Context, now time.Time) {
	cur := c.st.Revision()
	c.samples = append(c.samples, revisionSample{at: now, rev: cur})
	// The newest sample at least c.keep old marks the window's start;
	// older samples are no longer needed.
	var target int64
	cut := now.Add(-c.keep)
	i := 0
	for i < len(c.samples) && !c.samples[i].at.After(cut) {
		target = c.samples[i].rev
		i++
	}
	if i > 0 {
		c.samples = slices.Delete(c.samples, 0, i-1)
	}
	target = min(target, cur-c.keepRevs)
	if target <= c.st.CompactRevision() {
		return
	}
	if err := c.st.Compact(ctx, target); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("store compaction failed", "revision", target, "err", err)
		}
		return
	}
	c.log.Debug("compacted store history", "revision", target, "current", cur)
}

// firstServiceIP is the first usable address of the service CIDR (10.43.0.1
// for 10.43.0.0/16), the ClusterIP of the kubernetes Service.
func firstServiceIP(cidr netip.Prefix) (netip.Addr, error) {
	if !cidr.IsValid() {
		return netip.Addr{}, errors.New("server: service CIDR is not set")
	}
	ip := cidr.Masked().Addr().Next()
	if !ip.IsValid() || !cidr.Contains(ip) {
		return netip.Addr{}, fmt.Errorf("server: service CIDR %s has no usable address", cidr)
	}
	return ip, nil
}

// parseBindAddress accepts an IP address (empty means all interfaces).
func parseBindAddress(s string) (netip.Addr, error) {
	if s == "" {
		return netip.IPv4Unspecified(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("server: bind address %q is not an IP address", s)
	}
	return ip.Unmap(), nil
}

// certOptions lists the names and addresses clients may use to reach this
// server, beyond the fixed ones pki always includes.
func certOptions(cfg Config, serviceIP, bindIP netip.Addr) pki.Options {
	opts := pki.Options{IPs: []net.IP{serviceIP.AsSlice()}}
	if host, err := os.Hostname(); err == nil {
		opts.DNSNames = append(opts.DNSNames, host)
	}
	if cfg.NodeName != "" {
		opts.DNSNames = append(opts.DNSNames, cfg.NodeName)
	}
	if !bindIP.IsUnspecified() {
		opts.IPs = append(opts.IPs, bindIP.AsSlice())
	}
	for _, ip := range hostAddresses() {
		opts.IPs = append(opts.IPs, ip.AsSlice())
	}
	return opts
}

// hostAddresses are the host's addresses other than loopback and link-local
// ones (which need a zone and change with every veth a node creates).
func hostAddresses() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// endpointIP is where pods reach the API server: the bind address when it
// is specific, else the address of the default-route interface, else any
// host address, else loopback.
func endpointIP(bindIP netip.Addr) netip.Addr {
	// A loopback bind cannot be advertised to pods (Kubernetes refuses
	// loopback endpoints): advertise the host's address instead.
	if !bindIP.IsUnspecified() && !bindIP.IsLoopback() {
		return bindIP
	}
	if ip, ok := defaultRouteAddress(); ok {
		return ip
	}
	for _, ip := range hostAddresses() {
		if ip.Is4() {
			return ip
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// defaultRouteAddress reads /proc/net/route rather than dialing out, so
// finding the address sends nothing on the network.
func defaultRouteAddress() (netip.Addr, bool) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags ... Mask ...
		if len(fields) < 8 || fields[1] != "00000000" || fields[7] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(fields[0])
		if err != nil {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLinkLocalUnicast() {
					return ip.Unmap(), true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// localAddress is the address a process on this host uses to reach the
// server: loopback unless the server listens on one specific address.
func localAddress(bindIP netip.Addr) netip.Addr {
	if bindIP.IsUnspecified() {
		// Also right for "::": Go's dual-stack listener accepts IPv4.
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return bindIP
}
