package bolt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/orch-dev/orch/store"
)

const crashWriterEnv = "ORCH_BOLT_CRASH_WRITER"

// TestCrashKeepsAcknowledgedWrites runs a writer process (this test binary
// again), kills it with SIGKILL in the middle of a concurrent load, and
// checks that every write it acknowledged is in the file after reopening.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if path := os.Getenv(crashWriterEnv); path != "" {
		crashWriter(path)
		return
	}
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), crashWriterEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 2000 {
		key, value, ok := strings.Cut(sc.Text(), " ")
		if ok {
			acked[key] = value
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Writes acknowledged while we were killing it count too.
	for sc.Scan() {
		if key, value, ok := strings.Cut(sc.Text(), " "); ok {
			acked[key] = value
		}
	}
	_ = cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("writer acknowledged only %d writes before it ended", len(acked))
	}

	d, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer d.Close()
	ctx := context.Background()
	for key, value := range acked {
		kv, err := d.Get(ctx, key)
		if err != nil {
			t.Fatalf("acknowledged %s=%s lost: %v", key, value, err)
		}
		// A later, unacknowledged update may have landed; never an older one.
		if string(kv.Value) < value {
			t.Fatalf("%s is %s after the crash, but %s was acknowledged", key, kv.Value, value)
		}
	}
	// The store keeps working after the crash.
	if _, err := d.Create(ctx, "/after-crash", nil, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// crashWriter writes until killed: 16 writers, each creating keys and
// updating them, printing "key value" after each acknowledged write.
func crashWriter(path string) {
	d, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	ack := func(key string, n int) {
		mu.Lock()
		fmt.Fprintf(w, "%s %06d\n", key, n)
		w.Flush()
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			value := make([]byte, 1024)
			for n := 0; ; n++ {
				key := fmt.Sprintf("/crash/%02d/%06d", i, n/4)
				copy(value, fmt.Sprintf("%06d", n))
				var err error
				if n%4 == 0 {
					_, err = d.Create(ctx, key, value[:6], store.WriteOptions{})
				} else {
					var kv *store.KeyValue
					if kv, err = d.Get(ctx, key); err == nil {
						_, err = d.Update(ctx, key, append([]byte(fmt.Sprintf("%06d", n)), value[6:]...), kv.ModRevision, store.WriteOptions{})
					}
				}
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				ack(key, n)
			}
		}(i)
	}
	wg.Wait()
}
