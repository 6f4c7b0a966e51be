// Package auth identifies the caller of an API request. It knows these
// credentials:
//
//   - TLS client certificates signed by the cluster CA: the CommonName is
//     the user, the Organizations are its groups (the Kubernetes
//     convention, so CN=system:admin,O=system:masters is the admin and
//     CN=system:node:<name>,O=system:nodes is a node);
//   - the server's join-token secret as a bearer token, which makes the
//     caller "node-bootstrap" in group system:bootstrappers: an agent that
//     may only ask for its node certificate;
//   - bootstrap tokens "<id>.<secret>" (`orch token create`), backed by
//     Secrets kube-system/bootstrap-token-<id> (BootstrapTokens): user
//     system:bootstrap:<id>, group system:bootstrappers and the token's
//     extra groups;
//   - the admin token (system:admin, group system:masters);
//   - service account tokens (JWTs signed by the cluster's service account
//     key), checked by a TokenAuthenticator (server/serviceaccount).
//
// Everything else is unauthenticated (the API server answers 401). The
// package decides who a caller is, never what it may do: authorization is
// a separate step.
package auth

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"net/http"
	"slices"
	"strings"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/apiserver"
)

// Well-known identities.
const (
	// AuthenticatedGroup is added to every authenticated user.
	AuthenticatedGroup = "system:authenticated"
	// BootstrapUser and BootstrapGroup identify a caller holding the join
	// token's secret.
	BootstrapUser  = "node-bootstrap"
	BootstrapGroup = "system:bootstrappers"
	// AdminUser and MastersGroup identify a caller holding the admin
	// token (the admin client certificate names the same user).
	AdminUser    = "system:admin"
	MastersGroup = "system:masters"
)

// Options configure an Authenticator.
type Options struct {
	// ClientCAs verifies client certificates. Nil disables certificate
	// authentication.
	ClientCAs *x509.CertPool
	// HandshakeVerifiesClientCAs says the TLS listener verifies client
	// certificates against ClientCAs (tls.VerifyClientCertIfGiven with the
	// same pool), so a verified chain from the handshake can be trusted.
	HandshakeVerifiesClientCAs bool
	// BootstrapSecret is the join token's secret; empty disables it.
	BootstrapSecret string
	// AdminToken authenticates as system:admin (group system:masters),
	// for clients that cannot present a certificate; empty disables it.
	AdminToken string
	// BootstrapTokens checks bearer tokens of the bootstrap form
	// "<id>.<secret>" (BootstrapTokens). Nil disables them.
	BootstrapTokens TokenAuthenticator
	// Tokens checks the bearer tokens that are none of the above (service
	// account JWTs). Nil disables them.
	Tokens TokenAuthenticator
}

// TokenAuthenticator checks bearer tokens. ok=false with a nil error means
// the token is not one it knows; an error means it knows it and refuses it.
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (u apiserver.UserInfo, ok bool, err error)
}

// Authenticator identifies requests. It is safe for concurrent use.
type Authenticator struct {
	roots           *x509.CertPool
	bootstrap       []byte
	admin           []byte
	tokens          TokenAuthenticator
	bootstrapTokens TokenAuthenticator
	// handshakeRoots: see Options.HandshakeVerifiesClientCAs.
	handshakeRoots bool
}

// New returns an Authenticator for opts.
func New(opts Options) *Authenticator {
	return &Authenticator{roots: opts.ClientCAs, bootstrap: []byte(opts.BootstrapSecret), admin: []byte(opts.AdminToken),
		tokens: opts.Tokens, bootstrapTokens: opts.BootstrapTokens, handshakeRoots: opts.HandshakeVerifiesClientCAs && opts.ClientCAs != nil}
}

// WithTokens returns a copy of a that also accepts the bearer tokens t
// knows (service account tokens, whose checks need the API server, which
// in turn needs the Authenticator: the server builds them in that order).
func (a *Authenticator) WithTokens(t TokenAuthenticator) *Authenticator {
	c := *a
	c.tokens = t
	return &c
}

// WithBootstrapTokens returns a copy of a that also accepts the bootstrap
// tokens t knows (their Secrets are read through the API server, which is
// built after the Authenticator).
func (a *Authenticator) WithBootstrapTokens(t TokenAuthenticator) *Authenticator {
	c := *a
	c.bootstrapTokens = t
	return &c
}

// Authenticate returns the caller of r, or ok=false when r carries no
// credential this server accepts. A client certificate takes precedence
// over a bearer token, as in Kubernetes.
func (a *Authenticator) Authenticate(r *http.Request) (apiserver.UserInfo, bool) {
	u, ok, _ := a.AuthenticateRequest(r)
	return u, ok
}

// AuthenticateRequest is Authenticate that also says why a bearer token
// that looked like one of ours was refused (an *ExpiredTokenError, ...),
// for endpoints that tell their callers more than "Unauthorized".
func (a *Authenticator) AuthenticateRequest(r *http.Request) (apiserver.UserInfo, bool, error) {
	if u, ok := a.fromCertificate(r); ok {
		return u, true, nil
	}
	return a.fromBearer(r)
}

// fromCertificate verifies the peer chain itself rather than trusting the
// TLS layer's result, so authentication holds whatever ClientAuth mode the
// listener uses.
func (a *Authenticator) fromCertificate(r *http.Request) (apiserver.UserInfo, bool) {
	if a.roots == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return apiserver.UserInfo{}, false
	}
	leaf := r.TLS.PeerCertificates[0]
	// The TLS handshake already verified the chain against the same roots
	// (ClientCAs, client-auth usage): reuse it instead of checking the
	// signatures again on every request of the connection.
	if len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 && a.handshakeRoots {
		leaf = r.TLS.VerifiedChains[0][0]
		if leaf.Subject.CommonName == "" {
			return apiserver.UserInfo{}, false
		}
		return user(leaf.Subject.CommonName, leaf.Subject.Organization...), true
	}
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         a.roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return apiserver.UserInfo{}, false
	}
	if leaf.Subject.CommonName == "" {
		return apiserver.UserInfo{}, false
	}
	return user(leaf.Subject.CommonName, leaf.Subject.Organization...), true
}

func (a *Authenticator) fromBearer(r *http.Request) (apiserver.UserInfo, bool, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return apiserver.UserInfo{}, false, nil
	}
	return a.AuthenticateToken(r.Context(), strings.TrimSpace(token))
}

// AuthenticateToken identifies the holder of a bearer token: the admin
// token, the join secret, a bootstrap token, then the TokenAuthenticator.
// The error says why a token that looked like one of ours was refused
// (for TokenReview).
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (apiserver.UserInfo, bool, error) {
	t := []byte(token)
	switch {
	case len(t) == 0:
		return apiserver.UserInfo{}, false, nil
	case len(a.admin) > 0 && subtle.ConstantTimeCompare(t, a.admin) == 1:
		return user(AdminUser, MastersGroup), true, nil
	case len(a.bootstrap) > 0 && subtle.ConstantTimeCompare(t, a.bootstrap) == 1:
		return user(BootstrapUser, BootstrapGroup), true, nil
	}
	tokens := a.tokens
	if _, _, ok := jointoken.ParseBootstrap(token); ok {
		// The bootstrap form is never a JWT: no need to ask tokens.
		tokens = a.bootstrapTokens
	}
	if tokens == nil {
		return apiserver.UserInfo{}, false, nil
	}
	u, ok, err := tokens.AuthenticateToken(ctx, token)
	if !ok || err != nil {
		return apiserver.UserInfo{}, false, err
	}
	u.Groups = user(u.Name, u.Groups...).Groups
	return u, true, nil
}

func user(name string, groups ...string) apiserver.UserInfo {
	g := slices.Clone(groups)
	if !slices.Contains(g, AuthenticatedGroup) {
		g = append(g, AuthenticatedGroup)
	}
	return apiserver.UserInfo{Name: name, Groups: g}
}
