// Package serviceaccount issues and checks service account tokens: JSON Web
// Tokens signed with the cluster's service account key (ES256, kept at
// DATA/server/tls/service.key), with the claims Kubernetes puts in them, so
// that clients and tools that decode them (kubectl, client libraries,
// OIDC-aware services) see what they see in Kubernetes.
//
// Two forms exist, as in Kubernetes:
//
//   - bound tokens (TokenRequest): issuer https://kubernetes.default.svc.cluster.local,
//     audiences, exp/iat/nbf/jti and a "kubernetes.io" claim naming the
//     namespace, the service account and the object the token is bound to
//     (a pod or a secret). They stop working when that object is deleted.
//   - legacy secret tokens (the token controller fills secrets of type
//     kubernetes.io/service-account-token): issuer kubernetes/serviceaccount,
//     no expiry, flat "kubernetes.io/serviceaccount/..." claims. They work
//     as long as the secret holds them.
//
// The package decides who a token names; it does not serve HTTP (the API
// server's handlers and server/auth call it) and it reads objects only
// through the small Objects interface.
package serviceaccount

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Issuers and names Kubernetes uses.
const (
	// DefaultIssuer is the "iss" of bound tokens and, as in kube-apiserver
	// and k3s, the audience the API server accepts by default.
	DefaultIssuer = "https://kubernetes.default.svc.cluster.local"
	// LegacyIssuer is the "iss" of secret-based tokens.
	LegacyIssuer = "kubernetes/serviceaccount"

	// UserPrefix starts every service account's user name:
	// system:serviceaccount:NAMESPACE:NAME.
	UserPrefix = "system:serviceaccount:"
	// AllServiceAccountsGroup holds every service account;
	// system:serviceaccounts:NAMESPACE holds a namespace's.
	AllServiceAccountsGroup = "system:serviceaccounts"

	algorithm = "ES256"
)

// UserName is the user a service account authenticates as.
func UserName(namespace, name string) string {
	return UserPrefix + namespace + ":" + name
}

// Groups are the groups of a service account of namespace (without
// system:authenticated, which authentication adds to everyone).
func Groups(namespace string) []string {
	return []string{AllServiceAccountsGroup, AllServiceAccountsGroup + ":" + namespace}
}

// Ref names an object a token refers to.
type Ref struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

// KubernetesClaims is the private "kubernetes.io" claim of bound tokens.
type KubernetesClaims struct {
	Namespace      string `json:"namespace,omitempty"`
	ServiceAccount Ref    `json:"serviceaccount"`
	Pod            *Ref   `json:"pod,omitempty"`
	Secret         *Ref   `json:"secret,omitempty"`
	Node           *Ref   `json:"node,omitempty"`
	// WarnAfter is set on tokens whose expiry was extended (see
	// TokenRequests): the time their requested lifetime ended.
	WarnAfter *int64 `json:"warnafter,omitempty"`
}

// Claims is a token's payload: the registered JWT claims, the bound-token
// claim and the legacy claims (only one of the last two is set).
type Claims struct {
	Issuer    string   `json:"iss,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  Audience `json:"aud,omitempty"`
	Expiry    int64    `json:"exp,omitempty"`
	NotBefore int64    `json:"nbf,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	ID        string   `json:"jti,omitempty"`

	Kubernetes *KubernetesClaims `json:"kubernetes.io,omitempty"`

	LegacyNamespace          string `json:"kubernetes.io/serviceaccount/namespace,omitempty"`
	LegacySecretName         string `json:"kubernetes.io/serviceaccount/secret.name,omitempty"`
	LegacyServiceAccountName string `json:"kubernetes.io/serviceaccount/service-account.name,omitempty"`
	LegacyServiceAccountUID  string `json:"kubernetes.io/serviceaccount/service-account.uid,omitempty"`
}

// Audience is the "aud" claim: a string or an array of strings on the wire
// (RFC 7519 §4.1.3); it is always written as an array.
type Audience []string

// UnmarshalJSON accepts both forms.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud claim is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// Signer signs tokens with the service account key.
type Signer struct {
	key *ecdsa.PrivateKey
	kid string
}

// NewSigner returns a Signer for key (P-256).
func NewSigner(key *ecdsa.PrivateKey) (*Signer, error) {
	kid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, kid: kid}, nil
}

// KeyID is the "kid" header of the tokens s signs.
func (s *Signer) KeyID() string { return s.kid }

// PublicKey verifies what s signs.
func (s *Signer) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

// Sign encodes c as a compact JWS (JWT) signed with ES256.
func (s *Signer) Sign(c *Claims) (string, error) {
	h, err := json.Marshal(header{Alg: algorithm, Kid: s.kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode token claims: %w", err)
	}
	signingInput := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(signingInput))
	r, sig, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	// JWS wants r and s as fixed-size big-endian integers (RFC 7518 §3.4),
	// not the ASN.1 form crypto/ecdsa's SignASN1 makes.
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	sig.FillBytes(raw[32:])
	return signingInput + "." + b64(raw), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Token check errors. A token that fails them is refused (401); the
// messages are Kubernetes'.
var (
	// ErrNotServiceAccountToken means the token is not a JWT signed by
	// this cluster's key: another authenticator may know it.
	ErrNotServiceAccountToken = errors.New("not a service account token")
	ErrExpired                = errors.New("service account token has expired")
	ErrNotValidYet            = errors.New("service account token is not valid yet")
	ErrInvalidSignature       = errors.New("service account token signature is invalid")
)

// maxTokenBytes bounds what is decoded: real tokens are ~1 KB.
const maxTokenBytes = 16 << 10

// Verifier checks tokens signed by one key.
type Verifier struct {
	pub *ecdsa.PublicKey
	kid string
}

// NewVerifier returns a Verifier of tokens signed with the key of pub.
func NewVerifier(pub *ecdsa.PublicKey) (*Verifier, error) {
	kid, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	return &Verifier{pub: pub, kid: kid}, nil
}

// Parse verifies token's signature and returns its claims. It returns
// ErrNotServiceAccountToken (wrapped) when the token is not a JWT in the
// form this cluster signs, and ErrInvalidSignature when it is but the
// signature does not hold. Times, issuer and audiences are the
// Authenticator's business.
func (v *Verifier) Parse(token string) (*Claims, error) {
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("%w: too long", ErrNotServiceAccountToken)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a JWT", ErrNotServiceAccountToken)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNotServiceAccountToken, err)
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNotServiceAccountToken, err)
	}
	// Tokens of other issuers (an OIDC provider) carry other key ids; only
	// refuse outright what claims to be signed by our key.
	if h.Alg != algorithm || (h.Kid != "" && h.Kid != v.kid) {
		return nil, fmt.Errorf("%w: signed with another key", ErrNotServiceAccountToken)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, ErrInvalidSignature
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(v.pub, sum[:], r, s) {
		return nil, ErrInvalidSignature
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("service account token payload: %w", err)
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, fmt.Errorf("service account token payload: %w", err)
	}
	return &c, nil
}

// clockSkew is how far "nbf" and "iat" may be ahead of this server's
// clock (another server of the cluster may run slightly ahead), as the
// JOSE library Kubernetes uses allows.
const clockSkew = time.Minute

// checkTimes applies exp and nbf at now.
func (c *Claims) checkTimes(now time.Time) error {
	if c.Expiry != 0 && !now.Before(time.Unix(c.Expiry, 0)) {
		return ErrExpired
	}
	if c.NotBefore != 0 && now.Add(clockSkew).Before(time.Unix(c.NotBefore, 0)) {
		return ErrNotValidYet
	}
	return nil
}

// intersect returns the audiences in both lists, in the order of want.
func intersect(want, have []string) []string {
	var out []string
	for _, w := range want {
		for _, h := range have {
			if w == h {
				out = append(out, w)
				break
			}
		}
	}
	return out
}
