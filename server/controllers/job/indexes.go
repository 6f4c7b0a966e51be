package job

import (
	"slices"
	"strconv"
	"strings"
)

// indexSet is a set of completion indexes, kept sorted.
type indexSet []int

// parseIndexes reads status.completedIndexes ("1,3-5,7"), dropping what is
// malformed or outside [0, completions), as Kubernetes does.
func parseIndexes(s string, completions int) indexSet {
	var out indexSet
	if s == "" {
		return out
	}
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil || first < 0 {
			continue
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil || last < first {
				continue
			}
		}
		for i := first; i <= last && i < completions; i++ {
			out = out.with(i)
		}
	}
	return out
}

func (s indexSet) has(i int) bool {
	_, found := slices.BinarySearch(s, i)
	return found
}

// with returns s with i added.
func (s indexSet) with(i int) indexSet {
	pos, found := slices.BinarySearch(s, i)
	if found {
		return s
	}
	return slices.Insert(s, pos, i)
}

// String formats s as Kubernetes does: ascending, with every run of
// consecutive indexes written "first-last".
func (s indexSet) String() string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(s[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(s[j]))
		}
		i = j + 1
	}
	return b.String()
}
