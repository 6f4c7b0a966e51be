package ingress

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// benchObjects: n Ingresses of one host each with three paths, all to
// Services with one endpoint.
func benchObjects(n int) Objects {
	var objs Objects
	for i := range n {
		name := fmt.Sprintf("svc%d", i)
		svc, slice := service("web", name, []string{fmt.Sprintf("10.42.%d.%d", i/250, i%250+1)}, "http=80")
		objs.Services = append(objs.Services, svc)
		objs.EndpointSlices = append(objs.EndpointSlices, slice)
		objs.Ingresses = append(objs.Ingresses, ingress(name, time.Duration(i)*time.Second,
			rule(fmt.Sprintf("host%d.example.com", i),
				path("/", networkingv1.PathTypePrefix, name),
				path("/api", networkingv1.PathTypePrefix, name),
				path("/api/v1/items", networkingv1.PathTypeExact, name))))
	}
	return objs
}

// BenchmarkBuild: rebuilding the whole Config, as every change does.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		objs := benchObjects(n)
		b.Run(fmt.Sprintf("ingresses=%d", n), func(b *testing.B) {
			for b.Loop() {
				Build(objs)
			}
		})
	}
}

// BenchmarkMatch: routing one request among 1,000 hosts.
func BenchmarkMatch(b *testing.B) {
	t := Build(benchObjects(1000)).Table
	for b.Loop() {
		if t.Match("host500.example.com:80", "/api/v1/other") == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkProxy: requests through the proxy to a loopback backend, and
// the same requests straight to the backend, for the proxy's overhead.
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	svc, slice := backendObjects("a", backend.Listener.Addr().String())
	p := newProxy(b)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("a.com", path("/", networkingv1.PathTypePrefix, "a")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}))
	front := httptest.NewServer(p)
	defer front.Close()
	for _, tc := range []struct{ name, url string }{{"direct", backend.URL}, {"via-ingress", front.URL}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{}
			for b.Loop() {
				req, _ := http.NewRequest("GET", tc.url+"/", nil)
				req.Host = "a.com"
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
