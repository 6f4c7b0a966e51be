// Package netpol enforces networking.k8s.io/v1 NetworkPolicies for the
// pods of one node in an nftables table of its own, "ip orch-netpol",
// beside the service proxy's "ip orch" and the pod network's
// "ip orch-podnet" (it reuses netproxy/proxy's rule representation and
// writer, and never touches those tables).
//
// Where it filters: in the forward hook. Pods hang on the bridge orch0,
// and packets between two pods of the node are bridged, not routed; the
// pod network sets bridge-nf-call-iptables=1 (netproxy/podnet), which
// makes bridged IPv4 packets traverse the ip family's prerouting, forward
// and postrouting hooks as well, so one forward chain sees pod-to-pod
// traffic on the node, traffic to and from other nodes' pods (routed
// through orch0) and traffic to and from outside the cluster. Forward
// runs after the service proxy's DNAT (prerouting), so policies see the
// endpoint pod a Service picked, as in Kubernetes. Packets the node sends
// itself (kubelet probes, the node's DNS answers) and packets to the node
// never pass forward: traffic between a pod and its own node is always
// allowed, as Kubernetes requires for probes.
//
// The table, as Build makes it:
//
//	forward (filter hook forward priority 0)
//	    ct state established,related accept     replies of allowed connections
//	    ip saddr vmap @egress-pods              policied source pod → jump egress-NS/POD
//	    ip daddr vmap @ingress-pods             policied destination pod → goto ingress-NS/POD
//	egress-NS/POD    the pod's own address (a pod cannot block itself, e.g.
//	                 through its own Service), then one rule per allowed
//	                 (peer, port) of the policies selecting the pod for
//	                 Egress, verdict return (go on to the destination's
//	                 ingress check); then drop
//	ingress-NS/POD   the same for Ingress, verdict accept; then drop
//	NS/POLICY/ingress/I, NS/POLICY/egress/I
//	                 the IPs of the pods the selector peers of rule I select
//	                 (shared by every pod the policy selects, so a pod
//	                 coming or going changes set elements only)
//	NS/POLICY/egress/I/named
//	                 ip . proto . port : return, for egress rules with
//	                 named ports, which resolve on each destination pod
//
// A pod selected by no policy of a direction has no entry in that
// direction's map and is not filtered. Named ports of ingress rules
// resolve on the selected pod's own container ports.
//
// The package owns only its table and never talks to the API server: the
// agent feeds a Syncer with NetworkPolicies, Pods and Namespaces.
package netpol
