// Command orch is a whole Kubernetes-compatible cluster in one binary.
//
//	orch server                          control plane (and a node, unless --disable-agent)
//	orch agent --join URL --token T      make this machine a node of that server
//	orch token create|list|delete        extra join tokens that expire
//	orch version                         what this binary is
//
// Every flag can also be set by an ORCH_* environment variable or in
// /etc/orch/config.yaml; see internal/config for the rules.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	// Time zone data in the binary: CronJob time zones must work on
	// minimal hosts without /usr/share/zoneinfo (about 450 KB).
	_ "time/tzdata"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/orch-dev/orch/agent"
	"github.com/orch-dev/orch/internal/config"
	"github.com/orch-dev/orch/internal/logfile"
	"github.com/orch-dev/orch/internal/textpages"
	"github.com/orch-dev/orch/internal/version"
	"github.com/orch-dev/orch/runtime/container"
	"github.com/orch-dev/orch/runtime/registry"
	"github.com/orch-dev/orch/server"
)

func main() {
	// orch re-executes itself as a container's init, a pod's pause process
	// and a container's shim; those never reach the CLI.
	container.Reexec()

	// Small boxes: collect at 50% heap growth rather than Go's 100%, which
	// keeps a server with 10k objects under 100 MB for a little CPU. GOGC
	// in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a clean shutdown, restore the
		// default handling so a second Ctrl-C kills a stuck process.
		<-ctx.Done()
		stop()
	}()
	err := newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "orch: %v\n", err)
		os.Exit(1)
	}
}

// newApp builds the command tree. It writes only to stdout and stderr, so
// tests can run it in-process.
func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:            "orch",
		Usage:           "a Kubernetes-compatible cluster in one small binary",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		HideHelpCommand: true,
		OnUsageError:    usageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q (see `orch --help`)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			{
				Name:         config.ServerCommand,
				Usage:        "run the control plane, and a node in the same process unless --disable-agent",
				Flags:        flagsFor(config.ServerOptions()),
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					return runServer(c, stderr)
				},
			},
			{
				Name:         config.AgentCommand,
				Usage:        "join a server as a node",
				Flags:        flagsFor(config.AgentOptions()),
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					return runAgent(c, stderr)
				},
			},
			imagesCommand(),
			tokenCommand(),
			snapshotCommand(),
			secretsEncryptCommand(),
			checkConfigCommand(),
			{
				Name:  "version",
				Usage: "print the orch version, git commit, Go version and Kubernetes API version",
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("version takes no arguments, got %q", c.Args().Slice())
					}
					_, err := io.WriteString(c.App.Writer, version.Get().String())
					return err
				},
			},
		},
	}
}

// usageError keeps a mistyped flag to one line instead of a page of help.
func usageError(c *cli.Context, err error, _ bool) error {
	name := "orch"
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		name += " " + c.Command.Name
	}
	return fmt.Errorf("%w (see `%s --help`)", err, name)
}

// flagsFor turns config options into CLI flags. Values stay text: parsing
// and checking happen in internal/config, which knows where each value came
// from, so a bad port reads the same from a flag, the env or the file.
func flagsFor(opts []config.Option) []cli.Flag {
	flags := make([]cli.Flag, 0, len(opts))
	for _, o := range opts {
		usage := fmt.Sprintf("%s [$%s]", o.Usage, o.EnvVar())
		if o.Bool {
			flags = append(flags, &cli.BoolFlag{Name: o.Name, Usage: usage})
			continue
		}
		if o.List {
			flags = append(flags, &cli.StringSliceFlag{Name: o.Name, Usage: usage})
			continue
		}
		flags = append(flags, &cli.StringFlag{Name: o.Name, Usage: usage, Value: o.Default})
	}
	return flags
}

// sources reports only the flags the user actually gave, so that a default
// never hides a value from the environment or the file.
func sources(c *cli.Context, opts []config.Option) config.Sources {
	set := make(map[string]string)
	for _, o := range opts {
		if !c.IsSet(o.Name) {
			continue
		}
		if o.Bool {
			set[o.Name] = strconv.FormatBool(c.Bool(o.Name))
		} else if o.List {
			set[o.Name] = strings.Join(c.StringSlice(o.Name), ",")
		} else {
			set[o.Name] = c.String(o.Name)
		}
	}
	return config.Sources{Flags: set}
}

func runServer(c *cli.Context, stderr io.Writer) error {
	src := sources(c, config.ServerOptions())
	cfg, err := config.Server(src)
	if err != nil {
		return configError(err)
	}
	logs, closeLogs, err := openLog(c.Context, config.ServerCommand, src, stderr)
	if err != nil {
		return err
	}
	defer closeLogs()
	cfg.Logger = newLogger(logs, cfg.Debug)
	v := version.Get()
	cfg.Logger.Info("starting orch server", "version", v.Version, "commit", v.GitCommit,
		"kubernetes", v.Kubernetes, "dataDir", cfg.DataDir, "listen", listenAddr(cfg.BindAddress, cfg.HTTPSPort))
	go releaseStartupText(c.Context, cfg.Logger)
	if cfg.DisableAgent {
		return finished(c.Context, server.Run(c.Context, cfg))
	}
	puller, err := imagePuller(config.ServerCommand, src, cfg.Logger)
	if err != nil {
		return err
	}
	nodeCfg, err := config.ServerLocalNode(src)
	if err != nil {
		return configError(err)
	}
	// The server is also a node: its agent half runs beside it and talks
	// to it over TLS on this machine, with a node certificate.
	local := make(chan server.LocalNode, 1)
	cfg.LocalNode = local
	g, ctx := errgroup.WithContext(c.Context)
	g.Go(func() error { return server.Run(ctx, cfg) })
	g.Go(func() error {
		var node server.LocalNode
		select {
		case node = <-local:
		case <-ctx.Done():
			return nil
		}
		hc, err := nodeHTTPClient(node)
		if err != nil {
			return err
		}
		acfg := agent.Config{
			ServerURL: node.ServerURL, NodeName: cfg.NodeName, DataDir: cfg.DataDir, Debug: cfg.Debug,
			Logger: cfg.Logger.With("component", "agent"), HTTPClient: hc, ServerNode: true,
			ImagePuller: puller, CgroupRoot: nodeCfg.CgroupRoot, KillPodsOnStop: nodeCfg.KillPodsOnStop,
			NodeIP: nodeCfg.NodeIP, NodeExternalIP: nodeCfg.NodeExternalIP, ResolvConf: nodeCfg.ResolvConf,
		}
		if cfg.FlannelBackend != "none" {
			acfg.Network = &agent.NetworkConfig{ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, Backend: cfg.FlannelBackend}
			if !slices.Contains(cfg.Disable, server.DisableIngress) {
				acfg.Network.IngressHTTPPort, acfg.Network.IngressHTTPSPort = 80, 443
			}
		}
		err = agent.Run(ctx, acfg)
		if err != nil && ctx.Err() == nil {
			// A box that cannot run pods (no memory cgroup, not root) still
			// serves the control plane; say why it is not a node.
			cfg.Logger.Error("this server is not running pods; start it with --disable-agent to silence this", "err", err)
		}
		return nil
	})
	return finished(c.Context, g.Wait())
}

// nodeHTTPClient is the in-process agent's client: the cluster CA and the
// node's certificate, HTTP/2, no overall timeout (watches are long).
func nodeHTTPClient(node server.LocalNode) (*http.Client, error) {
	pair, err := tls.X509KeyPair(node.CertPEM, node.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("local node certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(node.CAPEM) {
		return nil, errors.New("local node: no CA certificate")
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}, nil
}

func runAgent(c *cli.Context, stderr io.Writer) error {
	src := sources(c, config.AgentOptions())
	cfg, err := config.Agent(src)
	if err != nil {
		return configError(err)
	}
	logs, closeLogs, err := openLog(c.Context, config.AgentCommand, src, stderr)
	if err != nil {
		return err
	}
	defer closeLogs()
	cfg.Logger = newLogger(logs, cfg.Debug)
	v := version.Get()
	cfg.Logger.Info("starting orch agent", "version", v.Version, "commit", v.GitCommit,
		"server", cfg.ServerURL, "node", cfg.NodeName, "dataDir", cfg.DataDir)
	go releaseStartupText(c.Context, cfg.Logger)
	if cfg.ImagePuller, err = imagePuller(config.AgentCommand, src, cfg.Logger); err != nil {
		return err
	}
	return finished(c.Context, agent.Run(c.Context, cfg))
}

// textReleaseDelay is how long after its start a server or agent gives
// the kernel back the pages of its binary that starting touched: by then
// it has registered, listed and synced, and an idle process needs few of
// them again (internal/textpages).
const textReleaseDelay = time.Minute

func releaseStartupText(ctx context.Context, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(textReleaseDelay):
	}
	n, err := textpages.Release()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		log.Warn("cannot release the binary's start-up pages", "err", err)
		return
	}
	log.Debug("released the binary's start-up pages", "mapped", n, "err", err)
}

// imagePuller pulls pods' images from registries as the --private-registry
// file (registries.yaml) says; without the file, from the registries the
// image names.
func imagePuller(command string, src config.Sources, log *slog.Logger) (agent.ImagePuller, error) {
	path, err := config.PrivateRegistry(command, src)
	if err != nil {
		return nil, configError(err)
	}
	rc, err := registry.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	p, err := registry.New(registry.Options{Config: rc, Logger: log.With("component", "registry"), UserAgent: "orch/" + version.Get().Version})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// finished treats a shutdown we were asked for as success.
func finished(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// configError lists every configuration problem on its own line.
func configError(err error) error {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return fmt.Errorf("bad configuration: %w", err)
	}
	return fmt.Errorf("bad configuration:\n  %s", strings.Join(lines, "\n  "))
}

// openLog picks where logs go: the --log file, rotated by size and
// reopened on SIGHUP (after logrotate moved it), or stderr.
func openLog(ctx context.Context, command string, src config.Sources, stderr io.Writer) (io.Writer, func(), error) {
	opts, err := config.Logging(command, src)
	if err != nil {
		return nil, nil, configError(err)
	}
	if opts.Path == "" {
		return stderr, func() {}, nil
	}
	lf, err := logfile.Open(opts)
	if err != nil {
		return nil, nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lf.ReopenOn(ctx, hup, func(err error) { fmt.Fprintf(stderr, "orch: %v\n", err) })
	}()
	return lf, func() {
		signal.Stop(hup)
		cancel()
		<-done
		lf.Close()
	}, nil
}

func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func listenAddr(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}
