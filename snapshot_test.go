package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/snapshot"
)

// TestSnapshotSaveOnline saves a snapshot of a running server's store:
// the CLI finds the store locked and asks the server, as its admin.
func TestSnapshotSaveOnline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	kubeconfig, dataDir := startTokenServer(t)

	out, _, err := runApp(t, "snapshot", "save", "--data-dir", dataDir, "--kubeconfig", kubeconfig, "--name", "online")
	if err != nil {
		t.Fatalf("snapshot save of a running server: %v", err)
	}
	if !strings.Contains(out, "by the running server") || !strings.Contains(out, snapshot.Dir(dataDir)+"/online-") {
		t.Errorf("snapshot save printed %q", out)
	}
	snaps, err := snapshot.List(snapshot.Dir(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].Name != "online" || snaps[0].Checksum != "ok" || snaps[0].Size == 0 {
		t.Fatalf("snapshots after save: %+v", snaps)
	}
	if out, _, err := runApp(t, "snapshot", "ls", "--data-dir", dataDir); err != nil || !strings.Contains(out, "online") {
		t.Errorf("snapshot ls: %v\n%s", err, out)
	}

	// Bad input is refused before anything is written.
	_, _, err = runApp(t, "snapshot", "save", "--data-dir", dataDir, "--kubeconfig", kubeconfig, "--name", "Not A Name")
	if err == nil || !strings.Contains(err.Error(), `snapshot name "Not A Name"`) {
		t.Errorf("save with a bad name: %v", err)
	}
	_, _, err = runApp(t, "snapshot", "save", "--data-dir", dataDir, "--kubeconfig", dataDir+"/no-such-kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "the server is running") || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("save with a missing kubeconfig: %v", err)
	}
	if snaps, _ := snapshot.List(snapshot.Dir(dataDir)); len(snaps) != 1 {
		t.Errorf("%d snapshots after refused saves, want 1", len(snaps))
	}

	// Only an admin may: a joining agent's bootstrap token may not.
	tokOut, _, err := runApp(t, "token", "create", "--kubeconfig", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jointoken.Parse(tokOut)
	if err != nil {
		t.Fatal(err)
	}
	code, msg := bearerStatus(t, kubeconfig, http.MethodPost, snapshot.APIPath, tok.Secret)
	if code != http.StatusForbidden || !strings.Contains(msg, `cannot post path "/v1-orch/snapshots"`) {
		t.Errorf("snapshot by a bootstrap token: %d %q, want 403", code, msg)
	}
}
