package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/netproxy/dns"
	"github.com/orch-dev/orch/netproxy/keyed"
	"github.com/orch-dev/orch/netproxy/nftwatch"
	"github.com/orch-dev/orch/netproxy/podnet"
	"github.com/orch-dev/orch/netproxy/proxy"
)

var _ PodNetwork = (*podnet.Network)(nil)

// Resources the node's networking follows.
var (
	servicesResource       = apiclient.Resource{Version: "v1", Name: "services", Namespaced: true}
	endpointSlicesResource = apiclient.Resource{Group: "discovery.k8s.io", Version: "v1", Name: "endpointslices", Namespaced: true}
)

// The kube-dns Service the server creates; every node answers for it
// itself (node-local DNS).
const (
	dnsServiceNamespace = "kube-system"
	dnsServiceName      = "kube-dns"
	// localDNSSlice is the EndpointSlice this node feeds its own service
	// proxy (never the API) so that the kube-dns address is DNATed to the
	// DNS server on the bridge address.
	localDNSSlice = "kube-dns-node-local"
)

// startNetworking brings up the node's networking when Config.Network
// asks for it: it waits for the server to give the Node a podCIDR, makes
// the pod network, and starts the service proxy, the DNS server and the
// routes to other nodes on g. It runs before any pod worker, so every pod
// is wired to the network and points at the cluster DNS.
func (a *Agent) startNetworking(ctx context.Context, g *errgroup.Group) error {
	nc := a.cfg.Network
	if nc == nil || a.cfg.PodNetwork != nil {
		return nil
	}
	podCIDR, err := a.waitPodCIDR(ctx)
	if err != nil {
		return err
	}
	nodeIP, _ := netip.ParseAddr(a.hostIP)
	pn, err := podnet.New(podnet.Config{
		PodCIDR:     podCIDR,
		ClusterCIDR: nc.ClusterCIDR,
		Backend:     nc.Backend,
		NodeIP:      nodeIP,
		StateDir:    filepath.Join(a.dir, "podnet"),
		Logger:      a.log.With("component", "podnet"),
	})
	if err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	if err := pn.Init(ctx); err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	a.releaseGonePodAddresses(ctx, pn)
	// One subscription to the kernel's nftables events keeps the pod
	// masquerade, service and NetworkPolicy tables in place when someone
	// runs `nft flush ruleset`, with no periodic check on an idle node.
	tables := nftwatch.New(nftwatch.Options{Logger: a.log.With("component", "nftwatch")})
	g.Go(func() error { _ = tables.Run(ctx); return nil })
	g.Go(func() error { pn.KeepMasquerade(ctx, tables); return nil })
	a.net = pn

	dnsIP, err := dns.ClusterDNSIP(nc.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	if len(a.cfg.ClusterDNS) == 0 {
		a.cfg.ClusterDNS = []string{dnsIP.String()}
	}
	dnsServer := dns.New(dns.Config{Domain: a.cfg.ClusterDomain, Upstreams: hostUpstreams(a.hostResolvConf, dnsIP),
		Logger: a.log.With("component", "dns")})
	dnsAddr := netip.AddrPortFrom(pn.Gateway(), 53).String()
	pc, err := net.ListenPacket("udp4", dnsAddr)
	if err != nil {
		return fmt.Errorf("orch agent: cluster DNS: %w", err)
	}
	ln, err := net.Listen("tcp4", dnsAddr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("orch agent: cluster DNS: %w", err)
	}

	var nodeIPs []netip.Addr
	if nodeIP.IsValid() {
		nodeIPs = append(nodeIPs, nodeIP)
	}
	// The external address too, for when it is one of the node's own (a
	// second interface): hostPorts answer on every local address with
	// portmap, and the service LB advertises it.
	if ext, err := netip.ParseAddr(a.cfg.NodeExternalIP); err == nil {
		nodeIPs = append(nodeIPs, ext)
	}
	// NodePorts answer on 127.0.0.1 too, as kube-proxy's do; the kernel
	// routes DNATed loopback packets out only with route_localnet.
	localhostNodePorts := true
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/route_localnet", []byte("1"), 0o644); err != nil {
		a.log.Warn("NodePorts will not answer on 127.0.0.1", "err", err)
		localhostNodePorts = false
	}
	syncer := proxy.NewSyncer(proxy.Config{
		NodeName:           a.nodeName,
		LocalhostNodePorts: localhostNodePorts,
		NodeIPs:            nodeIPs,
		ClusterCIDRs:       []netip.Prefix{nc.ClusterCIDR},
		ServiceCIDRs:       []netip.Prefix{nc.ServiceCIDR},
	}, &proxy.NFTables{}, proxy.SyncerOptions{Conntrack: &proxy.Conntrack{}, Tables: tables})
	results := syncer.Results()
	a.net = hostPortNetwork{PodNetwork: pn, rules: syncer} // hostports.go
	a.restoreHostPorts(ctx, syncer)
	state := newServiceState(nodeLocalDNSSlice(a.nodeName, pn.Gateway()), a.withIngress(ctx, g, syncer), dnsServer)
	a.services.Store(state)
	routes := &routeState{net: pn, nodes: map[string]*v1.Node{}, log: a.log}

	a.log.Info("node networking started", "podCIDR", podCIDR, "clusterDNS", dnsIP, "dnsListen", dnsAddr)
	g.Go(func() error {
		if err := dnsServer.Serve(ctx, pc, ln); err != nil && ctx.Err() == nil {
			a.log.Error("cluster DNS server stopped", "err", err)
		}
		return nil
	})
	g.Go(func() error { _ = syncer.Run(ctx); return nil })
	a.startNetworkPolicies(ctx, g, dnsServer, tables) // see netpol.go
	g.Go(func() error { a.logSyncResults(ctx, results); return nil })
	// The node's own identity reads only what its pods need: services,
	// slices and the other nodes are read as kube-proxy, which nodes may
	// impersonate.
	proxyAPI := a.api.Impersonating(jointoken.ServiceProxyUser)
	g.Go(func() error {
		mirror(ctx, a.log, proxyAPI, servicesResource, state.serviceSink())
		return nil
	})
	g.Go(func() error {
		mirror(ctx, a.log, proxyAPI, endpointSlicesResource, state.sliceSink())
		return nil
	})
	g.Go(func() error {
		// The agent's own Node passes by too: observeNode (node.go) posts
		// the status when the server's view of it is not the agent's.
		mirror(ctx, a.log, proxyAPI, apiclient.Nodes, sink[v1.Node]{
			replace: func(ns []*v1.Node) {
				routes.replace(ns)
				for _, n := range ns {
					a.observeNode(n)
				}
			},
			update: func(n *v1.Node) { routes.update(n); a.observeNode(n) },
			remove: routes.remove,
		})
		pn.Close()
		return nil
	})
	return nil
}

// waitPodCIDR polls the Node until the server's IPAM controller has given
// it a podCIDR.
func (a *Agent) waitPodCIDR(ctx context.Context) (netip.Prefix, error) {
	logged := time.Time{}
	for {
		var node v1.Node
		err := a.api.Get(ctx, apiclient.Nodes, "", a.nodeName, &node)
		if err == nil && node.Spec.PodCIDR != "" {
			p, perr := netip.ParsePrefix(node.Spec.PodCIDR)
			if perr != nil {
				return netip.Prefix{}, fmt.Errorf("orch agent: node podCIDR %q: %w", node.Spec.PodCIDR, perr)
			}
			return p, nil
		}
		if a.now().Sub(logged) > 30*time.Second {
			a.log.Info("waiting for the server to assign this node a podCIDR", "err", err)
			logged = a.now()
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("orch agent: wait for podCIDR: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// releaseGonePodAddresses frees the addresses of pods deleted while the
// agent was down: their Teardown never ran.
func (a *Agent) releaseGonePodAddresses(ctx context.Context, pn *podnet.Network) {
	var list v1.PodList
	if err := a.api.List(ctx, apiclient.Pods, "", apiclient.ListOptions{FieldSelector: "spec.nodeName=" + a.nodeName}, &list); err != nil {
		a.log.Warn("cannot list pods to release stale pod addresses", "err", err)
		return
	}
	live := make(map[string]bool, len(list.Items))
	for _, p := range list.Items {
		live[string(p.UID)] = true
	}
	if gone := pn.ReleaseUnknown(live); len(gone) > 0 {
		a.log.Info("released addresses of pods deleted while the agent was down", "pods", gone)
	}
}

func (a *Agent) logSyncResults(ctx context.Context, results <-chan proxy.SyncResult) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			if r.Err != nil {
				a.log.Error("cannot write service rules", "err", r.Err)
				continue
			}
			if r.CleanupErr != nil {
				a.log.Warn("cannot delete stale UDP conntrack entries", "err", r.CleanupErr)
			}
			a.log.Debug("service rules written", "services", r.Services, "chains", r.Chains, "took", r.Duration, "staleFlowsDeleted", r.StaleFlows)
		}
	}
}

// hostUpstreams are the node's own resolvers, for names outside the
// cluster. The cluster DNS address itself is left out (a node whose
// resolv.conf points at it would forward to itself).
func hostUpstreams(path string, clusterDNS netip.Addr) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	rc, err := dns.ParseResolvConf(f)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range rc.Nameservers {
		if ip, err := netip.ParseAddr(s); err == nil && ip != clusterDNS {
			out = append(out, netip.AddrPortFrom(ip, 53).String())
		}
	}
	return out
}

// nodeLocalDNSSlice points kube-dns at this node's DNS server.
func nodeLocalDNSSlice(nodeName string, addr netip.Addr) *discoveryv1.EndpointSlice {
	ready := true
	udp, tcp := v1.ProtocolUDP, v1.ProtocolTCP
	dnsName, dnsTCPName := "dns", "dns-tcp"
	port := int32(53)
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: dnsServiceNamespace, Name: localDNSSlice,
			Labels: map[string]string{discoveryv1.LabelServiceName: dnsServiceName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   &nodeName,
		}},
		Ports: []discoveryv1.EndpointPort{
			{Name: &dnsName, Protocol: &udp, Port: &port},
			{Name: &dnsTCPName, Protocol: &tcp, Port: &port},
		},
	}
}

// serviceState is the node's picture of Services and EndpointSlices. It
// hands the full picture to the proxy and the DNS server only once both
// kinds have been listed, so a restarting agent never writes rules from
// Services without their endpoints (which would refuse connections).
type serviceState struct {
	mu       sync.Mutex
	services keyed.Map[*v1.Service]
	slices   keyed.Map[*discoveryv1.EndpointSlice]
	localDNS *discoveryv1.EndpointSlice

	proxy proxyRules
	dns   dnsRecords
}

func newServiceState(localDNS *discoveryv1.EndpointSlice, proxy proxyRules, dns dnsRecords) *serviceState {
	return &serviceState{localDNS: localDNS, proxy: proxy, dns: dns}
}

// proxyRules is what serviceState needs of the service proxy
// (*proxy.Syncer).
type proxyRules interface {
	Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice)
}

// dnsRecords is what serviceState needs of the DNS server (*dns.Server).
type dnsRecords interface {
	Replace(services []*v1.Service, slices []*discoveryv1.EndpointSlice)
}

// pushLocked gives the proxy and DNS the current picture; both only mark
// themselves dirty and rebuild in their own time.
func (s *serviceState) pushLocked() {
	if !s.services.Listed() || !s.slices.Listed() {
		return
	}
	svcs := s.services.Values(0)
	sls := s.slices.Values(1) // room for localDNS
	s.dns.Replace(svcs, sls)
	s.proxy.Replace(svcs, append(sls, s.localDNS))
}

// serviceSink and sliceSink feed the state from mirror.
func (s *serviceState) serviceSink() sink[v1.Service] { return sinkInto(s, &s.services) }

func (s *serviceState) sliceSink() sink[discoveryv1.EndpointSlice] { return sinkInto(s, &s.slices) }

// sinkInto returns a sink that keeps objs current under s.mu and hands
// the new picture on after every change.
func sinkInto[T any, PT objectPtr[T]](s *serviceState, objs *keyed.Map[PT]) sink[T] {
	return keyedSink[T](func(change func()) {
		s.mu.Lock()
		defer s.mu.Unlock()
		change()
		s.pushLocked()
	}, objs)
}

// routeState keeps the routes to other nodes' pod subnets current.
type routeState struct {
	net *podnet.Network
	log *slog.Logger

	mu      sync.Mutex
	nodes   map[string]*v1.Node
	lastErr string
}

func (r *routeState) replace(items []*v1.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.nodes)
	for _, n := range items {
		r.nodes[n.Name] = n
	}
	r.syncLocked()
}

func (r *routeState) update(n *v1.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.nodes[n.Name]
	r.nodes[n.Name] = n
	if old != nil && old.Spec.PodCIDR == n.Spec.PodCIDR && slices.Equal(old.Status.Addresses, n.Status.Addresses) {
		return // a heartbeat: nothing routing cares about
	}
	r.syncLocked()
}

func (r *routeState) remove(n *v1.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.nodes, n.Name)
	r.syncLocked()
}

func (r *routeState) syncLocked() {
	peers := make([]podnet.Peer, 0, len(r.nodes))
	for _, n := range r.nodes {
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != v1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				peers = append(peers, podnet.Peer{Name: n.Name, PodCIDR: cidr, NodeIP: ip})
				break
			}
		}
	}
	err := r.net.SyncRoutes(peers)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != "" && msg != r.lastErr {
		r.log.Warn("cannot route to every node's pods", "err", err)
	}
	r.lastErr = msg
}

// sink receives one resource's objects from mirror.
type sink[T any] struct {
	replace func([]*T)
	update  func(*T)
	remove  func(*T)
}

// objectPtr is a pointer to an API object type, e.g. *v1.Service.
type objectPtr[T any] interface {
	*T
	metav1.Object
}

// mirror keeps s current with every object of res: a list (replace),
// then a watch (update/remove) from the list's resourceVersion, listing
// again when the watch falls out of the server's history.
func mirror[T any, PT objectPtr[T]](ctx context.Context, log *slog.Logger, api *apiclient.Client, res apiclient.Resource, s sink[T]) {
	for ctx.Err() == nil {
		var list struct {
			Metadata metav1.ListMeta `json:"metadata"`
			Items    []T             `json:"items"`
		}
		if err := api.List(ctx, res, "", apiclient.ListOptions{}, &list); err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot list", "resource", res.Name, "err", err)
				sleepCtx(ctx, 2*time.Second)
			}
			continue
		}
		items := make([]*T, len(list.Items))
		for i := range list.Items {
			items[i] = &list.Items[i]
		}
		s.replace(items)
		watchFrom[T, PT](ctx, log, api, res, list.Metadata.ResourceVersion, s)
	}
}

// watchFrom follows res from rv until the watch can no longer resume.
func watchFrom[T any, PT objectPtr[T]](ctx context.Context, log *slog.Logger, api *apiclient.Client, res apiclient.Resource, rv string, s sink[T]) {
	for ctx.Err() == nil {
		w, err := api.Watch(ctx, res, "", apiclient.ListOptions{ResourceVersion: rv, TimeoutSeconds: 300})
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot watch", "resource", res.Name, "err", err)
				sleepCtx(ctx, time.Second)
			}
			return
		}
		for {
			ev, err := w.Next()
			if err != nil {
				w.Close()
				if errors.Is(err, io.EOF) && ctx.Err() == nil {
					break // the server ended the watch: resume from rv
				}
				if ctx.Err() == nil && !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
					log.Warn("watch failed; listing again", "resource", res.Name, "err", err)
				}
				return
			}
			obj := new(T)
			if err := json.Unmarshal(ev.Object, obj); err != nil {
				log.Warn("undecodable object in watch", "resource", res.Name, "err", err)
				continue
			}
			if v := PT(obj).GetResourceVersion(); v != "" {
				rv = v
			}
			switch ev.Type {
			case "ADDED", "MODIFIED":
				s.update(obj)
			case "DELETED":
				s.remove(obj)
			}
		}
	}
}
