package agent

import (
	"context"

	"golang.org/x/sync/errgroup"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/netproxy/dns"
	"github.com/orch-dev/orch/netproxy/netpol"
	"github.com/orch-dev/orch/netproxy/proxy"
)

// Resources NetworkPolicy enforcement follows besides Pods: policies
// select pods by their labels and their namespaces' labels.
var (
	networkPoliciesResource = apiclient.Resource{Group: "networking.k8s.io", Version: "v1", Name: "networkpolicies", Namespaced: true}
	namespacesResource      = apiclient.Resource{Version: "v1", Name: "namespaces"}
)

// startNetworkPolicies enforces NetworkPolicies for this node's pods: it
// mirrors every NetworkPolicy, Pod (peers live on all nodes) and
// Namespace into a netpol.Syncer, which keeps the "ip orch-netpol" table
// current (written again when tables reports that another program changed
// it). It runs beside the service proxy once the pod network is up.
// The cluster DNS gets the namespaces too (pod names and "ns.svc" answer
// only for namespaces that exist), so they are watched once.
func (a *Agent) startNetworkPolicies(ctx context.Context, g *errgroup.Group, dnsServer *dns.Server, tables proxy.TableWatcher) {
	// The node's own identity reads only its pods: the policy mirrors
	// act as the user nodes may impersonate for this.
	api := a.api.Impersonating(jointoken.NetworkPolicyUser)
	syncer := netpol.NewSyncer(netpol.Config{NodeName: a.nodeName}, &proxy.NFTables{}, netpol.SyncerOptions{Tables: tables})
	results := syncer.Results()
	g.Go(func() error { _ = syncer.Run(ctx); return nil })
	g.Go(func() error { a.logPolicyResults(ctx, results); return nil })
	g.Go(func() error {
		mirror(ctx, a.log, api, networkPoliciesResource, sink[networkingv1.NetworkPolicy]{
			replace: syncer.ReplacePolicies,
			update:  syncer.UpdatePolicy,
			remove:  func(np *networkingv1.NetworkPolicy) { syncer.DeletePolicy(np.Namespace, np.Name) },
		})
		return nil
	})
	g.Go(func() error {
		mirror(ctx, a.log, api, apiclient.Pods, sink[v1.Pod]{
			replace: syncer.ReplacePods,
			update:  syncer.UpdatePod,
			remove:  func(p *v1.Pod) { syncer.DeletePod(p.Namespace, p.Name) },
		})
		return nil
	})
	g.Go(func() error {
		mirror(ctx, a.log, api, namespacesResource, sink[v1.Namespace]{
			replace: func(nss []*v1.Namespace) { syncer.ReplaceNamespaces(nss); dnsServer.ReplaceNamespaces(nss) },
			update:  func(ns *v1.Namespace) { syncer.UpdateNamespace(ns); dnsServer.UpdateNamespace(ns) },
			remove:  func(ns *v1.Namespace) { syncer.DeleteNamespace(ns.Name); dnsServer.DeleteNamespace(ns.Name) },
		})
		return nil
	})
}

// logPolicyResults logs failed writes and policies the rules had to
// leave out; a warning is logged once until it changes.
func (a *Agent) logPolicyResults(ctx context.Context, results <-chan netpol.SyncResult) {
	warned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			if r.Err != nil {
				a.log.Error("cannot write network policy rules", "err", r.Err)
				continue
			}
			now := make(map[string]bool, len(r.Warnings))
			for _, w := range r.Warnings {
				msg := w.Namespace + "/" + w.Name + ": " + w.Err.Error()
				now[msg] = true
				if !warned[msg] {
					a.log.Warn("network policy not fully enforced", "policy", w.Namespace+"/"+w.Name, "err", w.Err)
				}
			}
			warned = now
			a.log.Debug("network policy rules written", "policies", r.Policies, "podChains", r.PodChains, "took", r.Duration)
		}
	}
}
