package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/agent"
	"github.com/orch-dev/orch/internal/logfile"
	"github.com/orch-dev/orch/server"
)

// input is one test's view of the world: command line, environment and
// config file contents ("" means no file at all).
type input struct {
	flags map[string]string
	env   map[string]string
	file  string
}

func (in input) sources(t *testing.T) Sources {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if in.file != "" {
		if err := os.WriteFile(path, []byte(in.file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return Sources{
		Flags:       in.flags,
		LookupEnv:   func(k string) (string, bool) { v, ok := in.env[k]; return v, ok },
		Hostname:    func() (string, error) { return "Test-Host", nil },
		DefaultFile: path,
	}
}

func defaultServer() server.Config {
	return server.Config{
		DataDir:           "/var/lib/orch",
		BindAddress:       "0.0.0.0",
		HTTPSPort:         6443,
		NodeName:          "test-host",
		ClusterCIDR:       netip.MustParsePrefix("10.42.0.0/16"),
		ServiceCIDR:       netip.MustParsePrefix("10.43.0.0/16"),
		WriteKubeconfig:   "/etc/orch/orch.yaml",
		KubeconfigMode:    0o600,
		NodeGracePeriod:   40 * time.Second,
		SnapshotInterval:  12 * time.Hour,
		SnapshotRetention: 5,
		FlannelBackend:    "auto",
	}
}

func TestServerPrecedence(t *testing.T) {
	tests := []struct {
		name string
		in   input
		want func(*server.Config)
	}{
		{name: "defaults", want: func(*server.Config) {}},
		{
			name: "file values",
			in: input{file: "https-listen-port: 7443\ndisable-agent: true\nnode-name: pi1\ntoken: s3cret\n" +
				"cluster-cidr: 10.100.0.0/16\nservice-cidr: \"10.101.0.0/16\"\nwrite-kubeconfig: /root/kube.yaml\n"},
			want: func(c *server.Config) {
				c.HTTPSPort, c.DisableAgent, c.NodeName, c.Token = 7443, true, "pi1", "s3cret"
				c.ClusterCIDR = netip.MustParsePrefix("10.100.0.0/16")
				c.ServiceCIDR = netip.MustParsePrefix("10.101.0.0/16")
				c.WriteKubeconfig = "/root/kube.yaml"
			},
		},
		{
			name: "env beats file",
			in: input{
				file: "https-listen-port: 7443\ndebug: false\n",
				env:  map[string]string{"ORCH_HTTPS_LISTEN_PORT": "8443", "ORCH_DEBUG": "true"},
			},
			want: func(c *server.Config) { c.HTTPSPort, c.Debug = 8443, true },
		},
		{
			name: "flag beats env and file",
			in: input{
				file:  "https-listen-port: 7443\ndisable-agent: true\n",
				env:   map[string]string{"ORCH_HTTPS_LISTEN_PORT": "8443", "ORCH_DISABLE_AGENT": "true"},
				flags: map[string]string{"https-listen-port": "9443", "disable-agent": "false"},
			},
			want: func(c *server.Config) { c.HTTPSPort = 9443 },
		},
		{
			name: "empty env var counts as unset",
			in: input{
				file: "data-dir: /srv/orch\n",
				env:  map[string]string{"ORCH_DATA_DIR": ""},
			},
			want: func(c *server.Config) { c.DataDir = "/srv/orch" },
		},
		{
			name: "paths cleaned, address normalized",
			in:   input{flags: map[string]string{"data-dir": "/srv//orch/", "bind-address": "::ffff:127.0.0.1"}},
			want: func(c *server.Config) { c.DataDir, c.BindAddress = "/srv/orch", "::ffff:127.0.0.1" },
		},
		{
			name: "ipv6 networks",
			in:   input{flags: map[string]string{"cluster-cidr": "fd00:42::/56", "service-cidr": "fd00:43::/112"}},
			want: func(c *server.Config) {
				c.ClusterCIDR = netip.MustParsePrefix("fd00:42::/56")
				c.ServiceCIDR = netip.MustParsePrefix("fd00:43::/112")
			},
		},
		{
			name: "empty file",
			in:   input{file: "# nothing here\n"},
			want: func(*server.Config) {},
		},
		{
			name: "disable as a list in the file",
			in:   input{file: "disable:\n  - local-storage\n  - ingressclass\n"},
			want: func(c *server.Config) { c.Disable = []string{"local-storage", "ingressclass"} },
		},
		{
			name: "disable inline list, flag wins",
			in: input{
				file:  "disable: [local-storage]\n",
				flags: map[string]string{"disable": "ingressclass"},
			},
			want: func(c *server.Config) { c.Disable = []string{"ingressclass"} },
		},
		{
			name: "disable comma-separated in env",
			in:   input{env: map[string]string{"ORCH_DISABLE": "local-storage, ingressclass,"}},
			want: func(c *server.Config) { c.Disable = []string{"local-storage", "ingressclass"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Server(tt.in.sources(t))
			if err != nil {
				t.Fatalf("Server: %v", err)
			}
			want := defaultServer()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Server =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestServerConfigFileLocation(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "named.yaml")
	if err := os.WriteFile(named, []byte("https-listen-port: 1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	tests := []struct {
		name     string
		in       input
		wantPort int
		wantErr  string
	}{
		{name: "missing default file is fine", wantPort: 6443},
		{name: "--config", in: input{flags: map[string]string{"config": named}}, wantPort: 1234},
		{name: "ORCH_CONFIG", in: input{env: map[string]string{"ORCH_CONFIG": named}}, wantPort: 1234},
		{name: "flag beats ORCH_CONFIG", in: input{flags: map[string]string{"config": named},
			env: map[string]string{"ORCH_CONFIG": missing}}, wantPort: 1234},
		{name: "missing --config", in: input{flags: map[string]string{"config": missing}},
			wantErr: "config: open " + missing + ": no such file or directory (from flag --config)"},
		{name: "missing ORCH_CONFIG", in: input{env: map[string]string{"ORCH_CONFIG": missing}},
			wantErr: "(from env ORCH_CONFIG)"},
		{name: "directory as --config", in: input{flags: map[string]string{"config": dir}},
			wantErr: "is a directory (from flag --config)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Server(tt.in.sources(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.HTTPSPort != tt.wantPort {
				t.Errorf("HTTPSPort = %d, want %d", cfg.HTTPSPort, tt.wantPort)
			}
		})
	}
}

func TestServerBadInput(t *testing.T) {
	tests := []struct {
		name string
		in   input
		want []string // substrings of the error, in any order
	}{
		// Ports.
		{name: "port not a number (flag)", in: input{flags: map[string]string{"https-listen-port": "abc"}},
			want: []string{`https-listen-port: "abc" is not a port number (from flag --https-listen-port)`}},
		{name: "port not a number (env)", in: input{env: map[string]string{"ORCH_HTTPS_LISTEN_PORT": "64k"}},
			want: []string{`https-listen-port: "64k" is not a port number (from env ORCH_HTTPS_LISTEN_PORT)`}},
		{name: "port not a number (file)", in: input{file: "\n\nhttps-listen-port: 1.5\n"},
			want: []string{`https-listen-port: "1.5" is not a port number (from `, `config.yaml:3)`}},
		{name: "port zero", in: input{flags: map[string]string{"https-listen-port": "0"}},
			want: []string{"port 0 is out of range 1-65535"}},
		{name: "port too high", in: input{file: "https-listen-port: 70000"},
			want: []string{"https-listen-port: port 70000 is out of range 1-65535", "config.yaml:1"}},
		// CIDRs.
		{name: "bad cidr", in: input{flags: map[string]string{"cluster-cidr": "10.42.0.0"}},
			want: []string{`cluster-cidr: "10.42.0.0" is not a CIDR`}},
		{name: "cidr mask too long", in: input{env: map[string]string{"ORCH_SERVICE_CIDR": "10.43.0.0/33"}},
			want: []string{`service-cidr: "10.43.0.0/33" is not a CIDR`, "env ORCH_SERVICE_CIDR"}},
		{name: "cidr host bits", in: input{flags: map[string]string{"cluster-cidr": "10.42.1.0/16"}},
			want: []string{`"10.42.1.0/16" has host bits set; did you mean 10.42.0.0/16?`}},
		{name: "overlapping cidrs", in: input{file: "service-cidr: 10.42.128.0/17\n"},
			want: []string{"service-cidr: 10.42.128.0/17 overlaps cluster-cidr 10.42.0.0/16 (from default)", "config.yaml:1)"}},
		{name: "overlapping cidrs, both set", in: input{flags: map[string]string{"cluster-cidr": "10.0.0.0/8", "service-cidr": "10.43.0.0/16"}},
			want: []string{"overlaps cluster-cidr 10.0.0.0/8 (from flag --cluster-cidr)"}},
		{name: "cluster cidr too small", in: input{flags: map[string]string{"cluster-cidr": "10.42.0.0/25"}},
			want: []string{"cluster-cidr: 10.42.0.0/25 is too small: each node takes a /24 of it"}},
		{name: "service cidr too large", in: input{flags: map[string]string{"service-cidr": "10.128.0.0/9"}},
			want: []string{"service-cidr: 10.128.0.0/9 is too large: at most a /12"}},
		{name: "mixed families", in: input{flags: map[string]string{"service-cidr": "fd00::/112"}},
			want: []string{"must be the same IP family"}},
		// Paths.
		{name: "relative data dir", in: input{file: "data-dir: var/lib/orch\n"},
			want: []string{`data-dir: "var/lib/orch" is not an absolute path`}},
		{name: "empty data dir", in: input{file: "data-dir: ''\n"},
			want: []string{"data-dir: must not be empty"}},
		{name: "kubeconfig is a directory", in: input{flags: map[string]string{"write-kubeconfig": "/etc/orch/"}},
			want: []string{"names a directory"}},
		// Other values.
		{name: "bad kubeconfig mode", in: input{flags: map[string]string{"write-kubeconfig-mode": "rw-r--r--"}},
			want: []string{`write-kubeconfig-mode: "rw-r--r--" is not a file mode`}},
		{name: "kubeconfig mode out of range", in: input{file: "write-kubeconfig-mode: 7777\n"},
			want: []string{`write-kubeconfig-mode: "7777" is not a file mode`}},
		{name: "bad snapshot retention", in: input{flags: map[string]string{"snapshot-retention": "-1"}},
			want: []string{`snapshot-retention: "-1" is not a positive whole number`}},
		{name: "snapshot interval too short", in: input{flags: map[string]string{"snapshot-interval": "10s"}},
			want: []string{"snapshot-interval: 10s is shorter than the minimum 1m0s"}},
		{name: "bad grace period", in: input{env: map[string]string{"ORCH_NODE_MONITOR_GRACE_PERIOD": "forty"}},
			want: []string{`node-monitor-grace-period: "forty" is not a duration`}},
		{name: "grace period too short", in: input{flags: map[string]string{"node-monitor-grace-period": "1s"}},
			want: []string{"node-monitor-grace-period: 1s is shorter than the minimum 5s"}},
		{name: "bad bool", in: input{file: "debug: maybe\n"},
			want: []string{`debug: "maybe" is not a boolean (want true or false)`}},
		{name: "bad bool env", in: input{env: map[string]string{"ORCH_DISABLE_AGENT": "yes"}},
			want: []string{`disable-agent: "yes" is not a boolean`, "env ORCH_DISABLE_AGENT"}},
		{name: "bad bind address", in: input{flags: map[string]string{"bind-address": "localhost"}},
			want: []string{`bind-address: "localhost" is not an IP address`}},
		{name: "bad node name", in: input{flags: map[string]string{"node-name": "Pi_1"}},
			want: []string{`node-name: "Pi_1" cannot name a node`}},
		{name: "token with spaces is not echoed", in: input{env: map[string]string{"ORCH_TOKEN": "top secret"}},
			want: []string{"token: contains spaces or control characters (value not shown) (from env ORCH_TOKEN)"}},
		{name: "several problems at once", in: input{flags: map[string]string{"https-listen-port": "x", "debug": "x"}},
			want: []string{"https-listen-port:", "debug:"}},
		// The file itself.
		{name: "unknown key with suggestion", in: input{file: "debug: true\nhttps-port: 6443\n"},
			want: []string{`https-port: unknown key; did you mean "https-listen-port"? (from `, "config.yaml:2)"}},
		{name: "typo", in: input{file: "cluster-cdir: 10.42.0.0/16\n"},
			want: []string{`did you mean "cluster-cidr"?`}},
		{name: "underscores", in: input{file: "data_dir: /x\n"},
			want: []string{`data_dir: unknown key; did you mean "data-dir"?`}},
		{name: "unknown key without suggestion", in: input{file: "colour: blue\n"},
			want: []string{"colour: unknown key (from "}},
		{name: "agent key in server config", in: input{file: "join: https://a:6443\n"},
			want: []string{"join: unknown key: it is a setting of `orch agent`, not `orch server`"}},
		{name: "config inside config", in: input{file: "config: /etc/other.yaml\n"},
			want: []string{"config: cannot be set inside a config file"}},
		{name: "duplicate key", in: input{file: "debug: true\ndebug: false\n"},
			want: []string{"debug: set twice in the file, first on line 1", "config.yaml:2"}},
		{name: "null value", in: input{file: "token:\n"},
			want: []string{"token: has no value"}},
		{name: "list value", in: input{file: "node-name:\n  - a\n  - b\n"},
			want: []string{"node-name: want a single value, got a list"}},
		{name: "list of lists", in: input{file: "disable:\n  - [a]\n"},
			want: []string{"disable: list items must be single values, got a list on line 2"}},
		{name: "list item with comma", in: input{file: "disable: ['a,b']\n"},
			want: []string{`disable: list item "a,b" on line 1 contains a comma`}},
		{name: "disable a path", in: input{flags: map[string]string{"disable": "../etc/passwd"}},
			want: []string{`disable: "../etc/passwd" is not a name`}},
		{name: "bad log size", in: input{flags: map[string]string{"log-max-size": "10M"}},
			want: []string{`log-max-size: "10M" is not a positive whole number`}},
		{name: "not a mapping", in: input{file: "- debug\n"},
			want: []string{"want a mapping of flag names to values", "config.yaml:1"}},
		{name: "not yaml", in: input{file: "debug: [\n"},
			want: []string{"config.yaml: not valid YAML", "line"}},
		{name: "tab indentation", in: input{file: "debug: true\n\tnode-name: x\n"},
			want: []string{"not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Server(tt.in.sources(t))
			if err == nil {
				t.Fatalf("Server succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "top secret") {
				t.Errorf("error %q leaks the token", err)
			}
		})
	}
}

func TestLogging(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command string
		in      input
		want    logfile.Options
		wantErr string
	}{
		{name: "stderr by default", command: ServerCommand,
			want: logfile.Options{MaxSize: 10 << 20, MaxBackups: 3}},
		{name: "file from flag, relative", command: AgentCommand,
			in:   input{flags: map[string]string{"log": "orch.log", "log-max-size": "1", "log-max-backups": "0"}},
			want: logfile.Options{Path: filepath.Join(wd, "orch.log"), MaxSize: 1 << 20}},
		{name: "file from config", command: ServerCommand,
			in:   input{file: "log: /var/log/orch.log\nlog-max-backups: 7\n"},
			want: logfile.Options{Path: "/var/log/orch.log", MaxSize: 10 << 20, MaxBackups: 7}},
		{name: "bad backups", command: AgentCommand,
			in:      input{env: map[string]string{"ORCH_LOG_MAX_BACKUPS": "-2"}},
			wantErr: `log-max-backups: "-2" is not a positive whole number (from env ORCH_LOG_MAX_BACKUPS)`},
		{name: "log names a directory", command: ServerCommand,
			in:      input{flags: map[string]string{"log": "/var/log/"}},
			wantErr: "log: \"/var/log/\" names a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Logging(tt.command, tt.in.sources(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Logging error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Logging = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	in := input{flags: map[string]string{"https-listen-port": "abc"}}
	_, err := Server(in.sources(t))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	if cerr.Key != "https-listen-port" || cerr.Origin.String() != "flag --https-listen-port" {
		t.Errorf("Error = %+v, origin %s", cerr, cerr.Origin)
	}
}

func TestNodeNameDefault(t *testing.T) {
	tests := []struct {
		host    string
		hostErr error
		want    string
		wantErr string
	}{
		{host: "Pi-Kitchen", want: "pi-kitchen"},
		{host: "box.lan", want: "box.lan"},
		{host: "bad_host", wantErr: `node-name: host name "bad_host" cannot name a node`},
		{hostErr: errors.New("uname broke"), wantErr: "host name is unreadable (uname broke); set --node-name"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			src := input{}.sources(t)
			src.Hostname = func() (string, error) { return tt.host, tt.hostErr }
			cfg, err := Server(src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.NodeName != tt.want {
				t.Errorf("NodeName = %q, want %q", cfg.NodeName, tt.want)
			}
		})
	}
}

func TestWriteKubeconfigRelative(t *testing.T) {
	in := input{flags: map[string]string{"write-kubeconfig": "kube.yaml"}}
	cfg, err := Server(in.sources(t))
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "kube.yaml"); cfg.WriteKubeconfig != want {
		t.Errorf("WriteKubeconfig = %q, want %q", cfg.WriteKubeconfig, want)
	}
}

func TestAgent(t *testing.T) {
	base := agent.Config{ServerURL: "https://10.0.0.1:6443", Token: "K10abc::server:def", NodeName: "test-host", DataDir: "/var/lib/orch", CgroupRoot: "/orch",
		TunnelKeepalive: 10 * time.Second,
		Network: &agent.NetworkConfig{ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.43.0.0/16"), Backend: "auto",
			IngressHTTPPort: 80, IngressHTTPSPort: 443}}
	tests := []struct {
		name    string
		in      input
		want    func(*agent.Config)
		wantErr []string
	}{
		{name: "flags", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def"}},
			want: func(*agent.Config) {}},
		{name: "file and env", in: input{file: "join: https://10.0.0.1:6443\ntoken: wrong\ndebug: true\n",
			env: map[string]string{"ORCH_TOKEN": "K10abc::server:def", "ORCH_NODE_NAME": "pi2"}},
			want: func(c *agent.Config) { c.Debug, c.NodeName = true, "pi2" }},
		{name: "port defaults to 6443", in: input{flags: map[string]string{"join": "https://10.0.0.1/", "token": "K10abc::server:def"}},
			want: func(*agent.Config) {}},
		{name: "ipv6 server", in: input{flags: map[string]string{"join": "https://[fd00::1]", "token": "K10abc::server:def"}},
			want: func(c *agent.Config) { c.ServerURL = "https://[fd00::1]:6443" }},
		{name: "join missing", in: input{flags: map[string]string{"token": "t"}},
			wantErr: []string{"join: required: the server to join"}},
		{name: "token missing: already joined", in: input{flags: map[string]string{"join": "https://a:6443"}},
			want: func(c *agent.Config) { c.ServerURL, c.Token = "https://a:6443", "" }},
		{name: "http join", in: input{flags: map[string]string{"join": "http://a:6443", "token": "t"}},
			wantErr: []string{`join: "http://a:6443" must start with https:// (from flag --join)`}},
		{name: "join with path", in: input{file: "join: https://a:6443/api\ntoken: t\n"},
			wantErr: []string{`join: "https://a:6443/api" must be just https://HOST:PORT`, "config.yaml:1"}},
		{name: "join bad port", in: input{flags: map[string]string{"join": "https://a:99999", "token": "t"}},
			wantErr: []string{"has a bad port"}},
		{name: "join no host", in: input{flags: map[string]string{"join": "https://:6443", "token": "t"}},
			wantErr: []string{"has no host"}},
		{name: "server key in agent config", in: input{file: "write-kubeconfig: /root/kube.yaml\n"},
			wantErr: []string{"write-kubeconfig: unknown key: it is a setting of `orch server`, not `orch agent`"}},
		{name: "pod network", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def", "flannel-backend": "vxlan", "cluster-cidr": "10.100.0.0/16"}},
			want: func(c *agent.Config) {
				c.Network = &agent.NetworkConfig{ClusterCIDR: netip.MustParsePrefix("10.100.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.43.0.0/16"), Backend: "vxlan",
					IngressHTTPPort: 80, IngressHTTPSPort: 443}
			}},
		{name: "disable ingress", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def", "disable": "ingress"}},
			want: func(c *agent.Config) {
				c.Network = &agent.NetworkConfig{ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.43.0.0/16"), Backend: "auto"}
			}},
		{name: "disable a manifest on an agent", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "disable": "local-storage"}},
			wantErr: []string{`disable: "local-storage" is no component an agent runs (want ingress)`}},
		{name: "bad backend", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "flannel-backend": "wireguard"}},
			wantErr: []string{`flannel-backend: "wireguard" is not one of none, host-gw, vxlan, auto`}},
		{name: "cgroup root", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def", "cgroup-root": "/orch-test/"}},
			want: func(c *agent.Config) { c.CgroupRoot = "/orch-test" }},
		{name: "node addresses", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def", "node-ip": "10.0.0.7", "node-external-ip": "::ffff:203.0.113.7"}},
			want: func(c *agent.Config) { c.NodeIP, c.NodeExternalIP = "10.0.0.7", "203.0.113.7" }},
		{name: "external IP from the environment", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def"},
			env: map[string]string{"ORCH_NODE_EXTERNAL_IP": "203.0.113.7"}},
			want: func(c *agent.Config) { c.NodeExternalIP = "203.0.113.7" }},
		{name: "bad external IP", in: input{flags: map[string]string{"join": "https://a", "token": "t", "node-external-ip": "example.com"}},
			wantErr: []string{`node-external-ip: "example.com" is not an IP address (e.g. 192.168.1.10) (from flag --node-external-ip)`}},
		{name: "IPv6 external IP", in: input{file: "join: https://a\ntoken: t\nnode-external-ip: 2001:db8::7\n"},
			wantErr: []string{`node-external-ip: "2001:db8::7" is not an IPv4 address`, "config.yaml:3"}},
		{name: "unspecified node IP", in: input{flags: map[string]string{"join": "https://a", "token": "t", "node-ip": "0.0.0.0"}},
			wantErr: []string{`node-ip: "0.0.0.0" cannot be a node's address`}},
		{name: "tunnel keepalive", in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "token": "K10abc::server:def", "tunnel-keepalive": "30s"}},
			want: func(c *agent.Config) { c.TunnelKeepalive = 30 * time.Second }},
		{name: "tunnel keepalive too short", in: input{flags: map[string]string{"join": "https://a", "token": "t", "tunnel-keepalive": "500ms"}},
			wantErr: []string{`tunnel-keepalive: 500ms is shorter than the minimum 1s`}},
		{name: "relative cgroup root", in: input{flags: map[string]string{"join": "https://a", "token": "t", "cgroup-root": "orch"}},
			wantErr: []string{`cgroup-root: "orch" is not an absolute path (from flag --cgroup-root)`}},
		{name: "relative data dir", in: input{flags: map[string]string{"join": "https://a", "token": "t", "data-dir": "data"}},
			wantErr: []string{`data-dir: "data" is not an absolute path (from flag --data-dir)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Agent(tt.in.sources(t))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Agent succeeded, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := base
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Agent =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestOptionsAreConsistent(t *testing.T) {
	for cmd, opts := range map[string][]Option{ServerCommand: ServerOptions(), AgentCommand: AgentOptions()} {
		seen := map[string]bool{}
		for _, o := range opts {
			if seen[o.Name] {
				t.Errorf("%s: option %q twice", cmd, o.Name)
			}
			seen[o.Name] = true
			if o.Usage == "" {
				t.Errorf("%s: option %q has no usage", cmd, o.Name)
			}
		}
	}
	if got := (Option{Name: "https-listen-port"}).EnvVar(); got != "ORCH_HTTPS_LISTEN_PORT" {
		t.Errorf("EnvVar = %q", got)
	}
}

func TestClosest(t *testing.T) {
	names := []string{"data-dir", "https-listen-port", "cluster-cidr", "service-cidr", "debug", "token"}
	tests := map[string]string{
		"data-dri":    "data-dir",
		"DATA_DIR":    "data-dir",
		"https-port":  "https-listen-port",
		"listen-port": "https-listen-port",
		"cidr":        "",
		"debgu":       "debug",
		"tokens":      "token",
		"kubeconfig":  "",
		"x":           "",
	}
	for key, want := range tests {
		if got := closest(key, names); got != want {
			t.Errorf("closest(%q) = %q, want %q", key, got, want)
		}
	}
}
