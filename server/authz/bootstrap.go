package authz

import (
	"context"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/auth"
	"github.com/orch-dev/orch/server/join"
)

// The bootstrap policy follows kube-apiserver's
// (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), trimmed to the
// resources orch serves, plus the bindings an orch agent needs because its
// network proxy and DNS run in the agent process.

// Client is the in-process API the policy is written through;
// *apiserver.Local is one.
type Client interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// fieldManager names orch's policy writes in managedFields.
const fieldManager = "orch-rbac-bootstrap"

// Labels and annotations of the bootstrap policy.
const (
	bootstrappingLabel = "kubernetes.io/bootstrapping"
	autoUpdateKey      = "rbac.authorization.kubernetes.io/autoupdate"
	aggregateToAdmin   = "rbac.authorization.k8s.io/aggregate-to-admin"
	aggregateToEdit    = "rbac.authorization.k8s.io/aggregate-to-edit"
	aggregateToView    = "rbac.authorization.k8s.io/aggregate-to-view"
)

var (
	clusterRolesGVR        = rbacv1.SchemeGroupVersion.WithResource("clusterroles")
	clusterRoleBindingsGVR = rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings")

	readVerbs      = []string{"get", "list", "watch"}
	writeVerbs     = []string{"create", "delete", "deletecollection", "patch", "update"}
	readWriteVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)

// rule builds a resource rule.
func rule(verbs []string, groups []string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: groups, Resources: resources}
}

// urlRule builds a non-resource rule.
func urlRule(verbs []string, urls ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, NonResourceURLs: urls}
}

func groups(g ...string) []string { return g }

var core = groups("")

// BootstrapClusterRoles are the ClusterRoles every cluster starts with.
func BootstrapClusterRoles() []rbacv1.ClusterRole {
	eventsRule := []rbacv1.PolicyRule{
		rule([]string{"create", "update", "patch"}, groups("", "events.k8s.io"), "events"),
	}
	roles := []rbacv1.ClusterRole{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-admin"},
			Rules: []rbacv1.PolicyRule{
				rule([]string{"*"}, groups("*"), "*"),
				urlRule([]string{"*"}, "*"),
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:discovery"},
			Rules: []rbacv1.PolicyRule{urlRule([]string{"get"},
				"/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/")},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:public-info-viewer"},
			Rules:      []rbacv1.PolicyRule{urlRule([]string{"get"}, "/healthz", "/livez", "/readyz", "/version", "/version/")},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:basic-user"},
			Rules: []rbacv1.PolicyRule{
				rule([]string{"create"}, groups("authorization.k8s.io"), "selfsubjectaccessreviews", "selfsubjectrulesreviews"),
				rule([]string{"create"}, groups("authentication.k8s.io"), "selfsubjectreviews"),
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:monitoring"},
			Rules: []rbacv1.PolicyRule{urlRule([]string{"get"},
				"/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*")},
		},
		// The user-facing roles are aggregated from the system:aggregate-to-*
		// roles, so that extensions can add to them by label.
		{
			ObjectMeta: metav1.ObjectMeta{Name: "admin"},
			AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{
				{MatchLabels: map[string]string{aggregateToAdmin: "true"}},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "edit", Labels: map[string]string{aggregateToAdmin: "true"}},
			AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{
				{MatchLabels: map[string]string{aggregateToEdit: "true"}},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "view", Labels: map[string]string{aggregateToEdit: "true"}},
			AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{
				{MatchLabels: map[string]string{aggregateToView: "true"}},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:aggregate-to-admin", Labels: map[string]string{aggregateToAdmin: "true"}},
			Rules: []rbacv1.PolicyRule{
				rule([]string{"create"}, groups("authorization.k8s.io"), "localsubjectaccessreviews"),
				rule(readWriteVerbs, groups("rbac.authorization.k8s.io"), "rolebindings", "roles"),
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:aggregate-to-edit", Labels: map[string]string{aggregateToEdit: "true"}},
			Rules: []rbacv1.PolicyRule{
				rule(readVerbs, core, "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"),
				rule([]string{"impersonate"}, core, "serviceaccounts"),
				rule(writeVerbs, core, "pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"),
				rule([]string{"create"}, core, "pods/eviction"),
				rule(writeVerbs, core, "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
					"replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"),
				rule([]string{"create"}, core, "serviceaccounts/token"),
				rule(writeVerbs, groups("apps"), "daemonsets", "deployments", "deployments/rollback", "deployments/scale",
					"replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"),
				rule(writeVerbs, groups("autoscaling"), "horizontalpodautoscalers"),
				rule(writeVerbs, groups("batch"), "cronjobs", "jobs"),
				rule(writeVerbs, groups("policy"), "poddisruptionbudgets"),
				rule(writeVerbs, groups("networking.k8s.io"), "ingresses", "networkpolicies"),
			},
		},
		// metrics-server's role: `kubectl top` for whoever may view, edit
		// or administer (orch serves metrics.k8s.io itself).
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:aggregated-metrics-reader", Labels: map[string]string{
				aggregateToView: "true", aggregateToEdit: "true", aggregateToAdmin: "true"}},
			Rules: []rbacv1.PolicyRule{rule(readVerbs, groups("metrics.k8s.io"), "pods", "nodes")},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:aggregate-to-view", Labels: map[string]string{aggregateToView: "true"}},
			Rules: []rbacv1.PolicyRule{
				rule(readVerbs, core, "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
					"replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status"),
				rule(readVerbs, core, "bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
					"replicationcontrollers/status", "resourcequotas", "resourcequotas/status"),
				rule(readVerbs, core, "namespaces"),
				rule(readVerbs, groups("discovery.k8s.io"), "endpointslices"),
				rule(readVerbs, groups("apps"), "controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
					"deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
					"statefulsets", "statefulsets/scale", "statefulsets/status"),
				rule(readVerbs, groups("autoscaling"), "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
				rule(readVerbs, groups("batch"), "cronjobs", "cronjobs/status", "jobs", "jobs/status"),
				rule(readVerbs, groups("policy"), "poddisruptionbudgets", "poddisruptionbudgets/status"),
				rule(readVerbs, groups("networking.k8s.io"), "ingresses", "ingresses/status", "networkpolicies"),
				rule(readVerbs, groups("metrics.k8s.io"), "pods", "nodes"),
			},
		},
		// What a node may do is decided by the node authorizer; the role
		// exists, unbound, as in Kubernetes.
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:node"},
			Rules: append([]rbacv1.PolicyRule{
				rule([]string{"create"}, groups("authentication.k8s.io"), "tokenreviews"),
				rule([]string{"create"}, groups("authorization.k8s.io"), "localsubjectaccessreviews", "subjectaccessreviews"),
				rule(readVerbs, core, "services"),
				rule([]string{"create", "get", "list", "watch"}, core, "nodes"),
				rule([]string{"patch", "update"}, core, "nodes/status"),
				rule([]string{"patch", "update"}, core, "nodes"),
				rule(readVerbs, core, "pods"),
				rule([]string{"create", "delete"}, core, "pods"),
				rule([]string{"patch", "update"}, core, "pods/status"),
				rule([]string{"create"}, core, "pods/eviction"),
				rule([]string{"get", "list", "watch"}, core, "configmaps", "secrets"),
				rule([]string{"get"}, core, "persistentvolumeclaims", "persistentvolumes"),
				rule([]string{"get", "update", "patch"}, core, "persistentvolumeclaims/status"),
				rule([]string{"create"}, core, "serviceaccounts/token"),
				rule([]string{"create", "delete", "get", "patch", "update"}, groups("coordination.k8s.io"), "leases"),
			}, eventsRule...),
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:node-proxier"},
			Rules: append([]rbacv1.PolicyRule{
				rule([]string{"list", "watch"}, core, "endpoints", "services"),
				rule(readVerbs, core, "nodes"),
				rule([]string{"list", "watch"}, groups("discovery.k8s.io"), "endpointslices"),
			}, eventsRule...),
		},
		// What an agent's NetworkPolicy enforcement reads, as k3s grants
		// its agents for kube-router: policies select pods of every node
		// by their labels and their namespaces' labels. It is bound to
		// join.NetworkPolicyUser, which nodes may impersonate.
		{
			ObjectMeta: metav1.ObjectMeta{Name: "orch:network-policy"},
			Rules: []rbacv1.PolicyRule{
				rule([]string{"list", "watch"}, core, "pods", "namespaces"),
				rule([]string{"list", "watch"}, groups("networking.k8s.io"), "networkpolicies"),
			},
		},
		// What an agent's ingress proxy reads, as k3s grants Traefik:
		// Ingresses and their classes, the Services and EndpointSlices
		// they route to, cluster-wide. The TLS Secrets Ingresses name it
		// gets one by one, through IngressTLS, not RBAC. It is bound to
		// jointoken.IngressUser, which nodes may impersonate.
		{
			ObjectMeta: metav1.ObjectMeta{Name: "orch:ingress"},
			Rules: []rbacv1.PolicyRule{
				rule(readVerbs, core, "services"),
				rule(readVerbs, groups("discovery.k8s.io"), "endpointslices"),
				rule(readVerbs, groups("networking.k8s.io"), "ingresses", "ingressclasses"),
			},
		},
		// The users an agent's cluster-wide readers act as: a node's own
		// identity reads only what its pods need.
		{
			ObjectMeta: metav1.ObjectMeta{Name: "orch:node-impersonator"},
			Rules: []rbacv1.PolicyRule{{
				Verbs: []string{"impersonate"}, APIGroups: core, Resources: []string{"users"},
				ResourceNames: []string{join.ServiceProxyUser, join.NetworkPolicyUser, jointoken.IngressUser},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:node-bootstrapper"},
			Rules: []rbacv1.PolicyRule{
				rule([]string{"create", "get", "list", "watch"}, groups("certificates.k8s.io"), "certificatesigningrequests"),
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "system:auth-delegator"},
			Rules: []rbacv1.PolicyRule{
				rule([]string{"create"}, groups("authentication.k8s.io"), "tokenreviews"),
				rule([]string{"create"}, groups("authorization.k8s.io"), "subjectaccessreviews"),
			},
		},
	}
	for i := range roles {
		setBootstrapMeta(&roles[i].ObjectMeta)
	}
	return roles
}

// BootstrapClusterRoleBindings bind the bootstrap roles.
func BootstrapClusterRoleBindings() []rbacv1.ClusterRoleBinding {
	bindings := []rbacv1.ClusterRoleBinding{
		binding("cluster-admin", "cluster-admin", group(auth.MastersGroup)),
		binding("system:discovery", "system:discovery", group(auth.AuthenticatedGroup)),
		binding("system:basic-user", "system:basic-user", group(auth.AuthenticatedGroup)),
		binding("system:public-info-viewer", "system:public-info-viewer", group(auth.AuthenticatedGroup), group("system:unauthenticated")),
		binding("system:monitoring", "system:monitoring", group("system:monitoring")),
		binding("system:node-proxier", "system:node-proxier", userSubject(join.ServiceProxyUser)),
		binding("orch:network-policy", "orch:network-policy", userSubject(join.NetworkPolicyUser)),
		binding("orch:ingress", "orch:ingress", userSubject(jointoken.IngressUser)),
		// orch agents run the service proxy, DNS, NetworkPolicy
		// enforcement and the ingress proxy in-process, acting as the
		// three users above.
		binding("orch:node-impersonator", "orch:node-impersonator", group(join.NodesGroup)),
		// Holders of the join secret ask for their node certificate.
		binding("orch:node-bootstrapper", "system:node-bootstrapper", group(auth.BootstrapGroup)),
	}
	for i := range bindings {
		setBootstrapMeta(&bindings[i].ObjectMeta)
	}
	return bindings
}

func userSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

func group(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

func binding(name, role string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
	return rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

func setBootstrapMeta(m *metav1.ObjectMeta) {
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[bootstrappingLabel] = "rbac-defaults"
	m.Annotations = map[string]string{autoUpdateKey: "true"}
}

// EnsureBootstrapPolicy creates the bootstrap ClusterRoles and
// ClusterRoleBindings that are missing. Existing ones annotated
// autoupdate=true (the default) get the rules, labels and subjects they
// lack added, as kube-apiserver reconciles them at every start; set the
// annotation to "false" to keep an edited object as it is.
func EnsureBootstrapPolicy(ctx context.Context, c Client) error {
	roles, err := aggregatedBootstrapRoles()
	if err != nil {
		return err
	}
	for _, want := range roles {
		if err := ensure(ctx, c, clusterRolesGVR, &want, func(live runtime.Object) bool {
			cr := live.(*rbacv1.ClusterRole)
			changed := addLabels(&cr.ObjectMeta, want.Labels)
			if want.AggregationRule != nil {
				// Aggregated rules are the aggregation controller's to fill.
				if !apiequality.Semantic.DeepEqual(cr.AggregationRule, want.AggregationRule) {
					cr.AggregationRule, changed = want.AggregationRule, true
				}
				return changed
			}
			for _, r := range want.Rules {
				if !slices.ContainsFunc(cr.Rules, func(have rbacv1.PolicyRule) bool { return apiequality.Semantic.DeepEqual(have, r) }) {
					cr.Rules, changed = append(cr.Rules, r), true
				}
			}
			return changed
		}); err != nil {
			return err
		}
	}
	for _, want := range BootstrapClusterRoleBindings() {
		if err := ensure(ctx, c, clusterRoleBindingsGVR, &want, func(live runtime.Object) bool {
			b := live.(*rbacv1.ClusterRoleBinding)
			changed := addLabels(&b.ObjectMeta, want.Labels)
			for _, s := range want.Subjects {
				if !slices.Contains(b.Subjects, s) {
					b.Subjects, changed = append(b.Subjects, s), true
				}
			}
			return changed
		}); err != nil {
			return err
		}
	}
	return withdrawRetiredGrants(ctx, c)
}

// retiredGrants are subjects of bootstrap ClusterRoleBindings that
// earlier orch versions granted and this one no longer does. Reconciling
// only adds, as kube-apiserver's does, so an upgraded cluster would keep
// them: nodes listing every pod and service under their own identity.
var retiredGrants = []struct {
	binding string
	subject rbacv1.Subject
}{
	{"orch:node-proxier", group(join.NodesGroup)},   // now: impersonate system:kube-proxy
	{"orch:network-policy", group(join.NodesGroup)}, // now: impersonate system:orch:network-policy
}

// withdrawRetiredGrants removes retiredGrants from bootstrap bindings
// still marked for auto-update, and deletes a binding left with no
// subject.
func withdrawRetiredGrants(ctx context.Context, c Client) error {
	for _, g := range retiredGrants {
		live, err := c.Get(ctx, clusterRoleBindingsGVR, "", g.binding)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read bootstrap clusterrolebindings %q: %w", g.binding, err)
		}
		b := live.DeepCopyObject().(*rbacv1.ClusterRoleBinding)
		if b.Annotations[autoUpdateKey] == "false" || b.Labels[bootstrappingLabel] != "rbac-defaults" || !slices.Contains(b.Subjects, g.subject) {
			continue
		}
		b.Subjects = slices.DeleteFunc(b.Subjects, func(s rbacv1.Subject) bool { return s == g.subject })
		if len(b.Subjects) == 0 {
			if _, err := c.Delete(ctx, clusterRoleBindingsGVR, "", b.Name, nil); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete retired bootstrap clusterrolebindings %q: %w", b.Name, err)
			}
			continue
		}
		if _, err := c.Update(ctx, clusterRoleBindingsGVR, b, "", fieldManager); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("update bootstrap clusterrolebindings %q: %w", b.Name, err)
		}
	}
	return nil
}

// aggregatedBootstrapRoles are the bootstrap roles with aggregated rules
// already filled in, so that admin, edit and view work before the
// aggregation controller has run. Aggregates of aggregates (admin of edit
// of view) take a pass per level.
func aggregatedBootstrapRoles() ([]rbacv1.ClusterRole, error) {
	roles := BootstrapClusterRoles()
	all := make([]*rbacv1.ClusterRole, len(roles))
	for i := range roles {
		all[i] = &roles[i]
	}
	for range roles {
		changed := false
		for _, r := range all {
			if r.AggregationRule == nil {
				continue
			}
			rules, err := AggregateRules(r, all)
			if err != nil {
				return nil, fmt.Errorf("aggregate bootstrap clusterrole %q: %w", r.Name, err)
			}
			if !apiequality.Semantic.DeepEqual(r.Rules, rules) {
				r.Rules, changed = rules, true
			}
		}
		if !changed {
			break
		}
	}
	return roles, nil
}

// ensure creates want, or lets reconcile amend the live object when it
// is marked for auto-update.
func ensure(ctx context.Context, c Client, gvr schema.GroupVersionResource, want interface {
	runtime.Object
	metav1.Object
}, reconcile func(live runtime.Object) bool) error {
	name := want.GetName()
	live, err := c.Get(ctx, gvr, "", name)
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.Create(ctx, gvr, want, fieldManager); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create bootstrap %s %q: %w", gvr.Resource, name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read bootstrap %s %q: %w", gvr.Resource, name, err)
	}
	m, ok := live.(metav1.Object)
	if !ok || m.GetAnnotations()[autoUpdateKey] == "false" {
		return nil
	}
	live = live.DeepCopyObject()
	if !reconcile(live) {
		return nil
	}
	if _, err := c.Update(ctx, gvr, live, "", fieldManager); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("update bootstrap %s %q: %w", gvr.Resource, name, err)
	}
	return nil
}

func addLabels(m *metav1.ObjectMeta, labels map[string]string) bool {
	changed := false
	for k, v := range labels {
		if m.Labels[k] != v {
			if m.Labels == nil {
				m.Labels = map[string]string{}
			}
			m.Labels[k], changed = v, true
		}
	}
	return changed
}
