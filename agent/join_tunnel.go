package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/internal/tunnel"
)

// serverLink is a joined agent's one connection to the server: the tunnel
// that carries all its API calls and the sessions the server opens to it
// (logs, exec, port-forward), and the renewal of its certificate.
type serverLink struct {
	cfg    Config
	log    *slog.Logger
	creds  *nodeCredentials
	tunnel *tunnel.Agent
	// node is set by run before the tunnel starts; its node API, built
	// once its runtime is open, serves the server's sessions.
	node        *Agent
	nodeAPIOnce sync.Once
	nodeAPI     http.Handler
	now         func() time.Time
}

// Renewal retry bounds when the server cannot be asked.
const (
	renewRetryMin = 30 * time.Second
	renewRetryMax = time.Hour
)

// dialServer prepares the tunnel of a joined agent (joining first if
// needed) and sets cfg.HTTPClient to its client. Nothing is connected
// before run.
func dialServer(ctx context.Context, cfg *Config) (*serverLink, error) {
	log := cfg.Logger.With("node", cfg.NodeName)
	creds, err := credentials(ctx, *cfg, log)
	if err != nil {
		return nil, err
	}
	l := &serverLink{cfg: *cfg, log: log, creds: creds, now: time.Now}
	l.tunnel, err = tunnel.NewAgent(tunnel.AgentOptions{
		ServerURL:         cfg.ServerURL,
		HeartbeatInterval: cfg.TunnelKeepalive,
		PingTimeout:       cfg.TunnelKeepalive / 2,
		TLSConfig:         creds.tlsConfig(),
		Handler:           http.HandlerFunc(l.serveSession),
		Logger:            log.With("component", "tunnel"),
	})
	if err != nil {
		return nil, fmt.Errorf("orch agent: %w", err)
	}
	cfg.HTTPClient = l.tunnel.Client()
	cfg.tunnelUp = l.tunnel.Connected
	return l, nil
}

// serveSession serves a session the server opened (logs, exec, ...) with
// the node API, once the node runs.
func (l *serverLink) serveSession(w http.ResponseWriter, r *http.Request) {
	select {
	case <-l.node.ready:
	default:
		writeTextError(w, http.StatusServiceUnavailable, "node "+l.cfg.NodeName+" is starting")
		return
	}
	l.nodeAPIOnce.Do(func() { l.nodeAPI = l.node.nodeAPIHandler() })
	l.nodeAPI.ServeHTTP(w, r)
}

// run keeps the tunnel up and the certificate fresh while a runs as the
// node; it returns when ctx ends or a fails.
//
// The link outlives the node's run by the time the node takes to stop:
// what the node withdraws as it goes (the ingress proxy's advertisement
// on its Node) travels over the tunnel, which ctx's end would otherwise
// close at the same moment. The node stops when ctx ends or the link
// fails; the link when the node has stopped.
func (l *serverLink) run(ctx context.Context, a *Agent) error {
	l.node = a
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer context.AfterFunc(gctx, stopNode)()
	g.Go(func() error { return l.tunnel.Run(gctx) })
	g.Go(func() error { l.renewCertificate(gctx); return nil })
	g.Go(func() error { l.reportReconnects(gctx, a); return nil })
	g.Go(func() error {
		err := a.run(nodeCtx)
		if err == nil {
			// The tunnel and renewal have no purpose without the node.
			err = context.Canceled
		}
		return err
	})
	err := g.Wait()
	stopNode()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// reportReconnects tells a each time the tunnel comes back after it was
// lost (not at the first connect: registration posts the status then).
func (l *serverLink) reportReconnects(ctx context.Context, a *Agent) {
	select {
	case <-l.tunnel.Connected():
	case <-ctx.Done():
		return
	}
	for {
		select {
		case <-l.tunnel.Disconnected():
		case <-ctx.Done():
			return
		}
		select {
		case <-l.tunnel.Connected():
		case <-ctx.Done():
			return
		}
		a.serverReconnected()
	}
}

// renewAt is when a certificate is renewed: when a third of its lifetime
// is left, as the kubelet's certificate manager does (it picks 70-90%).
func renewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// renewCertificate renews the node's certificate over the tunnel, with the
// certificate itself as credential, whenever it is due, until ctx ends.
func (l *serverLink) renewCertificate(ctx context.Context) {
	retry := renewRetryMin
	for {
		leaf := l.creds.current().Leaf
		wait := renewAt(leaf.NotBefore, leaf.NotAfter).Sub(l.now())
		if !sleepOrDone(ctx, wait) {
			return
		}
		err := l.renewOnce(ctx)
		if err == nil {
			retry = renewRetryMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("cannot renew the node certificate; retrying", "err", err, "expires", leaf.NotAfter, "in", retry)
		if !sleepOrDone(ctx, retry) {
			return
		}
		retry = min(2*retry, renewRetryMax)
	}
}

func (l *serverLink) renewOnce(ctx context.Context) error {
	// Wait for the tunnel: its requests fail at once while it is down.
	select {
	case <-l.tunnel.Connected():
	case <-ctx.Done():
		return ctx.Err()
	}
	// A new key for every certificate, as the kubelet rotates them.
	keyPEM, csr, err := jointoken.NewNodeKey(l.cfg.NodeName)
	if err != nil {
		return err
	}
	certPEM, err := requestNodeCertificate(ctx, l.tunnel.Client(), l.cfg.ServerURL, l.cfg.NodeName, l.creds.password, "", csr)
	if err != nil {
		return err
	}
	pair, err := parseNodeCertificate(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: l.creds.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the renewed certificate: %w", err)
	}
	if got, want := pair.Leaf.Subject.CommonName, jointoken.NodeUserPrefix+l.cfg.NodeName; got != want {
		return fmt.Errorf("the renewed certificate is for %q, not %q", got, want)
	}
	l.creds.mu.Lock()
	old := l.creds.cert
	l.creds.cert = pair
	l.creds.mu.Unlock()
	if err := l.creds.save(); err != nil {
		l.creds.mu.Lock()
		l.creds.cert = old
		l.creds.mu.Unlock()
		return err
	}
	l.log.Info("renewed the node certificate", "expires", pair.Leaf.NotAfter)
	return nil
}
