package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts of the proxy, ingress-nginx's defaults where it has one.
const (
	// dialTimeout bounds connecting to one endpoint (proxy-connect-timeout).
	dialTimeout = 5 * time.Second
	// readHeaderTimeout bounds a client's request line and headers, so
	// idle half-open clients cannot pile up.
	readHeaderTimeout = 30 * time.Second
	// idleTimeout closes idle client keep-alive connections.
	idleTimeout = 2 * time.Minute
	// shutdownGrace is how long requests in flight may finish when the
	// proxy stops.
	shutdownGrace = 5 * time.Second
	// failTimeout is how long an endpoint a dial failed to is tried last
	// (ingress-nginx's fail_timeout).
	failTimeout = 10 * time.Second
)

// Options configure a Proxy.
type Options struct {
	// DefaultCertificate answers TLS for hosts without one of their own;
	// nil means a fresh self-signed one (SelfSignedCertificate).
	DefaultCertificate *tls.Certificate
	Logger             *slog.Logger
}

// Proxy is the ingress reverse proxy. It serves the last Config given to
// Update; the zero Config (before the first Update) answers 404.
type Proxy struct {
	cfg         atomic.Pointer[Config]
	defaultCert *tls.Certificate
	rp          *httputil.ReverseProxy
	transport   *http.Transport
	down        *unreachable
	log         *slog.Logger
}

// New returns a Proxy serving an empty Config.
func New(opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DefaultCertificate == nil {
		cert, err := SelfSignedCertificate(time.Now())
		if err != nil {
			return nil, err
		}
		opts.DefaultCertificate = cert
	}
	p := &Proxy{defaultCert: opts.DefaultCertificate, down: &unreachable{now: time.Now}, log: opts.Logger}
	p.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		// Bodies pass through as the backend sent them.
		DisableCompression: true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    endpointsTransport{next: p.transport, down: p.down, log: opts.Logger},
		ErrorHandler: p.backendFailed,
	}
	p.cfg.Store(Build(Objects{}))
	return p, nil
}

// Update makes cfg the Config for requests from now on. Requests in
// flight finish with the backends they were routed to; connections to
// endpoints no longer in cfg close when they go idle.
func (p *Proxy) Update(cfg *Config) { p.cfg.Store(cfg) }

// Config returns the Config being served.
func (p *Proxy) Config() *Config { return p.cfg.Load() }

// candidatesKey carries a request's endpoints, in the order to try them,
// from ServeHTTP to endpointsTransport.
type candidatesKey struct{}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := p.cfg.Load().Table.Match(r.Host, r.URL.Path)
	switch {
	case b == nil:
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	case len(b.Endpoints) == 0:
		p.log.Debug("no endpoints for an ingress backend", "backend", b.Name, "problem", b.Problem, "host", r.Host, "path", r.URL.Path)
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	ctx := context.WithValue(r.Context(), candidatesKey{}, p.down.last(b.pick()))
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// rewrite sends a request to its first candidate endpoint with the
// client's Host and the X-Forwarded headers ingress-nginx and Traefik
// set. Forwarded headers from the client are dropped, not trusted.
func rewrite(pr *httputil.ProxyRequest) {
	eps, _ := pr.In.Context().Value(candidatesKey{}).([]string)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = eps[0]
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		pr.Out.Header.Set("X-Real-Ip", ip)
	}
}

// endpointsTransport sends a request to its first candidate endpoint or,
// when dialing that fails (an endpoint gone before the Config caught
// up), to the next: nothing of the request has been sent then, so trying
// another is safe. Each attempt uses the pool of its own endpoint.
type endpointsTransport struct {
	next http.RoundTripper
	down *unreachable
	log  *slog.Logger
}

func (t endpointsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	eps, _ := req.Context().Value(candidatesKey{}).([]string)
	if len(eps) <= 1 {
		return t.next.RoundTrip(req)
	}
	if req.Body != nil && req.Body != http.NoBody {
		// The transport closes the body after a failed attempt; the
		// next attempt needs it unread and open. The server closes it
		// when the handler returns: closing it here, as RoundTrip
		// returns, would cut a body still being streamed upstream.
		req.Body = unclosable{req.Body}
	}
	var errs []error
	for i, ep := range eps {
		attempt := req
		if i > 0 {
			attempt = req.Clone(req.Context())
			attempt.Body = req.Body
			attempt.URL.Host = ep
		}
		resp, err := t.next.RoundTrip(attempt)
		var opErr *net.OpError
		if err == nil || !errors.As(err, &opErr) || opErr.Op != "dial" || req.Context().Err() != nil {
			if i > 0 && err == nil {
				t.log.Debug("endpoint unreachable; used another", "failed", errs, "used", ep)
			}
			return resp, err
		}
		errs = append(errs, err)
		t.down.mark(ep)
	}
	return nil, errors.Join(errs...)
}

// unreachable remembers for failTimeout the endpoints a dial failed to,
// so that requests try them last until their EndpointSlice catches up
// (a passive health check, as ingress-nginx's max_fails): a blackholed
// endpoint costs one dial timeout, not one per request in turn.
type unreachable struct {
	now func() time.Time

	mu    sync.Mutex
	until map[string]time.Time
}

func (u *unreachable) mark(addr string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if u.until == nil {
		u.until = map[string]time.Time{}
	}
	for a, t := range u.until {
		if !t.After(now) {
			delete(u.until, a)
		}
	}
	u.until[addr] = now.Add(failTimeout)
}

// last returns eps with the endpoints that failed lately moved to the
// end, in their order; eps itself is not changed.
func (u *unreachable) last(eps []string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.until) == 0 || len(eps) <= 1 {
		return eps
	}
	now := u.now()
	ok := make([]string, 0, len(eps))
	var failed []string
	for _, ep := range eps {
		if t, bad := u.until[ep]; bad && t.After(now) {
			failed = append(failed, ep)
		} else {
			ok = append(ok, ep)
		}
	}
	return append(ok, failed...)
}

// unclosable keeps a request body open across attempts.
type unclosable struct{ io.ReadCloser }

func (unclosable) Close() error { return nil }

// backendFailed answers 502 when no endpoint could serve the request,
// as ingress-nginx does.
func (p *Proxy) backendFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() == nil {
		p.log.Warn("ingress backend failed", "host", r.Host, "path", r.URL.Path, "err", err)
	}
	w.WriteHeader(http.StatusBadGateway)
}

// TLSConfig answers each handshake with the certificate of the Config
// being served for its SNI name, or the default certificate.
func (p *Proxy) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := p.cfg.Load().Certificate(hello.ServerName); c != nil {
				return c, nil
			}
			return p.defaultCert, nil
		},
	}
}

// Serve answers HTTP on httpLn and HTTPS on httpsLn (either may be nil)
// until ctx ends, then lets requests in flight finish for a few seconds.
// It closes the listeners.
func (p *Proxy) Serve(ctx context.Context, httpLn, httpsLn net.Listener) error {
	errLog := slog.NewLogLogger(p.log.Handler(), slog.LevelDebug) // client TLS errors are noise
	newServer := func() *http.Server {
		return &http.Server{Handler: p, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, ErrorLog: errLog}
	}
	var (
		wg      sync.WaitGroup
		servers []*http.Server
		errs    = make(chan error, 2)
	)
	if httpLn != nil {
		srv := newServer()
		servers = append(servers, srv)
		wg.Go(func() { errs <- srv.Serve(httpLn) })
	}
	if httpsLn != nil {
		srv := newServer()
		srv.TLSConfig = p.TLSConfig()
		servers = append(servers, srv)
		wg.Go(func() { errs <- srv.ServeTLS(httpsLn, "", "") })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		err = fmt.Errorf("ingress proxy: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	for _, srv := range servers {
		if srv.Shutdown(shutdownCtx) != nil {
			_ = srv.Close()
		}
	}
	wg.Wait()
	p.transport.CloseIdleConnections()
	return err
}
