// Command apibench measures `orch server --disable-agent` as a user sees it:
// start to /readyz, idle RSS/CPU/disk writes, ConfigMap create throughput
// and latency with 1 and 16 clients, RSS after 10k ConfigMaps, LIST of 10k
// and `kubectl get cm` of 10k. It prints a Markdown section for
// BENCHMARKS.md. Traffic goes to 127.0.0.1 only.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/orch-dev/orch/internal/bench/measure"
)

func main() {
	orch := flag.String("orch", "bin/orch", "orch binary")
	kubectl := flag.String("kubectl", "/usr/bin/kubectl", "kubectl binary")
	objects := flag.Int("n", 10000, "ConfigMaps to create before measuring LIST")
	idle := flag.Duration("idle", 60*time.Second, "idle measurement period (0: skip the idle rows)")
	out := flag.String("out", "", "write the Markdown section here too")
	hold := flag.Bool("hold", false, "keep the server (with its objects) running after measuring, until interrupted, e.g. to profile it")
	flag.Parse()
	report, err := run(*orch, *kubectl, *objects, *idle, *hold)
	if err != nil {
		log.Fatalf("apibench: %v", err)
	}
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			log.Fatalf("apibench: %v", err)
		}
	}
}

type result struct {
	name  string
	value string
	k3s   string
}

func run(orch, kubectl string, objects int, idle time.Duration, hold bool) (string, error) {
	dir, err := os.MkdirTemp("", "apibench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	srv, err := measure.StartServer(orch, dir, "--disable-agent")
	if err != nil {
		return "", err
	}
	defer srv.Stop()
	kubeconfig, base, ready := srv.Kubeconfig, srv.Base, srv.Ready
	pid := srv.Pid()
	var results []result
	results = append(results, result{"start to /readyz", measure.Ms(ready), "3.5–4.2 s"})

	tlsCfg, err := tlsFromKubeconfig(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}

	if idle > 0 {
		time.Sleep(3 * time.Second) // let start-up settle
		a, _ := measure.ReadProc(pid)
		time.Sleep(idle)
		b, _ := measure.ReadProc(pid)
		results = append(results,
			result{"idle RSS", measure.MiB(b.RSSBytes) + rssSplit(pid), "385–416 MB"},
			result{fmt.Sprintf("idle CPU over %s", idle), fmt.Sprintf("%.2f %% of a core", measure.CPUPercent(a, b)), "~4 %"},
			result{fmt.Sprintf("idle disk writes over %s", idle), fmt.Sprintf("%d bytes", b.WriteBytes-a.WriteBytes), "~15 KB/s"},
		)
	}

	c := &loadClient{base: base, tls: tlsCfg}
	if err := c.do(http.MethodPost, "/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}`); err != nil {
		return "", err
	}
	value := strings.Repeat("x", 1024)
	next := 0
	for _, writers := range []int{1, 16} {
		n := 1000
		lat, elapsed, err := c.createConfigMaps(writers, n, &next, value)
		if err != nil {
			return "", err
		}
		k3s := "356–607/s, p99 6–7.6 ms"
		if writers == 16 {
			k3s = "1,109–1,429/s, p99 31–34 ms"
		}
		results = append(results, result{fmt.Sprintf("ConfigMap POST, %d client(s), %d × 1 KB", writers, n),
			fmt.Sprintf("%.0f/s, p50 %s, p99 %s", float64(n)/elapsed.Seconds(), measure.Ms(lat.Percentile(50)), measure.Ms(lat.Percentile(99))), k3s})
	}
	if rest := objects - next; rest > 0 {
		if _, _, err := c.createConfigMaps(16, rest, &next, value); err != nil {
			return "", err
		}
	}
	time.Sleep(2 * time.Second)
	p, _ := measure.ReadProc(pid)
	results = append(results, result{fmt.Sprintf("RSS after %d ConfigMaps", next), measure.MiB(p.RSSBytes) + rssSplit(pid), "~735 MB"})

	var lists measure.Latencies
	before, _ := measure.ReadProc(pid)
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if err := c.do(http.MethodGet, "/api/v1/namespaces/bench/configmaps", ""); err != nil {
			return "", err
		}
		lists = append(lists, time.Since(t0))
	}
	after, _ := measure.ReadProc(pid)
	results = append(results, result{fmt.Sprintf("LIST %d ConfigMaps (median of 5)", next),
		fmt.Sprintf("%s (server CPU %s per LIST)", measure.Ms(lists.Percentile(50)), measure.Ms((after.CPU-before.CPU)/5)), "79–177 ms"})

	cache, _ := os.MkdirTemp(dir, "kubecache")
	// kubectl reads 10k objects in pages of 500 (--chunk-size), and its
	// client-side rate limit (client-go's 5 requests/s after a burst of
	// 10) holds back the 11th to 21st page ~200 ms each: the chunked get
	// waits ~2 s for kubectl itself. The unchunked get shows the rest.
	for _, get := range []struct {
		name string
		args []string
		k3s  string
	}{
		{"`kubectl get cm`", nil, "2.5 s"},
		{"`kubectl get cm --chunk-size=0`", []string{"--chunk-size=0"}, "not measured"},
	} {
		r, err := kubectlGets(pid, kubectl, kubeconfig, cache, get.args)
		if err != nil {
			return "", err
		}
		results = append(results, result{fmt.Sprintf("%s of %d (median of 3)", get.name, next), r, get.k3s})
	}
	if hold {
		fmt.Fprintf(os.Stderr, "apibench: server pid %d holding; KUBECONFIG=%s; interrupt to stop\n", pid, kubeconfig)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
	}

	var b2 strings.Builder
	fmt.Fprintf(&b2, "### API server (`orch server --disable-agent`)\n\n")
	fmt.Fprintf(&b2, "Machine: %s. Date: %s. Command: `make bench` (`go run ./internal/bench/apibench`).\n", measure.Machine(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b2, "k3s column: k3s v1.36 `server --disable-agent` (kine/sqlite) measured on this kind of machine (../shared/FACTS.md); k3s cannot be downloaded here, so it is not re-run.\n\n")
	fmt.Fprintf(&b2, "| measure | orch | k3s (reference) |\n|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b2, "| %s | %s | %s |\n", r.name, r.value, r.k3s)
	}
	return b2.String(), nil
}

// kubectlGets runs `kubectl get cm -n bench` with extra arguments three
// times and reports the median time with the server's and kubectl's own
// CPU per get (decoding and printing 10k rows is kubectl's, not the
// server's).
func kubectlGets(pid int, kubectl, kubeconfig, cache string, extra []string) (string, error) {
	var gets measure.Latencies
	var kubectlCPU time.Duration
	before, _ := measure.ReadProc(pid)
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		k := exec.Command(kubectl, append([]string{"get", "cm", "-n", "bench"}, extra...)...)
		k.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBECACHEDIR="+cache)
		k.Stdout = io.Discard
		if err := k.Run(); err != nil {
			return "", fmt.Errorf("kubectl get cm %v: %w", extra, err)
		}
		gets = append(gets, time.Since(t0))
		kubectlCPU += k.ProcessState.UserTime() + k.ProcessState.SystemTime()
	}
	after, _ := measure.ReadProc(pid)
	return fmt.Sprintf("%s (server CPU %s, kubectl CPU %s per get)",
		measure.Ms(gets.Percentile(50)), measure.Ms((after.CPU-before.CPU)/3), measure.Ms(kubectlCPU/3)), nil
}

type loadClient struct {
	base string
	tls  *tls.Config
	once sync.Once
	hc   *http.Client
}

func (c *loadClient) client() *http.Client {
	c.once.Do(func() {
		c.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
	})
	return c.hc
}

func (c *loadClient) do(method, path, body string) error {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return nil
}

// createConfigMaps creates n ConfigMaps with the given number of concurrent
// writers, each on its own connection.
func (c *loadClient) createConfigMaps(writers, n int, next *int, value string) (measure.Latencies, time.Duration, error) {
	var mu sync.Mutex
	var lat measure.Latencies
	var firstErr error
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < writers; w++ {
		wc := &loadClient{base: c.base, tls: c.tls}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%d"},"data":{"v":%q}}`, i, value)
				t0 := time.Now()
				err := wc.do(http.MethodPost, "/api/v1/namespaces/bench/configmaps", body)
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- *next
		*next++
	}
	close(jobs)
	wg.Wait()
	return lat, time.Since(start), firstErr
}

// tlsFromKubeconfig builds the admin client TLS config from the kubeconfig
// orch wrote.
func tlsFromKubeconfig(path string) (*tls.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				CA string `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Cert  string `json:"client-certificate-data"`
				Key   string `json:"client-key-data"`
				Token string `json:"token"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, err
	}
	if len(kc.Clusters) == 0 || len(kc.Users) == 0 {
		return nil, errors.New("kubeconfig has no cluster or user")
	}
	ca, err := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("kubeconfig CA is not PEM")
	}
	certPEM, _ := base64.StdEncoding.DecodeString(kc.Users[0].User.Cert)
	keyPEM, _ := base64.StdEncoding.DecodeString(kc.Users[0].User.Key)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}, nil
}

// rssSplit tells how much of a process's RSS is its own memory (anonymous:
// heap, stacks) and how much is file pages mapped from disk (the binary's
// code and data, the store's memory-mapped database), which are clean,
// shared with the page cache and reclaimable.
func rssSplit(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	var anon, file string
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var kb int64
		if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
			continue
		}
		switch k {
		case "RssAnon":
			anon = measure.MiB(kb << 10)
		case "RssFile":
			file = measure.MiB(kb << 10)
		}
	}
	if anon == "" || file == "" {
		return ""
	}
	return fmt.Sprintf(" (anonymous %s, file-backed %s)", anon, file)
}
