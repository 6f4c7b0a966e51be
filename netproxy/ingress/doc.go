// Package ingress is orch's built-in ingress controller: an HTTP and
// HTTPS reverse proxy that every agent runs on its node's ports 80 and
// 443, serving the Ingresses of IngressClass "orch" (controller
// orch.dev/ingress) and those that name no class, as k3s' Traefik does.
//
// Build turns the cluster objects an agent mirrors (Ingresses,
// IngressClasses, Services, EndpointSlices, TLS Secrets) into a Config:
// a routing Table of hosts and paths to resolved endpoint addresses, and
// the certificates to answer TLS handshakes with, by SNI. Build is pure;
// a Proxy serves one Config at a time and swaps in the next atomically,
// so requests in flight finish on the Config they started with and no
// connection is dropped by an update.
//
// Matching follows the Ingress API and what ingress-nginx and Traefik
// users rely on:
//
//   - hosts: an exact host before a wildcard ("*.foo.com" matches exactly
//     one more label), before rules without a host; a host whose paths
//     do not match falls through to the less specific ones;
//   - paths: the longest match wins, Exact before Prefix at equal
//     length; Prefix matches whole path elements ("/foo" matches
//     "/foo/bar", not "/foobar"); ImplementationSpecific is Prefix;
//   - ties between Ingresses: the oldest Ingress wins;
//   - nothing matched: the oldest spec.defaultBackend, else 404; a
//     backend without ready endpoints answers 503.
//
// Requests go to a backend's ready endpoints in turn; when dialing one
// fails the next is tried (nothing has been sent yet), and the failed
// one is tried last for a while (a passive health check). All endpoints
// failing answers 502.
//
// The package does no API access and opens no listener itself; the
// agent feeds it objects and hands it its listeners (agent/ingress.go).
package ingress
