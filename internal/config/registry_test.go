package config

import (
	"strings"
	"testing"
)

func TestPrivateRegistry(t *testing.T) {
	tests := []struct {
		name    string
		command string
		in      input
		want    string
		wantErr string
	}{
		{name: "default", command: ServerCommand, want: "/etc/orch/registries.yaml"},
		{name: "flag", command: AgentCommand, in: input{flags: map[string]string{"private-registry": "/etc/reg.yaml"}}, want: "/etc/reg.yaml"},
		{name: "env", command: AgentCommand, in: input{env: map[string]string{"ORCH_PRIVATE_REGISTRY": "/x/r.yaml"}}, want: "/x/r.yaml"},
		{name: "config file", command: ServerCommand, in: input{file: "private-registry: /y/r.yaml\n"}, want: "/y/r.yaml"},
		{name: "directory", command: ServerCommand, in: input{flags: map[string]string{"private-registry": "/etc/"}},
			wantErr: `private-registry: "/etc/" names a directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PrivateRegistry(tt.command, tt.in.sources(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("PrivateRegistry error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PrivateRegistry = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
