// Package agent turns a machine into an orch node: it joins a server over
// one TLS connection, registers its Node, runs the pods bound to it and
// reports their status. It never imports the server packages; the two meet
// only on the wire.
//
// This is a placeholder so that `orch agent` has a contract to call; the
// agent itself is built by its own issue.
package agent

import (
	"context"
	"errors"
	"log/slog"
)

// Config is what `orch agent` was asked to do, already parsed and checked
// by internal/config (flags > ORCH_* environment > config file).
type Config struct {
	ServerURL string // https://HOST:PORT of the server to join (--join)
	Token     string // join token given by the server
	NodeName  string // default: the host name
	DataDir   string // default /var/lib/orch
	Debug     bool

	Logger *slog.Logger
}

// ErrNotImplemented is returned by Run until the agent exists.
var ErrNotImplemented = errors.New("orch agent: not implemented yet")

// Run joins the server and serves as a node until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	return ErrNotImplemented
}
