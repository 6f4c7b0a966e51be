package config

import (
	"strings"
	"testing"
)

func TestServerLocalNode(t *testing.T) {
	tests := []struct {
		name    string
		in      input
		want    LocalNode
		wantErr []string
	}{
		{name: "defaults", want: LocalNode{CgroupRoot: "/orch"}},
		{name: "flags", in: input{flags: map[string]string{"cgroup-root": "/pods/", "kill-pods-on-stop": "true"}},
			want: LocalNode{CgroupRoot: "/pods", KillPodsOnStop: true}},
		{name: "file", in: input{file: "cgroup-root: /edge\nkill-pods-on-stop: true\n"},
			want: LocalNode{CgroupRoot: "/edge", KillPodsOnStop: true}},
		{name: "env beats file", in: input{file: "kill-pods-on-stop: true\n", env: map[string]string{"ORCH_KILL_PODS_ON_STOP": "false"}},
			want: LocalNode{CgroupRoot: "/orch"}},
		{name: "node addresses", in: input{file: "node-ip: 198.18.0.1\nnode-external-ip: 203.0.113.7\n"},
			want: LocalNode{CgroupRoot: "/orch", NodeIP: "198.18.0.1", NodeExternalIP: "203.0.113.7"}},
		{name: "resolv.conf", in: input{flags: map[string]string{"resolv-conf": "/etc/orch/resolv.conf"}},
			want: LocalNode{CgroupRoot: "/orch", ResolvConf: "/etc/orch/resolv.conf"}},
		{name: "resolv.conf is a file", in: input{env: map[string]string{"ORCH_RESOLV_CONF": "/etc/"}},
			wantErr: []string{`resolv-conf: "/etc/" names a directory, want a file`}},
		{name: "bad external IP", in: input{flags: map[string]string{"node-external-ip": "203.0.113"}},
			wantErr: []string{`node-external-ip: "203.0.113" is not an IP address (e.g. 192.168.1.10) (from flag --node-external-ip)`}},
		{name: "bad values", in: input{env: map[string]string{"ORCH_KILL_PODS_ON_STOP": "sometimes", "ORCH_CGROUP_ROOT": "orch"}},
			wantErr: []string{`kill-pods-on-stop: "sometimes" is not a boolean`, "env ORCH_KILL_PODS_ON_STOP", `cgroup-root: "orch" is not an absolute path`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.in.sources(t)
			got, err := ServerLocalNode(src)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ServerLocalNode = %+v, want an error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				// orch server reports the same problems with the rest.
				if _, serr := Server(src); serr == nil || !strings.Contains(serr.Error(), tc.wantErr[0]) {
					t.Errorf("Server() error %v, want it to report %q too", serr, tc.wantErr[0])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ServerLocalNode = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAgentKillPodsOnStop(t *testing.T) {
	for _, tc := range []struct {
		in   input
		want bool
	}{
		{in: input{flags: map[string]string{"join": "https://10.0.0.1:6443"}}, want: false},
		{in: input{flags: map[string]string{"join": "https://10.0.0.1:6443", "kill-pods-on-stop": "true"}}, want: true},
		{in: input{flags: map[string]string{"join": "https://10.0.0.1:6443"}, file: "kill-pods-on-stop: true\n"}, want: true},
	} {
		cfg, err := Agent(tc.in.sources(t))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.KillPodsOnStop != tc.want {
			t.Errorf("%+v: KillPodsOnStop = %v, want %v", tc.in, cfg.KillPodsOnStop, tc.want)
		}
	}
}

func TestAgentResolvConf(t *testing.T) {
	join := map[string]string{"join": "https://10.0.0.1:6443"}
	for _, tc := range []struct {
		in   input
		want string
	}{
		{in: input{flags: join}, want: ""},
		{in: input{flags: join, file: "resolv-conf: /run/orch/resolv.conf\n"}, want: "/run/orch/resolv.conf"},
		{in: input{flags: join, env: map[string]string{"ORCH_RESOLV_CONF": "/etc/resolv.upstream"}}, want: "/etc/resolv.upstream"},
	} {
		cfg, err := Agent(tc.in.sources(t))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ResolvConf != tc.want {
			t.Errorf("%+v: ResolvConf = %q, want %q", tc.in, cfg.ResolvConf, tc.want)
		}
	}
}
