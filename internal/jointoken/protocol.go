package jointoken

// The join protocol between `orch agent --join` and the server. Both ends
// import these names; the server's handlers live in server/join, the
// agent's client in agent/join.go.
//
//  1. GET CACertsPath, without verifying the server (the agent does not
//     know the CA yet): the CA certificate PEM. The agent checks its
//     SHA-256 against the token's pin before it sends anything secret.
//  2. POST NodeCertificatePath over TLS verified with that CA, with the
//     token's secret as a bearer token (first join) or the node's current
//     client certificate (renewal), and the NodeNameHeader and
//     NodePasswordHeader headers. The answer is the node's client
//     certificate (CN system:node:<name>, O system:nodes) followed by its
//     private key, both PEM (NodeCertificateContentType); errors are
//     Kubernetes Status objects.
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

	// NodeCertificateContentType is the type of the answer to
	// NodeCertificatePath: PEM blocks, certificate first, then the key.
	NodeCertificateContentType = "application/x-pem-file"
)
