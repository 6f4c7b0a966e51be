// Package bootstraptoken is what Kubernetes bootstrap-token Secrets look
// like: kube-system/bootstrap-token-<id>, type bootstrap.kubernetes.io/token,
// holding the token's id and secret, an optional RFC 3339 expiration, its
// usages and extra groups (k8s.io/cluster-bootstrap's schema, which
// kubeadm and k3s write too).
//
// `orch token create` builds such Secrets, the authenticator in server/auth
// reads them and the token cleaner deletes expired ones. The package only
// converts between Secrets and Info; it reads and writes nothing.
package bootstraptoken

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/jointoken"
)

// The Secret schema (k8s.io/cluster-bootstrap/token/api).
const (
	// Namespace holds every bootstrap token Secret.
	Namespace = metav1.NamespaceSystem
	// SecretPrefix and the token id make the Secret's name.
	SecretPrefix = "bootstrap-token-"

	IDKey          = "token-id"
	SecretKey      = "token-secret"
	ExpirationKey  = "expiration"
	DescriptionKey = "description"
	ExtraGroupsKey = "auth-extra-groups"
	// UsagePrefix starts the keys of usages, set to "true".
	UsagePrefix = "usage-bootstrap-"

	// UsageAuthentication lets the token authenticate as a bearer token;
	// UsageSigning lets it sign the cluster-info ConfigMap (kubeadm).
	UsageAuthentication = "authentication"
	UsageSigning        = "signing"

	// UserPrefix and the id make the user a token authenticates as.
	UserPrefix = "system:bootstrap:"
	// Group is every token's group; extra groups must start with
	// Group + ":".
	Group = "system:bootstrappers"
	// DefaultExtraGroup is the extra group `orch token create` gives
	// unless told otherwise (k3s: system:bootstrappers:k3s:default-node-token).
	DefaultExtraGroup = "system:bootstrappers:orch:default-node-token"
)

// extraGroupPattern is Kubernetes' BootstrapGroupPattern, compiled on
// first use: its {0,255} unrolls into a program of about 170 KB, which
// every orch process (container shims included) paid at start although
// only token validation needs it.
var extraGroupPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`)
})

// Info is a bootstrap token as its Secret describes it.
type Info struct {
	ID     string
	Secret string
	// Expiration is zero for a token that never expires.
	Expiration  time.Time
	Description string
	// Usages without the prefix, sorted: "authentication", "signing".
	Usages []string
	// ExtraGroups are the groups besides Group.
	ExtraGroups []string
}

// SecretName is the name of the Secret of token id.
func SecretName(id string) string { return SecretPrefix + id }

// ValidateExtraGroup checks a group as Kubernetes does: it must start
// with "system:bootstrappers:".
func ValidateExtraGroup(g string) error {
	if re := extraGroupPattern(); !re.MatchString(g) {
		return fmt.Errorf("group %q must match %s (e.g. %s)", g, re.String(), DefaultExtraGroup)
	}
	return nil
}

// NewSecret is the Secret of a token. The token must be a valid bootstrap
// token and the groups valid extra groups.
func NewSecret(info Info) (*corev1.Secret, error) {
	if !jointoken.ValidBootstrapID(info.ID) {
		return nil, fmt.Errorf("bootstrap token id %q must be %d characters of a-z, 0-9", info.ID, jointoken.BootstrapIDLen)
	}
	if _, _, ok := jointoken.ParseBootstrap(info.ID + "." + info.Secret); !ok {
		return nil, fmt.Errorf("bootstrap token %s: the secret must be %d characters of a-z, 0-9", info.ID, jointoken.BootstrapSecretLen)
	}
	data := map[string][]byte{
		IDKey:     []byte(info.ID),
		SecretKey: []byte(info.Secret),
	}
	if !info.Expiration.IsZero() {
		data[ExpirationKey] = []byte(info.Expiration.UTC().Format(time.RFC3339))
	}
	if info.Description != "" {
		data[DescriptionKey] = []byte(info.Description)
	}
	for _, u := range info.Usages {
		if u != UsageAuthentication && u != UsageSigning {
			return nil, fmt.Errorf("unknown bootstrap token usage %q (want %s or %s)", u, UsageAuthentication, UsageSigning)
		}
		data[UsagePrefix+u] = []byte("true")
	}
	if len(info.ExtraGroups) > 0 {
		for _, g := range info.ExtraGroups {
			if err := ValidateExtraGroup(g); err != nil {
				return nil, err
			}
		}
		data[ExtraGroupsKey] = []byte(strings.Join(info.ExtraGroups, ","))
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: SecretName(info.ID), Namespace: Namespace},
		Type:       corev1.SecretTypeBootstrapToken,
		Data:       data,
	}, nil
}

// ErrNotBootstrapToken says a Secret is not a bootstrap token Secret.
var ErrNotBootstrapToken = errors.New("not a bootstrap token Secret")

// FromSecret reads a bootstrap token Secret. An expiration that cannot be
// parsed is an error (the authenticator and the cleaner treat the token as
// expired, as Kubernetes does).
func FromSecret(s *corev1.Secret) (Info, error) {
	id, ok := strings.CutPrefix(s.Name, SecretPrefix)
	if !ok || s.Namespace != Namespace || s.Type != corev1.SecretTypeBootstrapToken {
		return Info{}, fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, ErrNotBootstrapToken)
	}
	info := Info{
		ID:          string(s.Data[IDKey]),
		Secret:      string(s.Data[SecretKey]),
		Description: string(s.Data[DescriptionKey]),
	}
	if info.ID != id {
		return Info{}, fmt.Errorf("secret %s/%s: %s is %q, not the id in the name", s.Namespace, s.Name, IDKey, info.ID)
	}
	for k, v := range s.Data {
		if u, ok := strings.CutPrefix(k, UsagePrefix); ok && string(v) == "true" {
			info.Usages = append(info.Usages, u)
		}
	}
	slices.Sort(info.Usages)
	if g := strings.TrimSpace(string(s.Data[ExtraGroupsKey])); g != "" {
		for _, group := range strings.Split(g, ",") {
			info.ExtraGroups = append(info.ExtraGroups, strings.TrimSpace(group))
		}
	}
	if exp := string(s.Data[ExpirationKey]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			return info, fmt.Errorf("secret %s/%s: %s %q is not an RFC 3339 time", s.Namespace, s.Name, ExpirationKey, exp)
		}
		info.Expiration = t
	}
	return info, nil
}

// Expired reports whether the token expired at or before now.
func (i Info) Expired(now time.Time) bool {
	return !i.Expiration.IsZero() && !now.Before(i.Expiration)
}

// HasUsage reports whether the token is marked for usage u.
func (i Info) HasUsage(u string) bool { return slices.Contains(i.Usages, u) }

// Groups are the token's groups: Group and the extra ones. An invalid
// extra group is an error, and the token must not authenticate.
func (i Info) Groups() ([]string, error) {
	groups := []string{Group}
	for _, g := range i.ExtraGroups {
		if err := ValidateExtraGroup(g); err != nil {
			return nil, err
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return groups, nil
}
