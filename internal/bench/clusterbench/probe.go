package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/internal/tunnel"
)

// probeNode is the node identity of the API probe. It must not be the
// agent's own: the server keeps one tunnel per node, and a second one
// under the agent's name would replace (and so disturb) the agent's.
const probeNode = "cb-probe"

// apiLatencies is what the probe prints: nanoseconds per request.
type apiLatencies struct {
	Tunnel []time.Duration `json:"tunnel"`
	Direct []time.Duration `json:"direct"`
}

// runProbeAPI runs in the agent's namespace. It joins as probeNode with
// the server's token (as `orch agent --join` does), opens a tunnel with
// internal/tunnel as the agent does, and GETs the agent's Node object
// alternately through the tunnel's client and through a plain HTTPS
// client with the same certificate on a connection of its own.
func runProbeAPI(o options) error {
	caPEM, err := os.ReadFile(o.caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: no CA certificate", o.caFile)
	}
	raw, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return err
	}
	token, err := jointoken.Parse(strings.TrimSpace(string(raw)))
	if err != nil {
		return err
	}
	cert, err := joinAs(o.server, probeNode, token.Secret, roots)
	if err != nil {
		return fmt.Errorf("join as %s: %w", probeNode, err)
	}
	tlsConfig := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent, err := tunnel.NewAgent(tunnel.AgentOptions{
		ServerURL: o.server,
		TLSConfig: tlsConfig,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	runDone := make(chan error, 1)
	go func() { runDone <- agent.Run(ctx) }()
	select {
	case <-agent.Connected():
	case <-time.After(30 * time.Second):
		return errors.New("the probe's tunnel did not connect within 30s")
	}
	direct := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}}
	defer direct.CloseIdleConnections()

	url := o.server + "/api/v1/nodes/" + o.node
	get := func(c *http.Client) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Accept", "application/json")
		// A node reads only its own Node; the agent reads the others as
		// its service proxy's user, which nodes may impersonate: so does
		// the probe.
		req.Header.Set("Impersonate-User", jointoken.ServiceProxyUser)
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
		}
		return d, nil
	}
	var res apiLatencies
	const warmup = 20
	for i := range warmup + o.requests {
		// Alternate, and swap which goes first, so that machine noise and
		// any wake-up cost hit both alike.
		var t, d time.Duration
		for j := range 2 {
			if (i+j)%2 == 0 {
				if t, err = get(agent.Client()); err != nil {
					return fmt.Errorf("through the tunnel: %w", err)
				}
			} else if d, err = get(direct); err != nil {
				return fmt.Errorf("direct: %w", err)
			}
		}
		if i >= warmup {
			res.Tunnel, res.Direct = append(res.Tunnel, t), append(res.Direct, d)
		}
	}
	cancel()
	<-runDone
	return json.NewEncoder(os.Stdout).Encode(res)
}

// joinAs asks the server for a node certificate for node with the join
// token's secret, as a joining agent does: for a key of its own, sent as a
// PKCS #10 request (internal/jointoken's protocol).
func joinAs(server, node, secret string, roots *x509.CertPool) (tls.Certificate, error) {
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, csr, err := jointoken.NewNodeKey(node)
	if err != nil {
		return tls.Certificate{}, err
	}
	req, err := http.NewRequest(http.MethodPost, server+jointoken.NodeCertificatePath, bytes.NewReader(csr))
	if err != nil {
		return tls.Certificate{}, err
	}
	req.Header.Set("Content-Type", jointoken.CertificateRequestContentType)
	req.Header.Set(jointoken.NodeNameHeader, node)
	req.Header.Set(jointoken.NodePasswordHeader, hex.EncodeToString(pw[:]))
	req.Header.Set("Authorization", "Bearer "+secret)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return tls.Certificate{}, err
	}
	defer resp.Body.Close()
	certPEM, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tls.Certificate{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return tls.Certificate{}, fmt.Errorf("%s: %s", resp.Status, certPEM)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
