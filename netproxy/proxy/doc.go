// Package proxy is orch's service proxy: it turns Services and
// EndpointSlices into one nftables table ("ip orch") and keeps the kernel's
// copy of that table current.
//
// Build is a pure function from objects to a Ruleset (an intermediate
// representation that renders both as nft text and as netlink
// expressions); a Builder does the same but reuses the rules of Services
// whose objects did not change. Syncer batches changes and writes them in
// one netlink transaction: the whole table at first, then only the chains
// and set elements that changed (NFTables), and the whole table again if
// someone deletes it. After each write it deletes the UDP conntrack
// entries the change made stale (Conntrack).
//
// The layout follows kube-proxy's nftables mode, so people who know that
// read orch's rules at sight:
//
//	nat-prerouting / nat-output  → hostports, services
//	hostports: pods' hostPort mappings (hostports.go)
//	services: ip daddr . meta l4proto . th dport vmap @service-ips
//	          ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
//	svc-NS/NAME/PROTO/PORT       → dnat ip to numgen random mod N map { i : IP . PORT }
//	svl-…                        same, local endpoints only (traffic policy Local)
//	ext-…                        NodePort / external IP entry, masquerade, policy
//	fw-…                         LoadBalancer entry: loadBalancerSourceRanges
//	ep-…/IP:PORT                 session affinity only: the svc- chain goes
//	                             to the client's endpoint (@aff-…) or picks
//	                             one by numgen vmap; update @aff-…, dnat
//	filter-* chains              reject when a service has no endpoints,
//	                             drop for unallocated service IPs
//	nat-postrouting → masquerading: hairpin (ip saddr . ip daddr
//	                  @hairpin-endpoints) and packets marked 0x4000
//
// One deliberate difference: kube-proxy gives every endpoint a chain (for
// its hairpin rule) and jumps there through a numgen vmap. The kernel
// re-validates every chain reachable from the base chains on each
// transaction that adds a jump, so with 10,000 endpoints an endpoint
// change cost ~20 ms of validation. Here the service chain DNATs through
// a numgen map of addresses instead, and hairpin traffic (a pod DNATed to
// itself) is recognised after DNAT by one set lookup in postrouting; only
// Services with session affinity keep per-endpoint chains.
//
// The package owns only its table: it never reads or writes other tables,
// sysctls (route_localnet for NodePorts on 127.0.0.1 is the caller's job)
// or the API server.
package proxy
