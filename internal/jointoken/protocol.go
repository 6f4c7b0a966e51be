package jointoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
)

// The join protocol between `orch agent --join` and the server. Both ends
// import these names; the server's handlers live in server/join, the
// agent's client in agent/join.go.
//
//  1. GET CACertsPath, without verifying the server (the agent does not
//     know the CA yet): the CA certificate PEM. The agent checks its
//     SHA-256 against the token's pin before it sends anything secret.
//  2. POST NodeCertificatePath over TLS verified with that CA, with the
//     token's secret as a bearer token (first join) or the node's current
//     client certificate (renewal), the NodeNameHeader and
//     NodePasswordHeader headers, and as body a PKCS #10 certificate
//     request (DER, CertificateRequestContentType) for a key the agent
//     made and keeps, with subject CN system:node:<name>, O system:nodes.
//     The answer is the node's client certificate for that key, PEM
//     (NodeCertificateContentType); errors are Kubernetes Status objects.
const (
	CACertsPath         = "/cacerts"
	NodeCertificatePath = "/v1-orch/node-certificate"

	// NodeNameHeader names the node the certificate is for.
	NodeNameHeader = "Orch-Node-Name"
	// NodePasswordHeader carries the node's password: a random secret the
	// agent creates at its first join and keeps, by which the server tells
	// the machine that first joined under a name from another one using
	// the same name.
	NodePasswordHeader = "Orch-Node-Password"

	// CertificateRequestContentType is the type of the request body of
	// NodeCertificatePath: one DER-encoded PKCS #10 request (RFC 5967).
	CertificateRequestContentType = "application/pkcs10"
	// MaxCertificateRequestBytes bounds that body; a request for a P-256
	// key is about 250 bytes.
	MaxCertificateRequestBytes = 16 << 10

	// NodeCertificateContentType is the type of the answer to
	// NodeCertificatePath: the certificate, PEM.
	NodeCertificateContentType = "application/x-pem-file"
)

// A node's identity in its certificate, as Kubernetes names nodes.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// The identities an agent's cluster-wide readers take, by impersonation
// (the Impersonate-User header), since the node identity itself reads
// only its own Node, the pods bound to it and what they reference. k3s
// gives its agents extra certificates for the same purpose (kube-proxy's,
// system:k3s-controller); one tunnel carries one certificate, so orch
// lets nodes impersonate these users and no other.
const (
	// ServiceProxyUser reads services, endpoint slices and nodes for the
	// service proxy, DNS and pod routes (Kubernetes' kube-proxy user,
	// bound to system:node-proxier).
	ServiceProxyUser = "system:kube-proxy"
	// NetworkPolicyUser lists and watches the pods, namespaces and
	// policies of the whole cluster for NetworkPolicy enforcement.
	NetworkPolicyUser = "system:orch:network-policy"
	// IngressUser reads ingresses, ingress classes, services, endpoint
	// slices and secrets for the node's ingress proxy (what k3s grants
	// Traefik).
	IngressUser = "system:orch:ingress"
)

// NewNodeKey makes a node's private key (ECDSA P-256, PKCS #8 PEM), which
// stays with the node, and the certificate request for it to send to
// NodeCertificatePath (DER, subject CN system:node:<node>, O system:nodes).
func NewNodeKey(node string) (keyPEM, csr []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate the node key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the node key: %w", err)
	}
	csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: NodeUserPrefix + node, Organization: []string{NodesGroup}},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make the node's certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), csr, nil
}
