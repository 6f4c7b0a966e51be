// Command storebench compares orch's store (store/bolt) with Debian's etcd
// side by side in one run: 1 KB values, 10,000 creates with 1 and with 16
// concurrent writers, both sides fsyncing. It reports throughput, p50/p99
// latency, bytes on disk per object and RSS after 10,000 objects, idle disk
// writes, and the size of bin/orch. It prints a Markdown section for
// BENCHMARKS.md. Traffic goes to 127.0.0.1 only.
//
// The orch side runs in a child process (this binary with -side=bolt) so
// its RSS is the store's alone; etcd runs as its own server, driven over
// gRPC on loopback by an equivalent client (create-if-absent transactions,
// which is how the Kubernetes API server writes new objects).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
)

// phase is one measured load.
type phase struct {
	Writers   int           `json:"writers"`
	OpsPerSec float64       `json:"opsPerSec"`
	P50       time.Duration `json:"p50"`
	P99       time.Duration `json:"p99"`
	DiskBytes int64         `json:"diskBytes"` // data dir after the phase
	DBBytes   int64         `json:"dbBytes"`   // the database file alone
	RSS       int64         `json:"rss"`
}

type sideResult struct {
	Phases         []phase `json:"phases"`
	IdleWriteBytes int64   `json:"idleWriteBytes"`
}

func main() {
	side := flag.String("side", "", "internal: run one side's load (bolt)")
	dir := flag.String("dir", "", "internal: data directory of the side")
	objects := flag.Int("n", 10000, "objects written per phase")
	idle := flag.Duration("idle", 60*time.Second, "idle measurement period")
	etcd := flag.String("etcd", "/usr/bin/etcd", "etcd binary")
	orch := flag.String("orch", "bin/orch", "orch binary whose size is reported")
	out := flag.String("out", "", "write the Markdown section here too")
	flag.Parse()
	if *side == "bolt" {
		res, err := runBoltSide(*dir, *objects, *idle)
		if err != nil {
			log.Fatalf("storebench bolt side: %v", err)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	report, err := run(*etcd, *orch, *objects, *idle)
	if err != nil {
		log.Fatalf("storebench: %v", err)
	}
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// load runs n creates of 1 KB values split over writers and measures them.
func load(n, writers int, create func(ctx context.Context, key string, value []byte) error) (phase, error) {
	value := make([]byte, 1024)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	lat := make(measure.Latencies, n)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += writers {
				t := time.Now()
				if err := create(context.Background(), fmt.Sprintf("/registry/configmaps/bench/cm-%06d", i), value); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return phase{}, err
	}
	return phase{Writers: writers, OpsPerSec: float64(n) / elapsed.Seconds(),
		P50: lat.Percentile(50), P99: lat.Percentile(99)}, nil
}

// dirBytes is the space the files under dir take on disk, as du counts
// it (preallocated WAL files included).
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// fileSize is a file's apparent size; allocatedSize what it takes on disk
// (bbolt and etcd grow their files ahead of use, partly sparse).
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func allocatedSize(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// runBoltSide is the child process: each phase on a fresh store.
func runBoltSide(dir string, n int, idle time.Duration) (*sideResult, error) {
	res := &sideResult{}
	for _, writers := range []int{1, 16} {
		pdir := filepath.Join(dir, fmt.Sprint("w", writers))
		path := filepath.Join(pdir, "state.db")
		db, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			return nil, err
		}
		p, err := load(n, writers, func(ctx context.Context, key string, value []byte) error {
			_, err := db.Create(ctx, key, value, store.WriteOptions{})
			return err
		})
		if err != nil {
			return nil, err
		}
		if writers == 16 {
			// Idle: nothing writes; measure what the process sends to disk.
			before, _ := measure.ReadProc(os.Getpid())
			time.Sleep(idle)
			after, _ := measure.ReadProc(os.Getpid())
			res.IdleWriteBytes = after.WriteBytes - before.WriteBytes
		}
		self, _ := measure.ReadProc(os.Getpid())
		p.RSS = self.RSSBytes
		p.DiskBytes, p.DBBytes = dirBytes(pdir), allocatedSize(path)
		if err := db.Close(); err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, p)
	}
	return res, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runEtcdSide starts a fresh etcd per phase on loopback and drives it.
func runEtcdSide(etcdBin, dir string, n int, idle time.Duration) (*sideResult, error) {
	res := &sideResult{}
	for _, writers := range []int{1, 16} {
		pdir := filepath.Join(dir, fmt.Sprint("w", writers))
		cport, err := freePort()
		if err != nil {
			return nil, err
		}
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		client := fmt.Sprintf("http://127.0.0.1:%d", cport)
		peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
		cmd := exec.Command(etcdBin, "--name", "bench", "--data-dir", pdir,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "bench="+peer, "--quota-backend-bytes", "8589934592",
			"--log-level", "error")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		logFile, err := os.Create(pdir + ".log")
		if err != nil {
			return nil, err
		}
		cmd.Stderr = logFile
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start etcd: %w", err)
		}
		p, idleBytes, err := driveEtcd(cmd.Process.Pid, client, n, writers, idle)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if err != nil {
			return nil, err
		}
		p.DiskBytes, p.DBBytes = dirBytes(pdir), allocatedSize(filepath.Join(pdir, "member", "snap", "db"))
		res.Phases = append(res.Phases, p)
		if writers == 16 {
			res.IdleWriteBytes = idleBytes
		}
	}
	return res, nil
}

func driveEtcd(pid int, endpoint string, n, writers int, idle time.Duration) (phase, int64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		return phase{}, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for { // wait until etcd answers
		if _, err := cli.Get(ctx, "/ready"); err == nil {
			break
		} else if ctx.Err() != nil {
			return phase{}, 0, fmt.Errorf("etcd did not become ready: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p, err := load(n, writers, func(ctx context.Context, key string, value []byte) error {
		resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(value))).Commit()
		if err == nil && !resp.Succeeded {
			err = fmt.Errorf("%s exists", key)
		}
		return err
	})
	if err != nil {
		return phase{}, 0, err
	}
	var idleBytes int64
	if writers == 16 {
		before, _ := measure.ReadProc(pid)
		time.Sleep(idle)
		after, _ := measure.ReadProc(pid)
		idleBytes = after.WriteBytes - before.WriteBytes
	}
	proc, _ := measure.ReadProc(pid)
	p.RSS = proc.RSSBytes
	return p, idleBytes, nil
}

func run(etcdBin, orchBin string, n int, idle time.Duration) (string, error) {
	dir, err := os.MkdirTemp("", "storebench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(self, "-side=bolt", "-dir", filepath.Join(dir, "bolt"), "-n", fmt.Sprint(n), "-idle", idle.String())
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("bolt side: %w", err)
	}
	var orch sideResult
	if err := json.Unmarshal(outb, &orch); err != nil {
		return "", fmt.Errorf("bolt side output: %w", err)
	}
	etcd, err := runEtcdSide(etcdBin, filepath.Join(dir, "etcd"), n, idle)
	if err != nil {
		return "", fmt.Errorf("etcd side: %w", err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "### Store: orch store/bolt vs etcd %s\n\n", etcdVersion(etcdBin))
	fmt.Fprintf(&b, "Machine: %s. Date: %s. Command: `make bench` (`go run ./internal/bench/storebench -n %d -idle %s`).\n", measure.Machine(), time.Now().UTC().Format("2006-01-02"), n, idle)
	fmt.Fprintf(&b, "%d creates of 1 KB values per phase, fresh data dir per phase, fsync on both sides; orch in-process (it is embedded), etcd over gRPC on 127.0.0.1.\n\n", n)
	b.WriteString("| measure | orch | etcd | orch/etcd |\n|---|---|---|---|\n")
	for i, o := range orch.Phases {
		e := etcd.Phases[i]
		fmt.Fprintf(&b, "| creates/s, %d writer(s) | %.0f | %.0f | %.2f |\n", o.Writers, o.OpsPerSec, e.OpsPerSec, o.OpsPerSec/e.OpsPerSec)
		fmt.Fprintf(&b, "| p50 / p99 latency, %d writer(s) | %s / %s | %s / %s | |\n", o.Writers, measure.Ms(o.P50), measure.Ms(o.P99), measure.Ms(e.P50), measure.Ms(e.P99))
	}
	o, e := orch.Phases[len(orch.Phases)-1], etcd.Phases[len(etcd.Phases)-1]
	fmt.Fprintf(&b, "| disk per object after %d (database file) | %.0f B | %.0f B | %.2f |\n", n, float64(o.DBBytes)/float64(n), float64(e.DBBytes)/float64(n), float64(o.DBBytes)/float64(e.DBBytes))
	fmt.Fprintf(&b, "| disk per object after %d (whole data dir, etcd incl. its WAL) | %.0f B | %.0f B | %.2f |\n", n, float64(o.DiskBytes)/float64(n), float64(e.DiskBytes)/float64(n), float64(o.DiskBytes)/float64(e.DiskBytes))
	fmt.Fprintf(&b, "| RSS after %d objects | %s | %s | %.2f |\n", n, measure.MiB(o.RSS), measure.MiB(e.RSS), float64(o.RSS)/float64(e.RSS))
	fmt.Fprintf(&b, "| bytes written in %s idle | %d | %d | |\n", idle, orch.IdleWriteBytes, etcd.IdleWriteBytes)
	for _, bin := range []string{orchBin, orchBin + "-arm64"} {
		if sz := fileSize(bin); sz > 0 {
			fmt.Fprintf(&b, "| size of `%s` | %s | | |\n", bin, measure.MiB(sz))
		}
	}
	b.WriteString("\n")
	return b.String(), nil
}

func etcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "etcd Version:"))
}
