package proxy

import (
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestDiffRulesets(t *testing.T) {
	cfg := unitConfig()
	web := svc("web", "10.43.0.10", tcpPort("http", 80, 0))
	webSlice := slice("web", "web-1", "http", 8080, ep("10.42.0.5", "node-a", true), ep("10.42.1.7", "node-b", true))
	base := Build(cfg, []*v1.Service{web}, []*discoveryv1.EndpointSlice{webSlice})

	sticky := web.DeepCopy()
	sticky.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	shorter := sticky.DeepCopy()
	shorter.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: new(int32)}}
	*shorter.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = 60

	tests := []struct {
		name         string
		old, cur     *Ruleset
		full         bool
		newChains    []string
		changed      []string
		oldChains    []string
		newSets      []string
		oldSets      []string
		del, add     map[string][]string
		wantNoChange bool
	}{
		{name: "same ruleset", old: base, cur: Build(cfg, []*v1.Service{web}, []*discoveryv1.EndpointSlice{webSlice}), wantNoChange: true},
		{
			name: "endpoint replaced",
			old:  base,
			cur: Build(cfg, []*v1.Service{web}, []*discoveryv1.EndpointSlice{
				slice("web", "web-1", "http", 8080, ep("10.42.0.5", "node-a", true), ep("10.42.2.9", "node-b", true))}),
			// One rule of one chain: endpoints are a map in the
			// service chain's DNAT, not chains of their own.
			changed: []string{"svc-default/web/tcp/http"},
		},
		{
			name: "local endpoint replaced: hairpin set updated",
			old:  base,
			cur: Build(cfg, []*v1.Service{web}, []*discoveryv1.EndpointSlice{
				slice("web", "web-1", "http", 8080, ep("10.42.0.6", "node-a", true), ep("10.42.1.7", "node-b", true))}),
			changed: []string{"svc-default/web/tcp/http"},
			del:     map[string][]string{setHairpin: {"10.42.0.5 . 10.42.0.5"}},
			add:     map[string][]string{setHairpin: {"10.42.0.6 . 10.42.0.6"}},
		},
		{
			name:      "last endpoint gone: the service refuses",
			old:       base,
			cur:       Build(cfg, []*v1.Service{web}, nil),
			oldChains: []string{"svc-default/web/tcp/http"},
			del: map[string][]string{
				mapServiceIPs: {"10.43.0.10 . tcp . 80 : goto svc-default/web/tcp/http"},
				setHairpin:    {"10.42.0.5 . 10.42.0.5"},
			},
			add: map[string][]string{mapNoEndpointServices: {"10.43.0.10 . tcp . 80 : goto reject-chain"}},
		},
		{
			name: "affinity on: dynamic sets appear",
			old:  base,
			cur:  Build(cfg, []*v1.Service{sticky}, []*discoveryv1.EndpointSlice{webSlice}),
			// Affinity needs a chain per endpoint to record clients.
			newChains: []string{"ep-default/web/tcp/http/10.42.0.5:8080", "ep-default/web/tcp/http/10.42.1.7:8080"},
			changed:   []string{"svc-default/web/tcp/http"},
			newSets:   []string{"aff-default/web/tcp/http/10.42.0.5:8080", "aff-default/web/tcp/http/10.42.1.7:8080"},
		},
		{
			name:      "affinity off: dynamic sets go",
			old:       Build(cfg, []*v1.Service{sticky}, []*discoveryv1.EndpointSlice{webSlice}),
			cur:       base,
			changed:   []string{"svc-default/web/tcp/http"},
			oldChains: []string{"ep-default/web/tcp/http/10.42.0.5:8080", "ep-default/web/tcp/http/10.42.1.7:8080"},
			oldSets:   []string{"aff-default/web/tcp/http/10.42.0.5:8080", "aff-default/web/tcp/http/10.42.1.7:8080"},
		},
		{
			name: "set type changed: whole-table write",
			old:  Build(cfg, []*v1.Service{sticky}, []*discoveryv1.EndpointSlice{webSlice}),
			cur:  Build(cfg, []*v1.Service{shorter}, []*discoveryv1.EndpointSlice{webSlice}),
			full: true,
		},
		{
			name: "another table: whole-table write",
			old:  base,
			cur: func() *Ruleset {
				c := cfg
				c.Table = "other"
				return Build(c, []*v1.Service{web}, []*discoveryv1.EndpointSlice{webSlice})
			}(),
			full: true,
		},
	}
	names := func(cs []*Chain) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	setNames := func(ss []*Set) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	elems := func(rs *Ruleset, m map[string][]Element) map[string][]string {
		out := map[string][]string{}
		for name, es := range m {
			s := &Set{Key: rs.Set(name).Key, Verdicts: rs.Set(name).Verdicts, Elements: es}
			out[name] = s.ElementStrings()
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := diffRulesets(tt.old, tt.cur)
			if ok == tt.full {
				t.Fatalf("partial write possible = %v, want %v", ok, !tt.full)
			}
			if tt.full {
				return
			}
			if d.empty() != tt.wantNoChange {
				t.Fatalf("empty = %v, want %v", d.empty(), tt.wantNoChange)
			}
			check := func(what string, got, want []string) {
				t.Helper()
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: got %q, want %q", what, got, want)
				}
			}
			check("new chains", names(d.newChains), tt.newChains)
			check("changed chains", names(d.changedChains), tt.changed)
			check("old chains", d.oldChains, tt.oldChains)
			check("new sets", setNames(d.newSets), tt.newSets)
			check("old sets", d.oldSets, tt.oldSets)
			for what, pair := range map[string]struct {
				got  map[string][]string
				want map[string][]string
			}{"deleted elements": {elems(tt.old, d.delElements), tt.del}, "added elements": {elems(tt.cur, d.addElements), tt.add}} {
				if len(pair.got) != len(pair.want) {
					t.Errorf("%s: got %q, want %q", what, pair.got, pair.want)
				}
				for set, want := range pair.want {
					check(what+" of "+set, pair.got[set], want)
				}
			}
		})
	}
}

func TestElementChangesOfChangedVerdict(t *testing.T) {
	k := Key{Proto: ProtoTCP, Port: 30080}
	old := []Element{{Key: k, Verdict: Verdict{Kind: VerdictGoto, Chain: "a"}}}
	cur := []Element{{Key: k, Verdict: Verdict{Kind: VerdictGoto, Chain: "b"}}}
	del, add := elementChanges(old, cur)
	if !slices.Equal(del, old) || !slices.Equal(add, cur) {
		t.Fatalf("got del %v add %v; a changed verdict is a delete and an add", del, add)
	}
}

func TestStmtEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b Stmt
		want bool
	}{
		{"same comparable", DNAT{To: netip.MustParseAddrPort("10.42.0.5:80")}, DNAT{To: netip.MustParseAddrPort("10.42.0.5:80")}, true},
		{"other value", DNAT{To: netip.MustParseAddrPort("10.42.0.5:80")}, DNAT{To: netip.MustParseAddrPort("10.42.0.6:80")}, false},
		{"other type", MatchCtNew{}, MatchMarkUnset{}, false},
		{"same slice-holding", NumgenVmap{Targets: []string{"a", "b"}}, NumgenVmap{Targets: []string{"a", "b"}}, true},
		{"other targets", NumgenVmap{Targets: []string{"a", "b"}}, NumgenVmap{Targets: []string{"a", "c"}}, false},
		{"slice-holding vs comparable", NumgenVmap{Targets: []string{"a"}}, MatchCtNew{}, false},
	}
	for _, tt := range tests {
		if got := stmtEqual(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: stmtEqual(%s, %s) = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
	}
}
