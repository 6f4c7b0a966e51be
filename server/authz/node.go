package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/join"
)

// PodLister reads pods from a cache; informer.Lister[*corev1.Pod] is one.
type PodLister interface {
	Get(namespace, name string) (*corev1.Pod, bool)
	List(namespace string, sel labels.Selector) []*corev1.Pod
}

// ClaimLister reads PersistentVolumeClaims from a cache;
// informer.Lister[*corev1.PersistentVolumeClaim] is one.
type ClaimLister interface {
	Get(namespace, name string) (*corev1.PersistentVolumeClaim, bool)
}

// Node authorizes what nodes (user system:node:NAME in group
// system:nodes) may do, as Kubernetes' node authorizer plus the checks of
// its NodeRestriction admission plugin that need no request body: a node
// reads and writes its own Node and Lease, the pods bound to it and their
// status, reads the secrets, config maps, claims and service accounts
// those pods reference (and the volumes bound to those claims), asks for
// their service account tokens, and writes
// events. Read access to cluster-wide, non-secret objects the agent's
// network proxy needs (services, endpoints, nodes) is granted by the
// bootstrap RBAC policy instead. Requests from other users, and node
// requests it does not allow, get no opinion, with a reason.
type Node struct {
	pods   PodLister
	claims ClaimLister
}

// NewNode returns the node authorizer reading bound pods from pods and
// their claims from claims.
func NewNode(pods PodLister, claims ClaimLister) *Node { return &Node{pods: pods, claims: claims} }

// NodeName returns the node a user is, if it is one.
func NodeName(u apiserver.UserInfo) (string, bool) {
	name, ok := strings.CutPrefix(u.Name, join.NodeUserPrefix)
	if !ok || !slices.Contains(u.Groups, join.NodesGroup) {
		return "", false
	}
	return name, true
}

// Authorize decides node requests.
func (n *Node) Authorize(_ context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
	node, ok := NodeName(a.User)
	if !ok {
		return apiserver.DecisionNoOpinion, "", nil
	}
	if node == "" {
		return apiserver.DecisionNoOpinion, fmt.Sprintf("unknown node for user %q", a.User.Name), nil
	}
	if !a.ResourceRequest {
		return apiserver.DecisionNoOpinion, "", nil
	}
	switch a.APIGroup + "/" + a.Resource {
	case "/nodes":
		return n.authorizeNode(node, a)
	case "coordination.k8s.io/leases":
		return n.authorizeLease(node, a)
	case "/pods":
		return n.authorizePod(node, a)
	case "/secrets", "/configmaps", "/persistentvolumeclaims":
		return n.authorizeReferenced(node, a)
	case "/persistentvolumes":
		return n.authorizeVolume(node, a)
	case "/serviceaccounts":
		return n.authorizeServiceAccount(node, a)
	case "/events", "events.k8s.io/events":
		switch a.Verb {
		case "create", "update", "patch":
			if a.Subresource == "" {
				return apiserver.DecisionAllow, "", nil
			}
		}
		return apiserver.DecisionNoOpinion, "can only create, update or patch events", nil
	}
	return apiserver.DecisionNoOpinion, "", nil
}

func allow() (apiserver.Decision, string, error) { return apiserver.DecisionAllow, "", nil }

func noOpinion(reason string) (apiserver.Decision, string, error) {
	return apiserver.DecisionNoOpinion, reason, nil
}

// authorizeNode: a node registers itself (the name of a create is in the
// body, which only admission could check) and reads and updates its own
// Node object and status; reading other nodes is up to RBAC.
func (n *Node) authorizeNode(node string, a apiserver.Attributes) (apiserver.Decision, string, error) {
	switch {
	case a.Verb == "create" && a.Subresource == "":
		return allow()
	case a.Name != node:
		return noOpinion("can only access the node object with the same name as the requesting node")
	case a.Subresource == "" && slices.Contains([]string{"get", "list", "watch", "update", "patch"}, a.Verb):
		return allow()
	case a.Subresource == "status" && slices.Contains([]string{"get", "update", "patch"}, a.Verb):
		return allow()
	}
	return noOpinion("can only get, list, watch, update or patch its own node and its status")
}

// nodeLeaseNamespace holds the nodes' heartbeat leases.
const nodeLeaseNamespace = corev1.NamespaceNodeLease

func (n *Node) authorizeLease(node string, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if !slices.Contains([]string{"get", "create", "update", "patch", "delete"}, a.Verb) || a.Subresource != "" {
		return noOpinion("can only get, create, update, patch, or delete a node lease")
	}
	if a.Namespace != nodeLeaseNamespace {
		return noOpinion(fmt.Sprintf("can only access leases in the %q system namespace", nodeLeaseNamespace))
	}
	// The name of a create is in the body.
	if a.Verb != "create" && a.Name != node {
		return noOpinion("can only access node lease with the same name as the requesting node")
	}
	return allow()
}

// authorizePod: list and watch only with the spec.nodeName=NODE field
// selector (how agents watch their pods); get, delete and status writes
// only of pods bound to the node; create (of mirror pods only, see
// admitMirrorPod).
func (n *Node) authorizePod(node string, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if (a.Verb == "list" || a.Verb == "watch") && a.Subresource == "" {
		for _, req := range a.FieldSelector {
			if req.Field == "spec.nodeName" && (req.Operator == selection.Equals || req.Operator == selection.DoubleEquals) && req.Value == node {
				return allow()
			}
		}
		if a.Name == "" {
			return noOpinion("can only list/watch pods with spec.nodeName field selector")
		}
	}
	switch {
	case a.Verb == "create" && a.Subresource == "":
		// Mirror pods of the node's static pods; the pod is in the body,
		// so NodeRestriction (AttachNodeRestriction) checks it.
		return allow()
	case a.Subresource == "" && slices.Contains([]string{"get", "list", "watch", "delete"}, a.Verb):
	case a.Subresource == "status" && slices.Contains([]string{"get", "update", "patch"}, a.Verb):
	default:
		return noOpinion("can only read and delete pods bound to the node and update their status")
	}
	if a.Name == "" || a.Namespace == "" {
		return noOpinion("No Object name found")
	}
	if pod, ok := n.pods.Get(a.Namespace, a.Name); ok && pod.Spec.NodeName == node {
		return allow()
	}
	return noRelationship(node)
}

// authorizeReferenced: secrets, config maps and claims may be read one by
// one when a pod bound to the node references them.
func (n *Node) authorizeReferenced(node string, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if !slices.Contains([]string{"get", "list", "watch"}, a.Verb) {
		return noOpinion("can only read resources of this type")
	}
	if a.Subresource != "" {
		return noOpinion("cannot read subresource")
	}
	if a.Namespace == "" {
		return noOpinion("can only read namespaced object of this type")
	}
	if a.Name == "" {
		return noOpinion("No Object name found")
	}
	kind := map[string]refKind{"secrets": refSecret, "configmaps": refConfigMap, "persistentvolumeclaims": refClaim}[a.Resource]
	if n.referenced(node, a.Namespace, kind, a.Name) {
		return allow()
	}
	return noRelationship(node)
}

// authorizeVolume: a node gets the persistent volumes bound to the claims
// of its pods.
func (n *Node) authorizeVolume(node string, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if a.Verb != "get" || a.Subresource != "" {
		return noOpinion("can only get individual resources of this type")
	}
	if a.Name == "" {
		return noOpinion("No Object name found")
	}
	for _, pod := range n.pods.List("", nil) {
		if pod.Spec.NodeName != node {
			continue
		}
		found := false
		visitPodReferences(pod, func(k refKind, ref string) bool {
			if k == refClaim {
				if claim, ok := n.claims.Get(pod.Namespace, ref); ok && claim.Spec.VolumeName == a.Name {
					found = true
				}
			}
			return !found
		})
		if found {
			return allow()
		}
	}
	return noRelationship(node)
}

// authorizeServiceAccount: a node reads the service accounts of its pods
// and creates their tokens (serviceaccounts/token), nothing else.
func (n *Node) authorizeServiceAccount(node string, a apiserver.Attributes) (apiserver.Decision, string, error) {
	switch {
	case a.Subresource == "token" && a.Verb == "create":
	case a.Subresource == "" && a.Verb == "get":
	case a.Subresource == "" || a.Subresource == "token":
		return noOpinion("can only create tokens for individual service accounts")
	default:
		return noOpinion("can only create token subresource of serviceaccount")
	}
	if a.Name == "" || a.Namespace == "" {
		return noOpinion("can only create tokens for individual service accounts")
	}
	if n.referenced(node, a.Namespace, refServiceAccount, a.Name) {
		return allow()
	}
	return noRelationship(node)
}

// referenced reports whether a pod bound to node in namespace references
// the object (kind, name).
func (n *Node) referenced(node, namespace string, kind refKind, name string) bool {
	for _, pod := range n.pods.List(namespace, nil) {
		if pod.Spec.NodeName != node {
			continue
		}
		found := false
		visitPodReferences(pod, func(k refKind, ref string) bool {
			found = k == kind && ref == name
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

func noRelationship(node string) (apiserver.Decision, string, error) {
	return noOpinion(fmt.Sprintf("no relationship found between node '%s' and this object", node))
}
