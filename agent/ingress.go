package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/ingressclass"
	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/netproxy/ingress"
	"github.com/orch-dev/orch/netproxy/keyed"
)

// Resources the ingress proxy follows besides Services and EndpointSlices
// (which it shares with the service proxy).
var (
	ingressesResource      = apiclient.Resource{Group: "networking.k8s.io", Version: "v1", Name: "ingresses", Namespaced: true}
	ingressClassesResource = apiclient.Resource{Group: "networking.k8s.io", Version: "v1", Name: "ingressclasses"}
)

// withIngress starts the node's ingress proxy (netproxy/ingress) on
// Config.Network's ingress ports, on every address of the node as k3s
// exposes Traefik, and returns rules with the proxy added as a second
// receiver of the Services and EndpointSlices the service proxy is fed:
// both see one picture from one pair of watches. Ingresses and classes
// are mirrored as jointoken.IngressUser, the cluster-wide read k3s gives
// Traefik; the TLS Secrets they name are fetched one by one, all the
// server lets that user read of Secrets (authz.IngressTLS). Without ingress ports, or when neither port
// can be bound, it returns rules unchanged and the node serves no
// ingress.
//
// The node advertises its proxy (a.ingressAdvert) once it listens and
// routes with the first complete picture of the Ingresses, and withdraws
// it when the proxy stops.
func (a *Agent) withIngress(ctx context.Context, g *errgroup.Group, rules proxyRules) proxyRules {
	nc := a.cfg.Network
	log := a.log.With("component", "ingress")
	httpLn := listenIngress(log, nc.IngressHTTPPort, "HTTP")
	httpsLn := listenIngress(log, nc.IngressHTTPSPort, "HTTPS")
	if httpLn == nil && httpsLn == nil {
		a.ingressAdvert.set(proxyOff)
		return rules
	}
	p, err := ingress.New(ingress.Options{Logger: log})
	if err != nil {
		log.Error("node serves no ingress", "err", err)
		for _, ln := range []net.Listener{httpLn, httpsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		a.ingressAdvert.set(proxyOff)
		return rules
	}
	a.ingressAdvert.set(proxyStarting)
	st := &ingressState{proxy: p, log: log, kick: make(chan struct{}, 1), fetch: make(chan struct{}, 1),
		configured: func() { a.ingressAdvert.set(proxyServing) }}
	api := a.api.Impersonating(jointoken.IngressUser)
	g.Go(func() error {
		if err := p.Serve(ctx, httpLn, httpsLn); err != nil {
			log.Error("ingress proxy stopped", "err", err)
		}
		a.ingressAdvert.set(proxyOff)
		return nil
	})
	g.Go(func() error { st.run(ctx); return nil })
	g.Go(func() error {
		mirror(ctx, a.log, api, ingressesResource, keyedSink(st.lockedIngresses, &st.ingresses))
		return nil
	})
	g.Go(func() error {
		mirror(ctx, a.log, api, ingressClassesResource, keyedSink(st.locked, &st.classes))
		return nil
	})
	g.Go(func() error { st.fetchSecrets(ctx, api); return nil })
	log.Info("ingress proxy started", "http", addrOf(httpLn), "https", addrOf(httpsLn))
	return ingressFanout{rules, st}
}

// listenIngress listens on port of every address; a port taken (another
// ingress controller, a web server on the node) leaves it off with an
// error logged rather than failing the node.
func listenIngress(log *slog.Logger, port int, what string) net.Listener {
	if port == 0 {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		log.Error(fmt.Sprintf("node serves no %s ingress", what), "err", err)
		return nil
	}
	return ln
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return ln.Addr().String()
}

// isTLSSecret keeps the Secrets an Ingress can name for TLS (those with
// a certificate and key, as ingress-nginx accepts them).
func isTLSSecret(s *v1.Secret) bool {
	return len(s.Data[v1.TLSCertKey]) > 0 && len(s.Data[v1.TLSPrivateKeyKey]) > 0
}

// secretRefresh is how often the TLS Secrets are fetched again without
// an Ingress change, so a renewed certificate (cert-manager) is served
// within a minute, as the kubelet's Secret cache refreshes volumes.
const secretRefresh = time.Minute

// fetchSecrets keeps s.secrets equal to the TLS Secrets the Ingresses
// name: fetched again after every Ingress change and every
// secretRefresh. A Secret that cannot be read for now keeps its last
// copy; one that is gone, or holds no certificate, is dropped.
func (s *ingressState) fetchSecrets(ctx context.Context, api *apiclient.Client) {
	t := time.NewTicker(secretRefresh)
	defer t.Stop()
	warned := map[types.NamespacedName]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.fetch:
		case <-t.C:
		}
		s.mu.Lock()
		if !s.ingresses.Listed() {
			s.mu.Unlock()
			continue
		}
		names := tlsSecretNames(s.ingresses.Values(0))
		s.mu.Unlock()

		got := make([]*v1.Secret, 0, len(names))
		for _, n := range names {
			var sec v1.Secret
			err := api.Get(ctx, apiclient.Secrets, n.Namespace, n.Name, &sec)
			s.mu.Lock()
			old, had := s.secrets.Get(n.Namespace, n.Name)
			s.mu.Unlock()
			switch {
			case err == nil && isTLSSecret(&sec):
				got = append(got, &sec)
				delete(warned, n)
				continue
			case err == nil:
				err = fmt.Errorf("it has no %s and %s", v1.TLSCertKey, v1.TLSPrivateKeyKey)
			case apierrors.IsNotFound(err):
			case ctx.Err() != nil:
				return
			case had:
				got = append(got, old) // keep serving it through a passing failure
			}
			if msg := err.Error(); warned[n] != msg {
				s.log.Warn("cannot use an Ingress's TLS secret", "secret", n.String(), "err", err)
				warned[n] = msg
			}
		}
		s.mu.Lock()
		same := s.secrets.Listed() && sameSecrets(s.secrets.Values(0), got)
		s.mu.Unlock()
		if !same {
			s.locked(func() { s.secrets.Replace(got) })
		}
	}
}

// sameSecrets reports whether a and b hold the same Secrets at the same
// resourceVersions: a round that fetched nothing new rebuilds nothing.
func sameSecrets(a, b []*v1.Secret) bool {
	if len(a) != len(b) {
		return false
	}
	versions := make(map[types.NamespacedName]string, len(a))
	for _, sec := range a {
		versions[types.NamespacedName{Namespace: sec.Namespace, Name: sec.Name}] = sec.ResourceVersion
	}
	for _, sec := range b {
		if v, ok := versions[types.NamespacedName{Namespace: sec.Namespace, Name: sec.Name}]; !ok || v != sec.ResourceVersion {
			return false
		}
	}
	return true
}

// tlsSecretNames lists the Secrets that Ingresses name for TLS, once each.
func tlsSecretNames(ings []*networkingv1.Ingress) []types.NamespacedName {
	seen := map[types.NamespacedName]bool{}
	var out []types.NamespacedName
	for _, ing := range ings {
		for _, tls := range ing.Spec.TLS {
			n := types.NamespacedName{Namespace: ing.Namespace, Name: tls.SecretName}
			if tls.SecretName != "" && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// ingressFanout gives the service proxy's picture to the ingress too.
type ingressFanout struct {
	proxyRules
	ingress *ingressState
}

func (f ingressFanout) Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice) {
	f.proxyRules.Replace(services, slices)
	f.ingress.replaceServices(services, slices)
}

// ingressState is the node's picture of what the ingress proxy serves. It
// builds a Config only once every kind has been listed, so a restarting
// agent never answers 404 for an Ingress it has not read yet.
type ingressState struct {
	proxy *ingress.Proxy
	log   *slog.Logger
	kick  chan struct{}

	// fetch asks fetchSecrets for another round (an Ingress changed).
	fetch chan struct{}
	// configured, if set, is called once the proxy has its first Config.
	configured func()

	mu             sync.Mutex
	ingresses      keyed.Map[*networkingv1.Ingress]
	classes        keyed.Map[*networkingv1.IngressClass]
	secrets        keyed.Map[*v1.Secret]
	services       []*v1.Service
	slices         []*discoveryv1.EndpointSlice
	servicesListed bool
}

// locked applies a change under the lock and asks for a rebuild.
func (s *ingressState) locked(change func()) {
	s.mu.Lock()
	change()
	s.mu.Unlock()
	s.rebuild()
}

// lockedIngresses is locked for Ingress changes, which may name other
// TLS Secrets.
func (s *ingressState) lockedIngresses(change func()) {
	s.locked(change)
	select {
	case s.fetch <- struct{}{}:
	default:
	}
}

// replaceServices takes the service proxy's picture; the slices are not
// copied (serviceState hands out fresh ones each time).
func (s *ingressState) replaceServices(services []*v1.Service, slices []*discoveryv1.EndpointSlice) {
	s.locked(func() { s.services, s.slices, s.servicesListed = services, slices, true })
}

func (s *ingressState) rebuild() {
	select {
	case s.kick <- struct{}{}:
	default: // one pending rebuild covers this change too
	}
}

// run rebuilds the proxy's Config after changes, coalescing bursts: a
// build reads the whole picture, so changes that came while one ran are
// all in the next.
func (s *ingressState) run(ctx context.Context) {
	var warned []string
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		objs, ok := s.snapshot()
		if !ok {
			continue
		}
		cfg := ingress.Build(objs)
		s.proxy.Update(cfg)
		if first && s.configured != nil {
			s.configured()
		}
		first = false
		warned = s.logWarnings(cfg, warned)
		s.log.Debug("ingress configuration updated", "ingresses", len(cfg.Served))
	}
}

func (s *ingressState) snapshot() (ingress.Objects, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.servicesListed || !s.ingresses.Listed() || !s.classes.Listed() || !s.secrets.Listed() {
		return ingress.Objects{}, false
	}
	return ingress.Objects{
		Ingresses:      s.ingresses.Values(0),
		IngressClasses: s.classes.Values(0),
		Secrets:        s.secrets.Values(0),
		Services:       s.services,
		EndpointSlices: s.slices,
	}, true
}

// logWarnings logs each problem with an Ingress once, until it changes.
func (s *ingressState) logWarnings(cfg *ingress.Config, before []string) []string {
	now := make([]string, 0, len(cfg.Warnings))
	for _, w := range cfg.Warnings {
		msg := w.Ingress.String() + ": " + w.Err.Error()
		now = append(now, msg)
		if !slices.Contains(before, msg) {
			s.log.Warn("ingress not fully served", "ingress", w.Ingress.String(), "err", w.Err)
		}
	}
	return now
}

// keyedSink returns a sink that keeps objs current through locked (which
// serialises changes and hands the new picture on).
func keyedSink[T any, PT objectPtr[T]](locked func(change func()), objs *keyed.Map[PT]) sink[T] {
	return sink[T]{
		replace: func(items []*T) {
			objects := make([]PT, len(items))
			for i, o := range items {
				objects[i] = o
			}
			locked(func() { objs.Replace(objects) })
		},
		update: func(o *T) { locked(func() { objs.Update(o) }) },
		remove: func(o *T) { locked(func() { objs.Delete(PT(o).GetNamespace(), PT(o).GetName()) }) },
	}
}

// proxyState is what the node's ingress proxy is doing, as far as its
// advertisement is concerned.
type proxyState int8

const (
	// proxyUnknown: the agent has not got to its ingress proxy yet.
	proxyUnknown proxyState = iota
	// proxyStarting: it listens, but has not read the Ingresses yet.
	proxyStarting
	// proxyServing: it listens and routes.
	proxyServing
	// proxyOff: it does not run (disabled, ports taken, stopped).
	proxyOff
)

// nodePatcher writes the node's own Node; *apiclient.Client is one.
type nodePatcher interface {
	Patch(ctx context.Context, res apiclient.Resource, ns, name, sub string, pt types.PatchType, data []byte, out any) error
}

// advertRetryMax bounds the back-off between failed writes of the
// advertisement; withdrawTimeout bounds the last one, made as the agent
// stops.
const (
	advertRetryMax  = 30 * time.Second
	withdrawTimeout = 2 * time.Second
)

// ingressAdvert keeps ingressclass.ProxyAnnotation on the node's own
// Node equal to whether the node's ingress proxy serves, so that the
// server's ingress status controller lists this node's address exactly
// while it answers. The node patches only its own Node, which the node
// authorizer lets it.
//
// It is level-triggered: it compares what it wants with the Node as the
// server last showed it (at registration, in the nodes mirror, in its own
// patches' answers) and writes only a difference, so a Node re-created
// or edited by hand gets the annotation back. While the proxy is starting
// it leaves the Node alone: an agent restarted after a crash keeps its
// place in the Ingresses' status instead of leaving and rejoining it a
// moment later. Withdrawal as the agent stops is best effort: the server
// node's API server stops with it, and a joined agent's tunnel ends on
// the same signal. A node that could not withdraw leaves the status when
// it turns NotReady, and its next start removes the annotation if it then
// runs no proxy.
type ingressAdvert struct {
	api  nodePatcher
	node string
	log  *slog.Logger
	kick chan struct{}
	// retryBase is the first wait after a failed write.
	retryBase time.Duration

	mu     sync.Mutex
	want   proxyState
	server proxyState // the Node as last seen: proxyServing, proxyOff, or proxyUnknown before
}

func newIngressAdvert(api nodePatcher, node string, log *slog.Logger) *ingressAdvert {
	return &ingressAdvert{api: api, node: node, log: log.With("component", "ingress"), kick: make(chan struct{}, 1), retryBase: time.Second}
}

// set records what the proxy does now. proxyOff is final: a proxy that
// stopped does not come back within the agent's run.
func (ad *ingressAdvert) set(st proxyState) {
	ad.mu.Lock()
	if ad.want == proxyOff {
		ad.mu.Unlock()
		return
	}
	ad.want = st
	ad.mu.Unlock()
	ad.poke()
}

// observe takes the server's view of the node's own Node.
func (ad *ingressAdvert) observe(n *v1.Node) {
	seen := proxyOff
	if ingressclass.NodeServes(n) {
		seen = proxyServing
	}
	ad.mu.Lock()
	ad.server = seen
	ad.mu.Unlock()
	ad.poke()
}

func (ad *ingressAdvert) poke() {
	select {
	case ad.kick <- struct{}{}:
	default:
	}
}

// pending returns the state to write, if the server's view differs from
// a settled wish.
func (ad *ingressAdvert) pending() (proxyState, bool) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	settled := ad.want == proxyServing || ad.want == proxyOff
	return ad.want, settled && ad.want != ad.server
}

// run writes the advertisement until ctx ends, then withdraws it.
// registered is the Node as registration left it; a node whose agent
// started no ingress proxy by now (no pod network, --disable ingress)
// runs none, and a stale advertisement from an earlier run is removed.
func (ad *ingressAdvert) run(ctx context.Context, registered *v1.Node) {
	ad.observe(registered)
	ad.mu.Lock()
	if ad.want == proxyUnknown {
		ad.want = proxyOff
	}
	ad.mu.Unlock()
	var (
		retry <-chan time.Time
		delay time.Duration
	)
	for {
		select {
		case <-ctx.Done():
			ad.withdraw(context.WithoutCancel(ctx))
			return
		case <-ad.kick:
		case <-retry:
		}
		want, ok := ad.pending()
		if !ok {
			continue
		}
		if err := ad.write(ctx, want); err != nil {
			if ctx.Err() != nil {
				continue
			}
			delay = min(max(2*delay, ad.retryBase), advertRetryMax)
			ad.log.Warn("cannot advertise the ingress proxy on the node; retrying", "err", err, "in", delay)
			retry = time.After(delay)
			continue
		}
		retry, delay = nil, 0
	}
}

// withdraw removes an advertisement the server has, as the agent stops.
func (ad *ingressAdvert) withdraw(ctx context.Context) {
	ad.mu.Lock()
	advertised := ad.server == proxyServing
	ad.mu.Unlock()
	if !advertised {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, withdrawTimeout)
	defer cancel()
	if err := ad.write(ctx, proxyOff); err != nil {
		ad.log.Warn("cannot withdraw the ingress proxy's advertisement; the node leaves the Ingresses' status when it turns NotReady", "err", err)
	}
}

// write sets (proxyServing) or removes the annotation with a merge patch
// of the Node's metadata, which leaves every other field to its owners.
func (ad *ingressAdvert) write(ctx context.Context, st proxyState) error {
	var value any // null removes the key in a merge patch
	if st == proxyServing {
		value = ingressclass.ProxyServing
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{ingressclass.ProxyAnnotation: value}}})
	if err != nil {
		return err
	}
	var got v1.Node
	if err := ad.api.Patch(ctx, apiclient.Nodes, "", ad.node, "", types.MergePatchType, body, &got); err != nil {
		return fmt.Errorf("patch node %s annotation %s: %w", ad.node, ingressclass.ProxyAnnotation, err)
	}
	ad.observe(&got)
	if st == proxyServing {
		ad.log.Info("ingress proxy advertised on the node")
	} else {
		ad.log.Info("ingress proxy no longer advertised on the node")
	}
	return nil
}
