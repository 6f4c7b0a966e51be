package proxy

import (
	"reflect"
	"slices"
)

// rulesetDiff is what turns the ruleset the kernel holds into a new one,
// the way kube-proxy's nftables mode does a partial sync: only chains
// whose rules changed are flushed and refilled, and sets get element
// additions and deletions instead of being recreated. An endpoint change
// thus costs a handful of netlink messages instead of a rewrite of every
// chain of every Service.
type rulesetDiff struct {
	newChains     []*Chain // created, then filled
	changedChains []*Chain // flushed, then refilled
	oldChains     []string // flushed, then deleted
	newSets       []*Set   // created with their elements
	oldSets       []string // deleted (after the chains that used them)
	// Element changes of sets present in both rulesets, by set name.
	// Deletions go first: an element whose verdict changed is deleted
	// and added again in the same transaction.
	delElements map[string][]Element
	addElements map[string][]Element
}

func (d *rulesetDiff) empty() bool {
	return len(d.newChains) == 0 && len(d.changedChains) == 0 && len(d.oldChains) == 0 &&
		len(d.newSets) == 0 && len(d.oldSets) == 0 && len(d.delElements) == 0 && len(d.addElements) == 0
}

// diffRulesets returns the changes from old to cur. ok is false when only
// a whole-table rewrite will do: another table, a base chain with a
// different hook, or a set whose type changed (its users would have to go
// first).
func diffRulesets(old, cur *Ruleset) (d *rulesetDiff, ok bool) {
	if old.Table != cur.Table {
		return nil, false
	}
	d = &rulesetDiff{delElements: map[string][]Element{}, addElements: map[string][]Element{}}

	oldChains := make(map[string]*Chain, len(old.Chains))
	for _, c := range old.Chains {
		oldChains[c.Name] = c
	}
	for _, c := range cur.Chains {
		o, found := oldChains[c.Name]
		if !found {
			if c.Hook != nil {
				return nil, false
			}
			d.newChains = append(d.newChains, c)
			continue
		}
		delete(oldChains, c.Name)
		if !sameHook(o.Hook, c.Hook) {
			return nil, false
		}
		if o != c && !slices.EqualFunc(o.Rules, c.Rules, ruleEqual) {
			d.changedChains = append(d.changedChains, c)
		}
	}
	for _, c := range old.Chains { // in order, for stable output
		if _, gone := oldChains[c.Name]; gone {
			if c.Hook != nil {
				return nil, false
			}
			d.oldChains = append(d.oldChains, c.Name)
		}
	}

	oldSets := make(map[string]*Set, len(old.Sets))
	for _, s := range old.Sets {
		oldSets[s.Name] = s
	}
	for _, s := range cur.Sets {
		o, found := oldSets[s.Name]
		if !found {
			d.newSets = append(d.newSets, s)
			continue
		}
		delete(oldSets, s.Name)
		if o.Key != s.Key || o.Verdicts != s.Verdicts || o.Timeout != s.Timeout {
			return nil, false
		}
		// Builds list elements in a stable order, so an unchanged set
		// (most of them, on an endpoint change) compares equal without
		// the maps of elementChanges.
		if o == s || slices.Equal(o.Elements, s.Elements) {
			continue
		}
		// Dynamic sets are filled by the kernel (affinity); their
		// Elements are empty on both sides, so they are left alone.
		del, add := elementChanges(o.Elements, s.Elements)
		if len(del) > 0 {
			d.delElements[s.Name] = del
		}
		if len(add) > 0 {
			d.addElements[s.Name] = add
		}
	}
	for _, s := range old.Sets {
		if _, gone := oldSets[s.Name]; gone {
			d.oldSets = append(d.oldSets, s.Name)
		}
	}
	return d, true
}

func sameHook(a, b *Hook) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// elementChanges returns the elements of old that cur lacks or maps to
// another verdict, and the elements of cur that old lacks or maps
// differently.
func elementChanges(old, cur []Element) (del, add []Element) {
	have := make(map[Key]Verdict, len(old))
	for _, e := range old {
		have[e.Key] = e.Verdict
	}
	want := make(map[Key]Verdict, len(cur))
	for _, e := range cur {
		want[e.Key] = e.Verdict
		if v, ok := have[e.Key]; !ok || v != e.Verdict {
			add = append(add, e)
		}
	}
	for _, e := range old {
		if v, ok := want[e.Key]; !ok || v != e.Verdict {
			del = append(del, e)
		}
	}
	return del, add
}

func ruleEqual(a, b Rule) bool { return slices.EqualFunc(a, b, stmtEqual) }

// stmtEqual compares statements by value. Those that hold slices
// (NumgenVmap) are not comparable with ==; they compare by their nft
// text, which names every field.
func stmtEqual(a, b Stmt) bool {
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) {
		return false
	}
	if ta.Comparable() {
		return a == b
	}
	return a.String() == b.String()
}
