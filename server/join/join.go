// Package join serves what a machine needs to become a node of the
// cluster with `orch agent --join URL --token T` (the protocol is in
// internal/jointoken):
//
//   - GET /cacerts: the cluster CA certificate, to anyone, as k3s serves
//     it; the agent trusts it only if its hash is the one its token pins.
//   - POST /v1-orch/node-certificate: a client certificate for the node
//     (CN system:node:<name>, O system:nodes) and the key of the PKCS #10
//     request in the body, which the agent made and keeps (the server
//     never sees a node's private key), to a caller holding the
//     join secret (user node-bootstrap), a bootstrap token (`orch token
//     create`; group system:bootstrappers) or the node's current
//     certificate (renewal before expiry).
//
// Node names are unique: the first join under a name stores a hash of the
// node's password (a random secret the agent keeps) in the Secret
// kube-system/<name>.node-password.orch, as k3s does; a later join under
// that name must present the same password.
//
// The package also tells the tunnel which node a connection belongs to
// (NodeName). It issues certificates and checks passwords, nothing else:
// authentication is server/auth's, what a node may do is the authorizer's.
package join

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/pki"
)

// Identities of nodes, as Kubernetes names them.
const (
	NodeUserPrefix = jointoken.NodeUserPrefix
	NodesGroup     = jointoken.NodesGroup
	// ServiceProxyUser and NetworkPolicyUser are the identities nodes may
	// impersonate to read what their service proxy and NetworkPolicy
	// enforcement need (see jointoken).
	ServiceProxyUser  = jointoken.ServiceProxyUser
	NetworkPolicyUser = jointoken.NetworkPolicyUser
	// bootstrapGroup is the group of a caller holding the join secret
	// (server/auth.BootstrapGroup).
	bootstrapGroup = "system:bootstrappers"
)

// Where node passwords are kept.
const (
	passwordNamespace     = metav1.NamespaceSystem
	passwordSecretSuffix  = ".node-password.orch"
	passwordSecretType    = corev1.SecretType("orch.dev/node-password")
	passwordHashKey       = "hash"
	passwordFieldManager  = "orch-join"
	maxPasswordLen        = 256
	defaultValidity       = 365 * 24 * time.Hour
	passwordHashAlgorithm = "sha256"
)

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// Authority issues client certificates (server/pki.Authority).
type Authority interface {
	CACertPEM() []byte
	SignPublicKey(pub crypto.PublicKey, cn string, groups []string, validity time.Duration) (certPEM []byte, err error)
}

// Objects reads and creates API objects in process (apiserver.Local). Its
// errors are Kubernetes API errors (apierrors.IsNotFound, ...).
type Objects interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
}

// Options configure a Handler.
type Options struct {
	CA      Authority
	Objects Objects
	// Authenticate identifies the caller (server/auth's
	// AuthenticateRequest). Its error, when a credential was refused,
	// is shown to the caller: "join token abcdef expired at ...".
	Authenticate func(r *http.Request) (apiserver.UserInfo, bool, error)
	// Validity of issued certificates; default one year. Agents renew
	// theirs when less than a third of it is left.
	Validity time.Duration
	// ReservedNodeNames cannot be joined: the node inside the server
	// process, whose certificate the server makes itself.
	ReservedNodeNames []string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves the join endpoints. It is safe for concurrent use.
type Handler struct {
	opts Options
	log  *slog.Logger
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.CA == nil || opts.Objects == nil || opts.Authenticate == nil {
		return nil, errors.New("join: Options.CA, Objects and Authenticate are required")
	}
	if opts.Validity <= 0 {
		opts.Validity = defaultValidity
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Handler{opts: opts, log: opts.Logger}, nil
}

// Handles reports whether path is one of the join endpoints, which the
// server must route to the Handler before its API handler.
func Handles(path string) bool {
	return path == jointoken.CACertsPath || path == jointoken.NodeCertificatePath
}

// ServeHTTP serves the join endpoints.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case jointoken.CACertsPath:
		h.serveCACerts(w, r)
	case jointoken.NodeCertificatePath:
		h.serveNodeCertificate(w, r)
	default:
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
	}
}

func (h *Handler) serveCACerts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "cacerts"}, strings.ToLower(r.Method)))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(h.opts.CA.CACertPEM())
	}
}

func (h *Handler) serveNodeCertificate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "node-certificate"}, strings.ToLower(r.Method)))
		return
	}
	user, ok, err := h.opts.Authenticate(r)
	if !ok {
		msg := "a node certificate needs the join token's secret or the node's current certificate"
		if err != nil {
			msg = err.Error()
		}
		h.log.Info("node join refused", "node", r.Header.Get(jointoken.NodeNameHeader), "remote", r.RemoteAddr, "reason", msg)
		writeStatus(w, apierrors.NewUnauthorized(msg))
		return
	}
	name := r.Header.Get(jointoken.NodeNameHeader)
	password := r.Header.Get(jointoken.NodePasswordHeader)
	if err := validateRequest(name, password); err != nil {
		writeStatus(w, err)
		return
	}
	if err := h.authorize(user, name); err != nil {
		writeStatus(w, err)
		return
	}
	// The request is checked before the password, so that a bad one
	// records nothing.
	csr, err := readCertificateRequest(r, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if err := h.checkPassword(r.Context(), name, password); err != nil {
		h.log.Warn("node join refused", "node", name, "user", user.Name, "remote", r.RemoteAddr, "err", err)
		writeStatus(w, err)
		return
	}
	certPEM, err := h.opts.CA.SignPublicKey(csr.PublicKey, NodeUserPrefix+name, []string{NodesGroup}, h.opts.Validity)
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(fmt.Errorf("issue the certificate of node %s: %w", name, err)))
		return
	}
	h.log.Info("issued node certificate", "node", name, "user", user.Name, "remote", r.RemoteAddr, "validity", h.opts.Validity)
	w.Header().Set("Content-Type", jointoken.NodeCertificateContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(certPEM)
}

// readCertificateRequest reads the body's PKCS #10 request and checks it
// as Kubernetes' CSR approver checks a kubelet's client request: signed by
// its key, subject CN system:node:<name> and O system:nodes exactly, no
// alternative names. The certificate is made from the key alone.
func readCertificateRequest(r *http.Request, name string) (*x509.CertificateRequest, error) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != jointoken.CertificateRequestContentType {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the body must be a certificate request (Content-Type %s); "+
			"agents older than the server ask without one: upgrade the agent", jointoken.CertificateRequestContentType))
	}
	der, err := io.ReadAll(io.LimitReader(r.Body, jointoken.MaxCertificateRequestBytes+1))
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("read the certificate request: %v", err))
	}
	if len(der) > jointoken.MaxCertificateRequestBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the certificate request is larger than %d bytes", jointoken.MaxCertificateRequestBytes))
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the body is not a PKCS #10 certificate request: %v", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the certificate request's signature does not verify: %v", err))
	}
	if err := pki.CheckPublicKey(csr.PublicKey); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the certificate request's key: %v", err))
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return nil, apierrors.NewBadRequest("a node's client certificate request must not ask for subject alternative names")
	}
	want := NodeUserPrefix + name
	if csr.Subject.CommonName != want || !slices.Equal(csr.Subject.Organization, []string{NodesGroup}) {
		return nil, apierrors.NewForbidden(corev1.Resource("nodes"), name, fmt.Errorf(
			"the certificate request is for CN %q O %q, want CN %q O [%q]", csr.Subject.CommonName, csr.Subject.Organization, want, NodesGroup))
	}
	return csr, nil
}

// PasswordSecretName is the name of the Secret (in kube-system) that
// holds node's password hash.
func PasswordSecretName(node string) string { return node + passwordSecretSuffix }

// PasswordSecretNode returns the node whose password s holds; ok is false
// when s is no node password Secret.
func PasswordSecretNode(s *corev1.Secret) (node string, ok bool) {
	if s.Namespace != passwordNamespace || s.Type != passwordSecretType {
		return "", false
	}
	node, ok = strings.CutSuffix(s.Name, passwordSecretSuffix)
	return node, ok && node != ""
}

// validateRequest checks the node name as Kubernetes checks Node names,
// plus the room its password Secret's name needs.
func validateRequest(name, password string) error {
	if name == "" {
		return apierrors.NewBadRequest("the " + jointoken.NodeNameHeader + " header (the node name) is required")
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return apierrors.NewBadRequest(fmt.Sprintf("invalid node name %q: %s", name, strings.Join(errs, "; ")))
	}
	if len(name)+len(passwordSecretSuffix) > validation.DNS1123SubdomainMaxLength {
		return apierrors.NewBadRequest(fmt.Sprintf("invalid node name %q: must be no more than %d characters",
			name, validation.DNS1123SubdomainMaxLength-len(passwordSecretSuffix)))
	}
	if password == "" {
		return apierrors.NewBadRequest("the " + jointoken.NodePasswordHeader + " header (the node password) is required")
	}
	if len(password) > maxPasswordLen {
		return apierrors.NewBadRequest(fmt.Sprintf("the node password is longer than %d characters", maxPasswordLen))
	}
	return nil
}

// authorize lets the join secret's holder ask for any node name that is
// not reserved, and a node ask only for its own certificate.
func (h *Handler) authorize(user apiserver.UserInfo, name string) error {
	if slices.Contains(h.opts.ReservedNodeNames, name) {
		return apierrors.NewForbidden(corev1.Resource("nodes"), name,
			fmt.Errorf("node name %q belongs to the node inside the server; give this agent another --node-name", name))
	}
	if node, ok := nodeOf(user); ok {
		if node != name {
			return apierrors.NewForbidden(corev1.Resource("nodes"), name,
				fmt.Errorf("node %q may renew only its own certificate", node))
		}
		return nil
	}
	if slices.Contains(user.Groups, bootstrapGroup) {
		return nil
	}
	return apierrors.NewForbidden(corev1.Resource("nodes"), name,
		fmt.Errorf("user %q may not ask for node certificates (need the join token or the node's certificate)", user.Name))
}

// nodeOf returns the node name of a node's user.
func nodeOf(user apiserver.UserInfo) (string, bool) {
	name, ok := strings.CutPrefix(user.Name, NodeUserPrefix)
	if !ok || name == "" || !slices.Contains(user.Groups, NodesGroup) {
		return "", false
	}
	return name, true
}

// checkPassword accepts the password of a new node name (and records its
// hash) or the recorded password of a known one.
func (h *Handler) checkPassword(ctx context.Context, name, password string) error {
	secretName := PasswordSecretName(name)
	for attempt := 0; attempt < 2; attempt++ {
		obj, err := h.opts.Objects.Get(ctx, secretsGVR, passwordNamespace, secretName)
		switch {
		case err == nil:
			return verifyPassword(obj, name, password)
		case !apierrors.IsNotFound(err):
			return apierrors.NewInternalError(fmt.Errorf("read the password of node %s: %w", name, err))
		}
		hash, err := hashPassword(password)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: passwordNamespace,
				Labels: map[string]string{"orch.dev/node": name}},
			Type: passwordSecretType,
			Data: map[string][]byte{passwordHashKey: []byte(hash)},
		}
		_, err = h.opts.Objects.Create(ctx, secretsGVR, secret, passwordFieldManager)
		switch {
		case err == nil:
			return nil
		case !apierrors.IsAlreadyExists(err):
			return apierrors.NewInternalError(fmt.Errorf("store the password of node %s: %w", name, err))
		}
		// Another join under this name won the race: check against its.
	}
	return apierrors.NewConflict(corev1.Resource("nodes"), name, errors.New("concurrent joins under this node name; retry"))
}

func verifyPassword(obj runtime.Object, name, password string) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("password of node %s: stored object is a %T, not a Secret", name, obj))
	}
	if !passwordMatches(string(secret.Data[passwordHashKey]), password) {
		return apierrors.NewForbidden(corev1.Resource("nodes"), name, fmt.Errorf(
			"node password rejected: a node named %q already joined from another machine. Give this agent another --node-name, "+
				"or, if the old machine is gone for good, delete its password (kubectl -n %s delete secret %s) and join again",
			name, passwordNamespace, secret.Name))
	}
	return nil
}

// hashPassword returns "sha256$<salt hex>$<hash hex>". Node passwords are
// 32 random bytes, so a fast hash is enough; the salt keeps equal
// passwords from showing.
func hashPassword(password string) (string, error) {
	var salt [16]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return "", fmt.Errorf("salt for node password: %w", err)
	}
	return passwordHashAlgorithm + "$" + hex.EncodeToString(salt[:]) + "$" + saltedHash(salt[:], password), nil
}

func saltedHash(salt []byte, password string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return hex.EncodeToString(h.Sum(nil))
}

func passwordMatches(stored, password string) bool {
	alg, rest, ok := strings.Cut(stored, "$")
	if !ok || alg != passwordHashAlgorithm {
		return false
	}
	saltHex, want, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	salt, err := hex.DecodeString(saltHex)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(saltedHash(salt, password)), []byte(want)) == 1
}

// NodeName returns the tunnel's way of naming the node behind a request:
// the node of its verified client certificate. Other callers, even
// authenticated ones, are refused.
func NodeName(authenticate func(r *http.Request) (apiserver.UserInfo, bool)) func(r *http.Request) (string, error) {
	return func(r *http.Request) (string, error) {
		user, ok := authenticate(r)
		if !ok {
			return "", errors.New("the tunnel needs a node's client certificate")
		}
		node, ok := nodeOf(user)
		if !ok {
			return "", fmt.Errorf("user %q is not a node (want %s<name> in group %s)", user.Name, NodeUserPrefix, NodesGroup)
		}
		return node, nil
	}
}

// writeStatus answers err as a Kubernetes Status, as the API server would.
func writeStatus(w http.ResponseWriter, err error) { apiserver.WriteStatus(w, err) }
